"""grids plan: trainings, GPU-hours, disk and RAM of a run, from the config alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grids.plan import load_for_plan, plan, simulated_verifications

ROOT = Path(__file__).resolve().parents[1]


def test_simulated_verifications_follow_the_planner():
    sims = simulated_verifications(5, "lazy", 1, instances=20)
    assert sims.shape == (20, 2) and (sims[:, 0] >= 1).all() and (sims[:, 1] >= 1).all()
    assert (simulated_verifications(5, "lazy", 1, instances=20) == sims).all()  # seeded


def test_paper_config_plans_before_its_folders_exist():
    config, assumed = load_for_plan([str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "paper.yaml")])
    assert set(assumed) == {
        "images",
        "training.images",
        "training.test_sets.div2k_valid",
        "training.test_sets.urban100",
    }
    text = plan(config, assumed, instances=20)
    assert re.search(r"single-task models\s+11\s+x 600,000 iterations \(restormer\)", text)
    assert "baseline realesrnet" in text and "rrdbnet: no it/s measured" in text
    assert re.search(r"total: about [\d,]+ GPU-hours", text) and "H100" in text
    assert "28.6 GB for 3450 training images (assumed" in text


def test_plan_reads_the_default_config_and_its_images(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grids.cli",
            "plan",
            "--config",
            str(ROOT / "config" / "config.yaml"),
            "--instances",
            "10",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "grouping verifications" in result.stdout and "from the files' headers" in result.stdout
    assert re.search(r"per training: [\d.]+ GPU-(hours|minutes|seconds)", result.stdout)  # srresnet is measured


@pytest.mark.parametrize("extra", ["config.yaml", "gpu.yaml", "paper.yaml"])
def test_every_shipped_config_gets_figures_in_a_readable_unit(extra):
    files = [str(ROOT / "config" / "config.yaml")] + ([str(ROOT / "config" / extra)] if extra != "config.yaml" else [])
    text = plan(*load_for_plan(files), instances=5)
    per_training = re.search(r"per training: ([\d.,]+) GPU-(hours|minutes|seconds)", text)
    assert per_training and float(per_training[1].replace(",", "")) >= 1, text  # never "0.0 GPU-hours"
    total = re.search(r"total: about ([\d.,]+) GPU-\w+ \(verifications \S+ percentile: ([\d.,]+)-([\d.,]+) ", text)
    assert total and all(float(x.replace(",", "")) > 0 for x in total.groups()), text  # never "0-0"


def test_the_command_plans_the_tiny_test_config_in_its_own_folder():
    """.test/config/config.yaml (12 iterations of a 1-block model): seconds, said as such; from
    .test/, its working directory, with the config file as an argument (as check-config takes it)."""
    result = subprocess.run(
        [sys.executable, "-m", "grids.cli", "plan", "config/config.yaml", "--instances", "5"],
        cwd=ROOT / ".test",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "per training: under 1 GPU-second" in result.stdout
    total = re.search(
        r"total: about ([\d.]+) GPU-seconds \(verifications \S+ percentile: ([\d.]+)-([\d.]+) ", result.stdout
    )
    assert total and all(float(x) > 0 for x in total.groups()), result.stdout
    assert "not counting baseline rrdb" in result.stdout  # rrdbnet has no measured it/s: said, not guessed


def test_plan_warns_when_the_iterations_are_below_what_a_degradation_needed():
    from grids.config import load_config
    from grids.plan import learning_warnings

    config = load_config(str(ROOT / "config" / "config.yaml"), base_dir=ROOT)
    default = learning_warnings(config)
    assert [line.split(":")[1].strip() for line in default] == ["motion_blur", "sr"]  # measured, never learned
    config["training"]["iterations"] = 400
    short = learning_warnings(config)
    assert any("gaussian_blur: bench/RESULTS.md measured 800 iterations" in line for line in short)
    config["training"]["lr"] = 2e-4  # another recipe: nothing measured, nothing claimed
    assert learning_warnings(config) == []


@pytest.mark.parametrize(
    "replicates",
    [
        {"degradations": ["jpeg"], "seeds": 1},
        {"degradations": None, "seeds": 2},
        {"degradations": "all", "seeds": 1},
        {"seeds": 0},
    ],
    ids=["one", "first_three_x2", "all", "none"],
)
def test_the_plan_counts_the_noise_floor_trainings_that_snakemake_plans(tmp_path, replicates):
    """`grids plan` left the replicate trainings out, at any seeds; `snakemake -n` plans them."""
    config = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())
    config["grouping"]["replicates"] = replicates
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(ROOT / "examples" / "haze.py", tmp_path / "haze.py")
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=300)
    planned = subprocess.run([sys.executable, "-m", "grids.cli", "plan", "--instances", "3"], **run)
    assert planned.returncode == 0, planned.stderr
    snakefile = str(ROOT / "workflow" / "Snakefile")
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-s", snakefile, "-n", "final_models"], **run)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    jobs = re.search(r"^train_replicate\s+(\d+)$", dry.stdout, re.M)
    line = re.search(r"noise-floor replicates\s+(\d+)\s+x 12 iterations", planned.stdout)
    replicated = {"['jpeg']": 1, "None": 3, "all": len(config["degradations"])}
    if replicates["seeds"] == 0:
        assert jobs is None and line is None, planned.stdout
    else:
        assert (
            jobs
            and line
            and int(line[1]) == int(jobs[1]) == replicated[str(replicates["degradations"])] * replicates["seeds"]
        ), planned.stdout + dry.stdout
