"""The package as a user installs it: `python -m build` from a clone makes an sdist and a wheel with
the declared name, licence, metadata and package data (the workflow, the configs and the examples
included); the wheel installs into a fresh venv, its `grids` command runs, and `grids init` makes a
working directory, away from any checkout, in which Snakemake runs the installed workflow. Before
the wheel is there, the workflow's jobs in that venv import `grids` from the workflow's own
checkout (workflow/Snakefile puts it on PYTHONPATH), as under `--sdm conda`.

Neither the build nor scripts/setup.sh prints a warning: the package data is declared.

The fresh venv borrows this environment's dependencies (torch & co.) through a .pth line to its
site-packages: that adds the folder to sys.path without running its .pth files, so the editable
install of this checkout stays invisible and `import grids` there means the wheel (or PYTHONPATH).
"""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_commands import ROOT, copy_checkout

import grids
from grids.degradations import NAMES

pytestmark = pytest.mark.slow  # builds the wheel and runs the workflow from it: minutes


def run(*command, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    # never from the checkout: `python -c` puts the working directory first on sys.path
    cwd = cwd or Path(tempfile.gettempdir())
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=900, cwd=cwd, **kwargs)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("packaging")
    clone = copy_checkout(tmp / "clone")
    # byte-compiling on: with PYTHONDONTWRITEBYTECODE set, setuptools says it skips it ("warning: ...")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    build = run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", tmp / "dist", clone, env=env)
    (wheel,) = (tmp / "dist").glob("*.whl")
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(purelib) / "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    output = build.stdout + build.stderr
    return {"clone": clone, "wheel": wheel, "sdist": sdist, "venv": venv, "python": python, "tmp": tmp, "log": output}


def warnings_in(output: str) -> list[str]:
    """Lines of a build or install that warn: setuptools' ("SetuptoolsDeprecationWarning: ...",
    "WARNING Package ... is absent from the `packages` configuration", distutils' "warning: ...").
    Not pip's notes on its own configuration (an index folder of this machine that is absent)."""
    pip_config = re.compile(r"WARNING: Location '.*' is ignored: it is neither a file nor a directory\.")
    return [line for line in output.splitlines() if "warn" in line.lower() and not pip_config.fullmatch(line)]


def test_the_build_prints_no_warning(built):
    assert warnings_in(built["log"]) == [], built["log"][-5000:]


