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


def _module_file(name: str) -> Path:
    path = PACKAGE.joinpath(*name.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _grids_imports(tree, package: str) -> set[str]:
    """Every grids module a syntax tree imports, at module level or inside a function."""
    import ast

    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m.startswith("grids") and _module_file(m).exists()}


def _closure(roots: set[str], trees: dict | None = None) -> set[str]:
    import ast

    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        todo.extend(_grids_imports(ast.parse(path.read_text()), package))
    return seen


def test_runtime_selection_and_restore_import_no_report_module():
    """`grids select` / `grids restore` (their cli functions, the selector, the restore path) load
    neither a report nor its dependencies: every import counts, lazy ones inside functions too."""
    import ast

    cli = ast.parse((PACKAGE / "cli.py").read_text())
    runtime = {"_selector", "_read_input", "_read_inputs", "_verdict", "_select", "_restore"}
    bodies = [node for node in cli.body if isinstance(node, ast.FunctionDef) and node.name in runtime]
    assert {node.name for node in bodies} == runtime
    roots = {"grids.selection", "grids.evaluate", "grids.checkpoint"}
    for body in bodies:
        roots |= _grids_imports(body, "grids")
    loaded = _closure(roots)
    assert "grids.selection" in loaded and "grids.evaluate" in loaded
    reports = {m for m in loaded if m.endswith("report") or m in {"grids.validation", "grids.grouping.rounds"}}
    assert not reports, sorted(reports)
