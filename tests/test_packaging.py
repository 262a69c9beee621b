"""The package as a user installs it: `python -m build` from a clone makes an sdist and a wheel with
the declared name, licence and package data; the wheel installs into a fresh venv and its `grids`
command runs. Before the wheel is there, the workflow's jobs in that venv import `grids` from the
workflow's own checkout (workflow/Snakefile puts it on PYTHONPATH), as under `--sdm conda`.

The fresh venv borrows this environment's dependencies (torch & co.) through a .pth line to its
site-packages: that adds the folder to sys.path without running its .pth files, so the editable
install of this checkout stays invisible and `import grids` there means the wheel (or PYTHONPATH).
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from test_commands import ROOT, copy_checkout

from grids.degradations import NAMES


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
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", tmp / "dist", clone)
    (wheel,) = (tmp / "dist").glob("*.whl")
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(purelib) / "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return {"clone": clone, "wheel": wheel, "sdist": sdist, "venv": venv, "python": python, "tmp": tmp}


def test_wheel_metadata_and_contents(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(wheel.read(metadata).decode())
    assert built["wheel"].name.startswith("grids_restoration-0.1.0-")
    assert meta["Name"] == "grids-restoration" and meta["License-Expression"] == "MIT"
    assert "LICENSE" in meta.get_all("License-File")
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    extras = meta.get_all("Provides-Extra")
    assert "slurm" in extras and "test" in extras
    slurm = [r for r in meta.get_all("Requires-Dist") if r.startswith("snakemake-executor-plugin-slurm")]
    assert slurm and all('extra == "slurm"' in r for r in slurm)  # a cluster need, not a test tool
    # package data the stages read at run time: the shipped descriptor, the config schema
    assert "grids/assets/descriptor/msrresnet_x4.pth" in names
    assert "grids/config.schema.yaml" in names
    with tarfile.open(built["sdist"]) as sdist:
        members = {Path(m).relative_to(Path(m).parts[0]).as_posix() for m in sdist.getnames() if "/" in m}
    assert {"LICENSE", "pyproject.toml", "README.md"} <= members


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