def test_setup_script_prints_no_warning(tmp_path):
    """scripts/setup.sh as a user reruns it in a clone: a venv that has every dependency (borrowed)
    and gets the package installed editable; what it prints is its two lines of progress."""
    clone = copy_checkout(tmp_path / "clone")
    run(sys.executable, "-m", "venv", clone / ".venv")
    purelib = run(clone / ".venv" / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(purelib.stdout.strip()) / "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {**os.environ, "TORCH_INDEX": ""}  # torch is there: no index to probe
    output = run("bash", clone / "scripts" / "setup.sh", env=env)
    log = output.stdout + output.stderr
    assert warnings_in(log) == [], log[-5000:]
    assert "grids environment ready in .venv" in log


def test_wheel_metadata_and_contents(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(wheel.read(metadata).decode())
    assert built["wheel"].name.startswith(f"grids_restoration-{grids.__version__}-")
    assert meta["Version"] == grids.__version__  # single-sourced from grids/__init__.py
    assert meta["Name"] == "grids-restoration" and meta["License-Expression"] == "MIT"
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Intended Audience :: Science/Research" in classifiers
    assert meta.get_all("Project-URL") is None  # no public repository yet: no URL invented
    assert "LICENSE" in meta.get_all("License-File")
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    extras = meta.get_all("Provides-Extra")
    assert "slurm" in extras and "test" in extras
    slurm = [r for r in meta.get_all("Requires-Dist") if r.startswith("snakemake-executor-plugin-slurm")]
    assert slurm and all('extra == "slurm"' in r for r in slurm)  # a cluster need, not a test tool
    # `snakemake --report` needs pygments, which Snakemake's `reports` extra brings
    assert any(re.match(r"snakemake\[reports\]", r) for r in meta.get_all("Requires-Dist"))
    # package data the stages read at run time: the shipped descriptor, the config schema
    assert "grids/assets/descriptor/msrresnet_x4.pth" in names
    assert "grids/config.schema.yaml" in names
    assert "grids/py.typed" in names
    # every module of the package (its subpackages are listed by hand in pyproject.toml) and every
    # file `grids init` deploys: the workflow, the configs, the example user code
    shipped = {f"grids/{p.relative_to(ROOT / 'grids').as_posix()}" for p in (ROOT / "grids").rglob("*.py")} | {
        f"grids/{prefix}/{p.relative_to(ROOT / folder).as_posix()}"
        for folder, prefix in (
            ("workflow", "workflow"),
            ("config", "configs"),
            ("examples", "examples"),
            ("slurm", "slurm"),
        )
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert not shipped - set(names), sorted(shipped - set(names))
    with tarfile.open(built["sdist"]) as sdist:
        members = {Path(m).relative_to(Path(m).parts[0]).as_posix() for m in sdist.getnames() if "/" in m}
    assert {"LICENSE", "pyproject.toml", "README.md"} <= members
    # a wheel built from the sdist (pip install of the sdist) ships the same workflow and configs
    assert {"workflow/Snakefile", "workflow/rules/train.smk", "config/config.yaml", "examples/haze.py"} <= members


def test_jobs_import_the_checkout_without_an_install(built):
    python, venv = built["python"], built["venv"]
    hidden = subprocess.run([python, "-c", "import grids"], capture_output=True, text=True, cwd=built["tmp"])
    assert hidden.returncode != 0, "grids is importable in the fresh venv before any install: the test means nothing"
    work = built["tmp"] / "work"
    (work / "config").mkdir(parents=True)
    (work / "config" / "config.yaml").write_text((ROOT / ".test" / "config" / "config.yaml").read_text())
    (work / "haze.py").write_text((ROOT / "examples" / "haze.py").read_text())
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    snakefile = built["clone"] / "workflow" / "Snakefile"
    run(python, "-m", "snakemake", "-s", snakefile, "-d", work, "--cores", "2", "degraded_datasets", env=env)
    assert len(list((work / "results" / "degraded").glob("*/manifest.parquet"))) == 4


def test_wheel_installs_and_its_command_runs(built):
    python, venv = built["python"], built["venv"]
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", built["wheel"])
    where = run(python, "-c", "import grids; print(grids.__file__)").stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not this checkout
    assert "check-config" in run(venv / "bin" / "grids", "--help").stdout
    assert len(run(venv / "bin" / "grids", "degradations").stdout.splitlines()) == len(NAMES)
    config = built["clone"] / ".test" / "config" / "config.yaml"
    checked = run(venv / "bin" / "grids", "check-config", "--alone", config, cwd=config.parent.parent)
    assert "gaussian_noise" in checked.stdout


def test_citation_states_the_package_version():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == grids.__version__


def test_readme_images_are_files_of_the_repository():
    """README images link to repository files by relative path (GitHub and a checkout show them).
    No public repository URL exists yet, so none is invented for PyPI's page."""
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert images
    for link in images:
        assert not link.startswith(("http:", "https:", "/")), link
        assert (ROOT / link).is_file(), link


def test_init_from_the_wheel_runs_the_workflow_away_from_any_checkout(built):
    """pip install, grids init, snakemake: the installed workflow as a module, the tiny config."""
    python, venv = built["python"], built["venv"]
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", built["wheel"])
    deployed = run(python, "-c", "from grids.deploy import workflow_folder; print(workflow_folder())").stdout.strip()
    assert Path(deployed).is_relative_to(venv), deployed  # the wheel's workflow, not the checkout's
    home = built["tmp"] / "away"  # under the temporary folder: no checkout above it
    home.mkdir()
    run(venv / "bin" / "grids", "init", "study", cwd=home)
    work = home / "study"
    assert {"Snakefile"} == {p.name for p in (work / "workflow").iterdir()}
    (work / "config" / "config.yaml").write_text((ROOT / ".test" / "config" / "config.yaml").read_text())
    (work / "haze.py").write_text((work / "examples" / "haze.py").read_text())  # the tiny config's path
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    checked = run(venv / "bin" / "grids", "check-config", cwd=work, env=env)
    assert "iterations: 12" in checked.stdout  # the working directory's config, found
    dry = run(python, "-m", "snakemake", "-n", "all", cwd=work, env=env)
    assert all(job in dry.stdout for job in ("ggd_fit", "train", "grouping_round", "table1")), dry.stdout
    # the Slurm profile `grids init` wrote, found by name as from a checkout's root
    assert (work / "slurm" / "config.yaml").read_text() == (ROOT / "slurm" / "config.yaml").read_text()
    slurm = run(python, "-m", "snakemake", "-n", "final_models", "--profile", "slurm", cwd=work, env=env)
    assert "train" in slurm.stdout and "grouping_round" in slurm.stdout, slurm.stdout
    ran = run(python, "-m", "snakemake", "--cores", "2", "similarity_matrix", cwd=work, env=env)
    matrix = pd.read_parquet(work / "results" / "similarity" / "matrix.parquet")
    assert set(matrix.deg_a) == set(matrix.deg_b) == {"clean", "jpeg", "gaussian_noise", "sr", "haze"}
    assert (work / "results" / "similarity" / "heatmap.png").stat().st_size > 1000
    assert "results/similarity/heatmap.png" in (ran.stdout + ran.stderr).strip().splitlines()[-1]
    run(python, "-m", "snakemake", "--report", "report.zip", "similarity_matrix", cwd=work, env=env)
    with zipfile.ZipFile(work / "report.zip") as report:
        assert any(name.endswith("heatmap.png") for name in report.namelist()), report.namelist()
