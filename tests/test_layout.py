"""The package's layers: the floors of docs/layout.md (no import climbs one, no import circle, every
import counted, inside functions too); stages share grids.stage, never the user-facing command module."""

from __future__ import annotations

import ast
import re
from collections.abc import Collection
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


# --- the floors (docs/layout.md) -------------------------------------------------------------------


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package rooted at ``package``: dotted name -> file."""
    names = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, modules: Collection[str]) -> set[str]:
    """The package's modules that ``name`` (its file ``path``) imports anywhere in its text: at the
    top, inside functions, under ``if TYPE_CHECKING:``. ``from . import x`` counts ``x`` (a module)
    or the package (a name defined there); importing ``a.b.c`` counts its packages ``a.b`` and ``a``
    too, which Python runs first, except the importer's own packages (already running)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            subs = {f"{module}.{alias.name}" for alias in node.names} & set(modules)
            found |= subs if subs and len(subs) == len(node.names) else {module} | subs
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    found = {m for m in found if m in modules}
    parents = {m.rsplit(".", k)[0] for m in found for k in range(1, m.count(".") + 1)}
    own = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
    return (found | parents) - own - {name}


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import each other round in a circle (strongly connected
    components of more than one module, or a module importing itself), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def floors_of(markdown: str) -> dict[str, int]:
    """docs/layout.md's table: module -> floor number."""
    floors = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.match(r"\d+ ", cells[0]):
            for module in re.findall(r"`([\w.]+)`", cells[2]):
                floors[module] = int(cells[0].split()[0])
    return floors


def climbs(graph: dict[str, set[str]], floors: dict[str, int]) -> list[str]:
    """``a (floor i) imports b (floor j > i)`` for every import that climbs a floor."""
    return [
        f"{name} (floor {floors[name]}) imports {target} (floor {floors[target]})"
        for name in sorted(graph)
        for target in sorted(graph[name])
        if floors[target] > floors[name]
    ]


FLOORS = floors_of((PACKAGE.parent / "docs" / "layout.md").read_text())
GRAPH = import_graph(PACKAGE)


def test_every_module_has_a_floor():
    assert not set(GRAPH) - set(FLOORS), f"place these modules in docs/layout.md: {sorted(set(GRAPH) - set(FLOORS))}"
    assert not set(FLOORS) - set(GRAPH), (
        f"docs/layout.md names modules that do not exist: {sorted(set(FLOORS) - set(GRAPH))}"
    )


def test_no_import_climbs_a_floor():
    assert not climbs(GRAPH, FLOORS), "\n".join(climbs(GRAPH, FLOORS))


def test_no_import_circle():
    assert not circles(GRAPH), circles(GRAPH)


def test_the_checks_catch_a_planted_circle_and_a_climb(tmp_path):
    """A circle closed by an import inside a function, and a lower floor reaching up, are found."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "low.py").write_text("import os\n\n\ndef f():\n    from .sub import high\n    return high\n")
    (package / "sub" / "high.py").write_text("from ..low import f\n")
    (package / "leaf.py").write_text("from . import low\n")
    graph = import_graph(package)
    assert graph["pkg.low"] == {"pkg.sub", "pkg.sub.high"} and graph["pkg.leaf"] == {"pkg.low"}
    assert circles(graph) == [["pkg.low", "pkg.sub.high"]]
    floors = {"pkg": 0, "pkg.sub": 0, "pkg.low": 0, "pkg.leaf": 1, "pkg.sub.high": 1}
    assert climbs(graph, floors) == [
        "pkg.low (floor 0) imports pkg.sub.high (floor 1)",
    ]
    (package / "low.py").write_text("import os\n")
    assert circles(import_graph(package)) == [] and climbs(import_graph(package), floors) == []


def _closure(roots: set[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(GRAPH[name])
    return seen


def test_runtime_selection_and_restore_import_no_report_module():
    """`grids select` / `grids restore` (their cli functions, the selector, the restore path) load
    neither a report nor its dependencies: every import counts, lazy ones inside functions too."""
    cli = ast.parse((PACKAGE / "cli.py").read_text())
    runtime = {"_selector", "_read_input", "_read_inputs", "_verdict", "_select", "_restore", "_choose"}
    bodies = [node for node in cli.body if isinstance(node, ast.FunctionDef) and node.name in runtime]
    assert {node.name for node in bodies} == runtime
    modules = module_names(PACKAGE)
    roots = {"grids.selection.selector", "grids.evaluate", "grids.checkpoint"}
    for body in bodies:
        roots |= {m for m in imports_of("grids.cli", PACKAGE / "cli.py", modules) if m in _names_in(body)}
    loaded = _closure(roots)
    assert {"grids.selection.selector", "grids.selection.fallback", "grids.evaluate"} <= loaded
    reports = {m for m in loaded if FLOORS[m] >= FLOORS["grids.report"]}
    assert not reports, sorted(reports)


def _names_in(body: ast.AST) -> set[str]:
    """The grids modules a function body imports (relative to grids.cli)."""
    found = set()
    for node in ast.walk(body):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found |= {f"grids.{node.module}"} | {f"grids.{node.module}.{a.name}" for a in node.names}
    return found
