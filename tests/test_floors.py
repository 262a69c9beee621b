"""The declared lower bounds hold: pyproject.toml's floors are the versions the code runs on.

A fresh venv gets every runtime dependency at exactly its floor (a pip constraints file generated
from pyproject.toml: numpy, scipy, pandas, pyarrow, Snakemake and the rest), then runs the fast
tests below from this checkout. torch is not reinstalled: the venv borrows this environment's
through a .pth line, which comes after the venv's own site-packages on sys.path, so every
package installed at its floor wins over this environment's newer copy (checked).

The first run downloads about 300 MB from PyPI (pip caches it); it skips, saying so, where PyPI
cannot be reached. environment.yml and workflow/envs/grids.yaml must state the same floors.
"""

from __future__ import annotations

import re
import site
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow  # installs every dependency at its floor and reruns tests: minutes

ROOT = Path(__file__).resolve().parents[1]
# Fast, and each leans on a floor: config checks (jsonschema, PyYAML), the GGD fit and the
# similarity (numpy, scipy), OOD statistics (scipy's isotonic_regression), Parquet (pandas,
# pyarrow), figures (matplotlib), and the workflow run as a module (Snakemake, every stage).
FAST_TESTS = [
    "tests/test_config.py",
    "tests/test_ggd.py",
    "tests/test_similarity.py",
    "tests/test_ood.py",
    "tests/test_degradations.py",
    "tests/test_figures.py::test_search_labels_each_point_with_its_group",
    "tests/test_store.py::test_resume_with_the_store_is_exact",
    "tests/test_module.py::test_the_workflow_runs_as_a_prefixed_module",
]
# conda-forge's names for the PyPI ones, in environment.yml and workflow/envs/grids.yaml
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}


def floors() -> dict[str, str]:
    """Each runtime dependency of pyproject.toml and its lower bound (all have one)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    for line in project["dependencies"]:
        req = Requirement(line)
        (low,) = [s.version for s in req.specifier if s.operator == ">="] or [None]
        assert low, f"pyproject.toml: {line} has no lower bound"
        out[req.name] = low
    return out


def test_conda_environments_state_the_same_floors():
    wanted = floors()
    for path in ("environment.yml", "workflow/envs/grids.yaml"):
        deps = yaml.safe_load((ROOT / path).read_text())["dependencies"]
        listed = [d for d in deps if isinstance(d, str)] + next(d["pip"] for d in deps if isinstance(d, dict))
        stated = {}
        for line in listed:
            match = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([^,<\s]+)", line)
            if match:
                stated[match[1].lower()] = match[2]
        for name, low in wanted.items():
            if name == "snakemake" and path.startswith("workflow"):
                continue  # the rules' env has no Snakemake (tests/test_layout.py)
            assert stated.get(CONDA_NAMES.get(name, name)) == low, f"{path}: {name} floor is not {low}"


def pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10):
            return True
    except OSError:
        return False


def test_fast_tests_pass_on_the_declared_floors(tmp_path):
    if not pypi_reachable():
        pytest.skip("https://pypi.org cannot be reached: the floors cannot be installed here")
    wanted = {name: low for name, low in floors().items() if name != "torch"}
    (tmp_path / "requirements.txt").write_text("\n".join([*(f"{n}>={v}" for n, v in wanted.items()), "pytest"]))
    (tmp_path / "constraints.txt").write_text("\n".join(f"{n}=={v}" for n, v in wanted.items()))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--no-compile", "-r", "requirements.txt", "-c", "constraints.txt"]
    installed = subprocess.run(pip, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert installed.returncode == 0, installed.stderr[-3000:]
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    (Path(purelib) / "borrowed_torch.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    check = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    versions = yaml.safe_load(subprocess.run([python, "-c", check, *wanted], capture_output=True, text=True).stdout)
    for name, low in wanted.items():  # the floor itself, not a newer copy borrowed with torch
        assert Requirement(f"{name}=={low}").specifier.contains(versions[name]), (name, versions[name], low)
    command = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *FAST_TESTS]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
