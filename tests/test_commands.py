"""Every `snakemake` and `grids` command the docs show works as written.

The commands come from the fenced code blocks of README.md, config/README.md and docs/install.md, from the comment
headers of config/*.yaml and slurm/config.yaml, and from inline code in all of them that holds a
whole command (`snakemake` with arguments, `grids SUBCOMMAND` with arguments). Each Snakemake command runs in a copy of
the repository (what a clone has) as a dry run (`-n` added), except `--report`, which really
builds the report from the empty copy (no figure built yet: only the front page). Each `grids`
command is parsed by the real command line, so a renamed subcommand or option fails here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grids.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "config" / "README.md", ROOT / "docs" / "install.md"]
HEADERS = [*sorted((ROOT / "config").glob("*.yaml")), ROOT / "slurm" / "config.yaml"]
COMMAND = re.compile(r"^(?:\.venv/bin/)?(snakemake|grids)(?:\s|$)")


def code_lines(path: Path) -> list[str]:
    """The lines of a Markdown file's fenced code blocks."""
    lines, inside = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def header_lines(path: Path) -> list[str]:
    """A YAML file's leading comment block, the `# ` taken off."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#"))
    return lines


INLINE = re.compile(r"`((?:\.venv/bin/)?(?:snakemake|grids) [^`]+)`")

# Documented commands that cannot run in a bare clone, each for a reason the docs state next to it.
NOT_RUNNABLE_HERE = {
    "snakemake TARGET --configfile my.yaml": "TARGET is a placeholder",
    "snakemake --cores all grids_similarity_matrix": "a host workflow's rule, after `use rule * from grids`",
    "snakemake --cores all all --sdm conda": "needs conda, which this machine cannot install (README says so)",
    "snakemake final_models --profile slurm --configfile config/paper.yaml": "needs the user's DIV2K folders set",
}


def inline_commands(path: Path) -> list[str]:
    """Whole commands in inline code: snakemake with arguments, grids with a subcommand's arguments."""
    found = []
    for text in INLINE.findall(path.read_text().replace("\n#", " ")):
        words = text.split()
        if words[0].endswith("snakemake") or len(words) > 2:
            found.append(" ".join(words))
    return found


def commands(lines: list[str]) -> list[str]:
    """The snakemake/grids commands in ``lines``: each `&&`-separated part, comments dropped."""
    found = []
    for line in lines:
        for part in line.split("&&"):
            part = part.split(" #")[0].strip()
            if COMMAND.match(part):
                found.append(part)
    return found


FOUND = (
    {(path.relative_to(ROOT).as_posix(), c) for path in DOCS for c in commands(code_lines(path))}
    | {(path.relative_to(ROOT).as_posix(), c) for path in HEADERS for c in commands(header_lines(path))}
    | {(path.relative_to(ROOT).as_posix(), c) for path in DOCS + HEADERS for c in inline_commands(path)}
)
DOCUMENTED = sorted((where, c) for where, c in FOUND if c not in NOT_RUNNABLE_HERE)
SNAKEMAKE = [(where, c) for where, c in DOCUMENTED if COMMAND.match(c).group(1) == "snakemake"]
GRIDS = [(where, c) for where, c in DOCUMENTED if COMMAND.match(c).group(1) == "grids"]


def test_the_commands_left_out_are_still_documented():
    # an entry whose command left the docs must leave the list too, or the list hides new ones
    assert set(NOT_RUNNABLE_HERE) <= {c for _, c in FOUND}


def test_the_docs_show_commands_of_both_kinds():
    # the extraction itself: a change of format that hides every command must fail here
    assert len(SNAKEMAKE) >= 6 and len(GRIDS) >= 8, DOCUMENTED
    assert any("--configfile" in c for _, c in SNAKEMAKE) and any("--profile slurm" in c for _, c in SNAKEMAKE)


def copy_checkout(copy: Path) -> Path:
    """The repository as a clone has it (tracked and untracked-but-not-ignored files) at ``copy``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file() or source.is_symlink():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name, follow_symlinks=False)
    return copy


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    copy = copy_checkout(tmp_path_factory.mktemp("checkout"))
    (copy / "my.yaml").write_text("training: {iterations: 10}\n")  # the docs' "your own config"
    return copy


@pytest.mark.slow  # a Snakemake run (a dry run, or the report) per documented command
@pytest.mark.parametrize(("where", "command"), SNAKEMAKE, ids=[c for _, c in SNAKEMAKE])
def test_documented_snakemake_command_works(checkout, where, command):
    args = shlex.split(command)[1:]
    report = next((args[i + 1] for i, a in enumerate(args) if a == "--report"), None)
    if report is None and "-n" not in args and "--dry-run" not in args:
        args.append("-n")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=checkout, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{where}: `{command}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    if report is not None:
        assert (checkout / report).stat().st_size > 10_000, f"{where}: `{command}` wrote no report"


@pytest.mark.parametrize(("where", "command"), GRIDS, ids=[c for _, c in GRIDS])
def test_documented_grids_command_parses(where, command, capsys):
    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse's verdict on a bad command line (or --help)
        assert stop.code == 0, f"{where}: `{command}` is refused by the CLI: {capsys.readouterr().err}"
        return
    assert callable(args.func)
