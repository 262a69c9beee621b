"""scripts/setup.sh picks torch's index: the CPU one where no NVIDIA GPU is visible and that index
answers, pip's own otherwise (PyPI's CUDA build where a GPU is; a local wheel where pip finds one),
and always the one given in TORCH_INDEX. `--which-torch` prints the choice and changes nothing."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cpu_index(tmp_path):
    """A local index that answers for torch, as https://download.pytorch.org/whl/cpu does."""
    (tmp_path / "index" / "torch").mkdir(parents=True)
    (tmp_path / "index" / "torch" / "index.html").write_text("<html></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=tmp_path / "index")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def which_torch(tmp_path: Path, gpu: bool, **env: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    fake.unlink(missing_ok=True)
    if gpu:  # a driver that lists a GPU
        fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100'\n")
        fake.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in {"TORCH_INDEX", "TORCH_CPU_INDEX", "TORCH_SPEC"}}
    environ.update(env, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh"), "--which-torch"], capture_output=True, text=True, env=environ
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(Path("/proc/driver/nvidia/version").exists(), reason="this machine has an NVIDIA driver")
def test_no_gpu_and_the_cpu_index_answers_gives_the_cpu_build(tmp_path, cpu_index):
    assert (
        which_torch(tmp_path, gpu=False, TORCH_CPU_INDEX=cpu_index)
        == f"pip install --index-url {cpu_index} torch==2.13.0"
    )


def test_a_gpu_or_a_silent_index_leaves_it_to_pip(tmp_path, cpu_index):
    assert which_torch(tmp_path, gpu=True, TORCH_CPU_INDEX=cpu_index) == "pip install torch==2.13.0"
    silent = "http://127.0.0.1:9/"  # the discard port: nothing answers
    assert which_torch(tmp_path, gpu=False, TORCH_CPU_INDEX=silent) == "pip install torch==2.13.0"


def test_a_given_index_wins(tmp_path, cpu_index):
    cuda = "https://download.pytorch.org/whl/cu126"
    assert which_torch(tmp_path, gpu=False, TORCH_INDEX=cuda, TORCH_CPU_INDEX=cpu_index).endswith(
        f"{cuda} torch==2.13.0"
    )
    assert which_torch(tmp_path, gpu=False, TORCH_INDEX="", TORCH_CPU_INDEX=cpu_index) == "pip install torch==2.13.0"
