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
