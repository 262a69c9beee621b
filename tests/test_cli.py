"""The `grids` command: exit codes and messages for good and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from grids import io
from grids.data import dead_leaves

ROOT = Path(__file__).resolve().parents[1]


def grids(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grids.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_check_config_ok_and_bad(tmp_path):
    ok = grids("check-config", "config/config.yaml")
    assert ok.returncode == 0 and "gaussian_blur" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nimages: {photos: [coffee]}\ndegradations: {jpg: {}}\n")
    result = grids("check-config", str(bad))
    assert result.returncode == 2
    assert "config key degradations.jpg: unknown degradation 'jpg'" in result.stderr


def test_degradations_lists_all_eleven():
    result = grids("degradations")
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == 11


def test_degrade_one_image(tmp_path):
    src = tmp_path / "in.png"
    io.write_png(src, dead_leaves(64, np.random.default_rng(0)))
    result = grids("degrade", str(src), "-d", "jpeg", "-o", str(tmp_path / "out.png"), "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert 10 <= json.loads(result.stdout)["params"]["quality"] <= 40
    assert io.load_png(tmp_path / "out.png").shape == (64, 64, 3)


def test_degrade_bad_inputs(tmp_path):
    missing = grids("degrade", str(tmp_path / "nope.png"), "-d", "jpeg", "-o", str(tmp_path / "o.png"))
    assert missing.returncode == 2 and "nope.png" in missing.stderr
    (tmp_path / "text.png").write_text("hello")
    not_image = grids("degrade", str(tmp_path / "text.png"), "-d", "jpeg", "-o", str(tmp_path / "o.png"))
    assert not_image.returncode == 2 and "text.png: not a readable image" in not_image.stderr
    io.write_png(tmp_path / "ok.png", dead_leaves(32, np.random.default_rng(0)))
    unknown = grids("degrade", str(tmp_path / "ok.png"), "-d", "fog", "-o", str(tmp_path / "o.png"))
    assert unknown.returncode == 2 and "unknown degradation 'fog'" in unknown.stderr
    assert not (tmp_path / "o.png").exists()


def test_matrix_before_it_is_built(tmp_path):
    result = grids("matrix", cwd=tmp_path)
    assert result.returncode == 2 and "snakemake --cores all similarity_matrix" in result.stderr
