#!/usr/bin/env bash
# Build llama-cpp-python once, portably, into a cached wheel and print the wheel's path. The
# default build compiles llama.cpp for the building CPU (GGML_NATIVE) and crashed with
# "Illegal instruction" (AMX) on a machine of the same family: this one names its CPU features
# (x86-64-v3: AVX2, FMA, F16C, BMI2), so the wheel runs on any such CPU. Idempotent: when the
# wheel is already cached, this only prints its path. The first build takes about 6 minutes on
# 2 cores; CMAKE_BUILD_PARALLEL_LEVEL sets how many compilers run at once.
#
#   PYTHON=.venv/bin/python scripts/llamacpp-wheel.sh
#
# TANDEM_WHEELS_DIR overrides the cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/tandem/wheels).
# Delete the wheel there to rebuild it (after changing the flags below, say).
set -euo pipefail

VERSION=0.3.36
PYTHON=${PYTHON:-python3}
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
FLAGS="$FLAGS -DLLAVA_BUILD=OFF"

wheels=${TANDEM_WHEELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/wheels}
pattern="llama_cpp_python-$VERSION-*.whl"

# made first: on a fresh machine `find` on a missing folder fails, and pipefail ends the script
mkdir -p "$wheels"
found=$(find "$wheels" -maxdepth 1 -name "$pattern" | head -n 1)
if [ -z "$found" ]; then
    echo "llamacpp-wheel: building llama-cpp-python $VERSION (about 6 minutes, once)" >&2
    # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS
    CMAKE_ARGS="$FLAGS" "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        --no-cache-dir -w "$wheels" "llama-cpp-python==$VERSION" >&2
    found=$(find "$wheels" -maxdepth 1 -name "$pattern" | head -n 1)
fi
echo "$found"
