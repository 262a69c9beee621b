"""The package's layers: stages share grids.stage, never the user-facing command module."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "grids"


def test_no_stage_imports_the_command_module():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "cli.py"
        and re.search(r"from \.+cli import|from grids\.cli import|import grids\.cli", path.read_text())
    ]
    assert not offenders, offenders


def test_one_device_rule():
    """Device selection lives in grids.stage.pick_device alone."""
    pattern = re.compile(r'torch\.device\("cuda" if')
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "stage.py" and pattern.search(p.read_text())
    ]
    assert not offenders, offenders


def test_ruff_check_and_format_are_clean():
    """The rule set and formatting of pyproject.toml ([tool.ruff]) hold for the whole tree."""
    import subprocess
    import sys

    root = PACKAGE.parent
    ruff = Path(sys.executable).with_name("ruff")
    for command in ([str(ruff), "check", "."], [str(ruff), "format", "--check", "."]):
        result = subprocess.run(command, cwd=root, capture_output=True, text=True)
        assert result.returncode == 0, " ".join(command[1:]) + "\n" + result.stdout + result.stderr


def test_every_rule_runs_in_the_deployable_env_which_has_every_dependency():
    """--sdm conda: each rule that runs a command names workflow/envs/grids.yaml, which holds the
    package's runtime dependencies (conda-forge names) but neither Snakemake nor the package."""
    import tomllib

    import yaml

    root = PACKAGE.parent
    rules = root / "workflow" / "rules"
    for path in rules.glob("*.smk"):
        text = path.read_text()
        shells = len(re.findall(r"^    shell:", text, re.M))
        envs = re.findall(r'^    conda:\n        "([^"]+)"', text, re.M)
        assert envs == ["../envs/grids.yaml"] * shells, (path.name, envs, shells)
    env = yaml.safe_load((root / "workflow" / "envs" / "grids.yaml").read_text())
    listed = [d for d in env["dependencies"] if isinstance(d, str)]
    listed += next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    names = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower() for d in listed}
    assert not names & {"snakemake", "grids", "grids-restoration", "-e"}, names
    conda_name = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
    required = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() for r in required} - {"snakemake"}
    missing = {w for w in wanted if conda_name.get(w, w) not in names}
    assert not missing, f"workflow/envs/grids.yaml lacks {sorted(missing)}"
