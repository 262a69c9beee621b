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
