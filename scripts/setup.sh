#!/usr/bin/env bash
# Set up (or update) the project's virtualenv in .venv: PyTorch first, then the grids package
# with its test tools. Safe to rerun. Environment knobs:
#   PYTHON       interpreter to build the venv from (default: python3; needs 3.11+)
#   TORCH_SPEC   the torch requirement to install first (default: torch==2.13.0)
#   TORCH_INDEX  the index to take it from, e.g. https://download.pytorch.org/whl/cpu (CPU only)
#                or https://download.pytorch.org/whl/cu126 (a CUDA build); set but empty: pip's
#                own index (on Linux, PyPI's multi-GB CUDA build). Unset: on Linux with no NVIDIA
#                GPU visible (no working nvidia-smi, no /proc/driver/nvidia) the CPU index
#                TORCH_CPU_INDEX (default https://download.pytorch.org/whl/cpu, about 200 MB)
#                when it answers, else pip's own index (a machine with a local wheel, e.g.
#                through pip's find-links, then gets that).
# `bash scripts/setup.sh --which-torch` prints the torch install it would run, and changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

nvidia_visible() {
  { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; } || [ -e /proc/driver/nvidia/version ]
}
answers() {  # does the index list torch? (Python, since curl may be missing)
  "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=10)' \
    "$1" >/dev/null 2>&1
}
if [ -z "${TORCH_INDEX+set}" ]; then
  TORCH_INDEX=
  if [ "$(uname -s)" = Linux ] && ! nvidia_visible; then
    if answers "$TORCH_CPU_INDEX"; then
      TORCH_INDEX=$TORCH_CPU_INDEX
    else
      echo "no NVIDIA GPU visible, but $TORCH_CPU_INDEX does not answer: torch from pip's own index" >&2
    fi
  fi
fi
if [ "${1:-}" = --which-torch ]; then
  echo "pip install ${TORCH_INDEX:+--index-url $TORCH_INDEX }$TORCH_SPEC"
  exit 0
fi

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
# setuptools announces an editable install whose packages map folders (grids.workflow is workflow/)
# with a boxed "Editable installation" notice; its own class for it is InformationOnly. The package
# data is declared (pyproject.toml), so setuptools has nothing else to say (tests/test_packaging.py).
PYTHONWARNINGS="ignore:Editable installation" "${PIP[@]}" install -e ".[test]"
echo "grids environment ready in .venv ($(.venv/bin/python -c 'import torch, grids; print("torch", torch.__version__, "| grids", grids.__version__)'))"
