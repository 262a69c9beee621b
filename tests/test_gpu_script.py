"""bench/gpu_checks.sh stays runnable: its pipeline step plans today's workflow on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_script_plans_final_models_on_the_gpu_config(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", "bench/gpu_checks.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    planned = done.stdout + done.stderr
    for rule in ("train", "evaluate", "grouping_round", "final_models"):
        assert rule in planned, rule
    assert "This was a dry-run" in planned
