"""The workflow used as a Snakemake module with a prefix, from a host workflow of the user's.

A host writes ``module grids: snakefile: ...; config: config; prefix: "ext"`` and
``use rule * from grids as grids_*``. Snakemake then moves every path a rule declares under
``ext/``; this only works if each rule passes its own files to Python (nothing rebuilds a path
from a root such as ``results/``), and the bookkeeping rules stay local under their new names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grids import io

pytestmark = pytest.mark.slow  # runs the workflow as a Snakemake module: minutes

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"

CONFIG = {
    "seed": 5,
    "images": {"photos": ["chelsea"], "dead_leaves": {"count": 2, "size": 64}, "min_side": 32},
    "features": {"n_patches": 16, "patch_size": 16, "pca_components": 8},
    "degradations": {
        "jpeg": {"quality": [10, 40]},
        "haze": {"function": "haze.py:haze", "params": {"strength": [0.3, 0.7]}},
    },
}

# The host reads the module's local rules back (Snakemake has no public accessor; a dry run with
# the local executor shows every job as local), to check they survived the renaming.
HOST = f"""
from grids.deploy import checked_configfile

configfile: checked_configfile(workflow, "config/config.yaml")


module grids:
    snakefile:
        {str(SNAKEFILE)!r}
    config:
        config
    prefix:
        "ext"


use rule * from grids as grids_*


with open("local_rules.txt", "w") as f:
    f.write("\\n".join(sorted(workflow._localrules)))
"""

BOOKKEEPING = {
    "similarity_tables",
    "upper_bounds_table",
    "grouping_candidates",
    "grouping_round",
    "grouping_result",
    "final_group_model",
    "table1",
    "selection_references",
    "validation_matrix",
    "validation_tables",
}


def run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-d", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def project(path: Path) -> Path:
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    shutil.copy(ROOT / "examples" / "haze.py", path / "haze.py")  # a user file: stays where the user put it
    return path


def test_the_workflow_runs_as_a_prefixed_module(tmp_path):
    host = project(tmp_path / "host")
    (host / "Snakefile").write_text(HOST)
    result = run(host, "-s", str(host / "Snakefile"), "--cores", "2", "grids_similarity_matrix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (host / "results").exists() and not (host / "logs").exists()  # everything went under ext/
    matrix = pd.read_parquet(host / "ext" / "results" / "similarity" / "matrix.parquet")
    manifest = pd.read_parquet(host / "ext" / "results" / "degraded" / "haze" / "manifest.parquet")
    assert manifest.path.str.startswith("images/").all()  # relative to the manifest's folder
    opened = io.read_manifest(host / "ext" / "results" / "degraded" / "haze" / "manifest.parquet")
    assert all(Path(p).is_file() and Path(p).is_relative_to(host / "ext" / "results") for p in opened.path)
    for suffix in ("png", "svg"):
        assert (host / "ext" / "results" / "similarity" / f"heatmap.{suffix}").stat().st_size > 1000

    plain = project(tmp_path / "plain")
    result = run(plain, "-s", str(SNAKEFILE), "--cores", "2", "similarity_matrix")
    assert result.returncode == 0, result.stdout + result.stderr
    pd.testing.assert_frame_equal(matrix, pd.read_parquet(plain / "results" / "similarity" / "matrix.parquet"))

    local = set((host / "local_rules.txt").read_text().split())
    assert {f"grids_{name}" for name in BOOKKEEPING} <= local
    assert not local & {"grids_train", "grids_evaluate", "grids_ggd_fit", "grids_selection_tables"}


def test_the_whole_workflow_plans_under_the_prefix(tmp_path):
    host = project(tmp_path / "host")
    (host / "Snakefile").write_text(HOST)
    result = run(host, "-s", str(host / "Snakefile"), "-n", "grids_all")
    assert result.returncode == 0, result.stdout + result.stderr
    for line in result.stdout.splitlines():
        for field in ("input:", "output:", "log:"):
            if line.strip().startswith(field):
                paths = [p.strip() for p in line.strip()[len(field) :].split(",")]
                outside = [p for p in paths if p and p != "<TBD>" and not p.startswith(("ext/", "/", "haze.py"))]
                assert not outside, line


def test_an_absolute_module_prefix_works(tmp_path):
    """Every output under an absolute prefix (it was refused: "/p/results/x lies outside /p/results/")."""
    host = project(tmp_path / "host")
    out = tmp_path / "elsewhere"
    (host / "Snakefile").write_text(HOST.replace('"ext"', repr(str(out))))
    result = run(host, "-s", str(host / "Snakefile"), "--cores", "2", "grids_similarity_matrix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "results" / "similarity" / "matrix.parquet").is_file()
    assert not (host / "results").exists() and not (host / "logs").exists()
