#!/usr/bin/env bash
# Set up (or update) the project's virtualenv in .venv: PyTorch first, then the grids package
# with its test tools. Safe to rerun. Environment knobs:
#   PYTHON       interpreter to build the venv from (default: python3; needs 3.11+)
#   TORCH_SPEC   the torch requirement to install first (default: torch==2.13.0)
#   TORCH_INDEX  the index to take it from, e.g. https://download.pytorch.org/whl/cpu (CPU only)
#                or https://download.pytorch.org/whl/cu126 (a CUDA build); unset: pip's own
#                index, which on Linux means PyPI's CUDA build
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: $PYTHON is missing or older than Python 3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    # Debian/Ubuntu ship venv separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      rm -rf .venv && "$PYTHON" -m venv .venv
    else
      echo "error: '$PYTHON -m venv' failed; install python3-venv (sudo apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
# torch before the package: a bare `torch` requirement would pull a multi-GB CUDA build here.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  "${PIP[@]}" install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH_SPEC"
fi
"${PIP[@]}" install -e ".[test]"
echo "grids environment ready in .venv ($(.venv/bin/python -c 'import torch, grids; print("torch", torch.__version__, "| grids", grids.__version__)'))"
