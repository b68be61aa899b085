#!/usr/bin/env bash
# Fetches ONNX Runtime's shared library from the onnxruntime wheel on PyPI (the `ort` crate
# cannot download it here) into .ort/ (git-ignored) and prints its path:
#   export ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
set -euo pipefail
VERSION="${ORT_VERSION:-1.31.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.ort"
lib="$dest/libonnxruntime.so.$VERSION"
if [ ! -f "$lib" ]; then
  mkdir -p "$dest"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$tmp" "onnxruntime==$VERSION" >&2
  python3 - "$tmp" "$lib" "$VERSION" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, lib, version = sys.argv[1:4]
wheel = glob.glob(f"{tmp}/onnxruntime-*.whl")[0]
# Unique temp name + rename: concurrent callers (parallel test binaries) never see a partial file.
part = f"{lib}.part.{os.getpid()}"
with zipfile.ZipFile(wheel) as z, z.open(f"onnxruntime/capi/libonnxruntime.so.{version}") as src, open(part, "wb") as dst:
    shutil.copyfileobj(src, dst)
os.replace(part, lib)
PY
fi
echo "$lib"
