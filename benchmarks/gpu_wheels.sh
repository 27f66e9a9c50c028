#!/usr/bin/env bash
# Download, into .whl/ (git-ignored through .git/info/exclude), the wheels that a bare GPU
# machine lacks for benchmarks/gpu_check.sh: the store's zarr stack, dask, himalaya, and
# xarray at the version tested here. Versions are those of this environment's python
# (PY, default .venv/bin/python, else python3), for CPython 3.12 on x86-64 Linux (the device machine's python).
#
#     bash benchmarks/gpu_wheels.sh          # then carry .whl to the device machine
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
PACKAGES="zarr numcodecs donfig google-crc32c dask partd locket himalaya xarray"
mkdir -p .whl
exclude=.git/info/exclude
if [ -d .git ] && ! grep -qx '/.whl/' "$exclude" 2>/dev/null; then
    mkdir -p .git/info && echo '/.whl/' >>"$exclude"
fi
for name in $PACKAGES; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d .whl "$name==$version"
done
ls -l .whl
du -sh .whl
