"""The `grids` command: exit codes and messages for good and bad input."""

from __future__ import annotations

import argparse
import json
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from grids import io
from grids.data import dead_leaves
from grids.degradations import NAMES

ROOT = Path(__file__).resolve().parents[1]


def grids(*args: str, cwd: Path = ROOT, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grids.cli", *args], capture_output=True, text=True, cwd=cwd, preexec_fn=preexec
    )


def full_disk_after(size: int):
    """A child whose writes fail (EFBIG) past ``size`` bytes per file: a disk that fills midway."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


def test_check_config_ok_and_bad(tmp_path):
    ok = grids("check-config", "config/config.yaml")
    assert ok.returncode == 0 and "gaussian_blur" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nimages: {photos: [coffee]}\ndegradations: {jpg: {}}\n")
    result = grids("check-config", str(bad))
    assert result.returncode == 2
    assert "config key degradations.jpg: unknown degradation 'jpg'" in result.stderr


def test_check_config_merges_files_over_the_default_like_configfile(tmp_path):
    """An override file is checked as the workflow reads it: config/config.yaml, then each file."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("training: {iterations: 10}\ngrouping: {delta: 0.5}\n")
    second.write_text("training: {iterations: 20}\n")
    merged = grids("check-config", str(first), str(second))
    assert merged.returncode == 0, merged.stderr
    config = yaml.safe_load(merged.stdout)
    assert config["training"]["iterations"] == 20 and config["grouping"]["delta"] == 0.5  # later file wins
    assert config["seed"] == 0 and "gaussian_blur" in config["degradations"]  # from config/config.yaml
    alone = grids("check-config", "--alone", str(second))
    assert alone.returncode == 2 and "'seed' is a required property" in alone.stderr
    assert grids("check-config", "--help").stdout.count("example:") == 1


def test_every_subcommand_help_ends_with_an_example():
    from grids.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        assert command.epilog and command.epilog.startswith("example:\n  grids " + name), name


def test_degradations_lists_every_builtin():
    result = grids("degradations")
    assert result.returncode == 0 and len(result.stdout.strip().splitlines()) == len(NAMES)


def test_degrade_one_image(tmp_path):
    src = tmp_path / "in.png"
    io.write_png(src, dead_leaves(64, np.random.default_rng(0)))
    result = grids("degrade", str(src), "-d", "jpeg", "-o", str(tmp_path / "out.png"), "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert 10 <= json.loads(result.stdout)["params"]["quality"] <= 40
    assert io.load_png(tmp_path / "out.png").shape == (64, 64, 3)


def test_degrade_bad_inputs(tmp_path):
    missing = grids("degrade", str(tmp_path / "nope.png"), "-d", "jpeg", "-o", str(tmp_path / "o.png"))
    assert missing.returncode == 2 and "nope.png" in missing.stderr
    (tmp_path / "text.png").write_text("hello")
    not_image = grids("degrade", str(tmp_path / "text.png"), "-d", "jpeg", "-o", str(tmp_path / "o.png"))
    assert not_image.returncode == 2 and "text.png: not a readable image" in not_image.stderr
    io.write_png(tmp_path / "ok.png", dead_leaves(32, np.random.default_rng(0)))
    unknown = grids("degrade", str(tmp_path / "ok.png"), "-d", "fog", "-o", str(tmp_path / "o.png"))
    assert unknown.returncode == 2 and "unknown degradation 'fog'" in unknown.stderr
    assert not (tmp_path / "o.png").exists()


def test_matrix_before_it_is_built(tmp_path):
    result = grids("matrix", cwd=tmp_path)
    assert result.returncode == 2 and "snakemake --cores all similarity_matrix" in result.stderr


def _parsers(parser: argparse.ArgumentParser, path: str = "grids"):
    """Every parser of the command line with its name, subcommands included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from _parsers(command, f"{path} {name}")


def test_every_argument_says_what_it_is_in_plain_text():
    """Each option and argument of each command has a help line; no help text shows RST markup."""
    from grids.cli import build_parser

    found = list(_parsers(build_parser()))
    assert len(found) > 8, [name for name, _ in found]  # the subcommands were walked
    for name, parser in found:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(c.help for c in action._choices_actions), name
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name}: {action.dest} has no help line"
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text and ":class:" not in text, f"{name} --help:\n{text}"


def test_check_config_and_plan_take_files_as_arguments_and_with_config(tmp_path):
    override = tmp_path / "short.yaml"
    override.write_text("training: {iterations: 21}\n")
    for args in ([str(override)], ["--config", str(override)]):
        result = grids("check-config", *args)
        assert result.returncode == 0, result.stderr
        assert yaml.safe_load(result.stdout)["training"]["iterations"] == 21, args
    both = grids("check-config", str(override), "--config", "config/gpu.yaml")  # arguments first, then --config
    assert yaml.safe_load(both.stdout)["training"]["iterations"] == 2000, both.stderr


def test_outside_a_working_directory_the_commands_say_what_to_do(tmp_path):
    photo = str(ROOT / "grids" / "assets" / "photos" / "lomiri1604_bridge.jpg")
    for command in (["check-config"], ["plan"], ["select", photo]):
        result = grids(*command, cwd=tmp_path)
        assert result.returncode == 2 and result.stdout == "", command
        assert result.stderr.count("\n") == 1 and "grids init DIR" in result.stderr, (command, result.stderr)


def test_init_writes_a_working_directory_the_commands_find(tmp_path):
    result = grids("init", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert (run / "workflow" / "Snakefile").is_file() and "use rule * from grids" in (
        run / "workflow" / "Snakefile"
    ).read_text()
    assert (run / "config" / "config.yaml").read_text() == (ROOT / "config" / "config.yaml").read_text()
    assert (run / "config" / "gpu.yaml").is_file() and (run / "config" / "README.md").is_file()
    assert (run / "examples" / "haze.py").is_file()  # the default config names it
    checked = grids("check-config", cwd=run)
    assert checked.returncode == 0 and "gaussian_blur" in checked.stdout, checked.stderr
    again = grids("init", str(run), cwd=tmp_path)  # nothing is overwritten
    assert again.returncode == 2 and "already exist" in again.stderr


INIT_CASES = {
    # folder name, what limits the child, the expected error (None: it succeeds), its next: hint
    "empty_name": ("", None, r"^error: grids init: the folder's name is empty", None),
    "disk_full_midway": (
        "a/b/study",
        full_disk_after(5000),
        r"^error: grids init a/b/study: writing a/b/study/\S+ failed \(File too large\); nothing was left",
        None,
    ),
    "name_with_a_space": ("my study", None, None, "next: cd 'my study' && snakemake"),
    "name_with_a_quote": ("it's", None, None, """next: cd 'it'"'"'s' && snakemake"""),
}


@pytest.mark.parametrize("case", sorted(INIT_CASES))
def test_init_refuses_an_empty_name_undoes_a_failed_write_and_quotes_its_hint(tmp_path, case):
    """A refused or failed `grids init` leaves nothing behind, so a second one works; the hint is
    a command a shell runs as written."""
    name, preexec, error, hint = INIT_CASES[case]
    result = grids("init", name, cwd=tmp_path, preexec=preexec)
    if error is None:
        assert result.returncode == 0 and hint in result.stderr, result.stderr
        return
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert re.search(error, result.stderr), result.stderr
    assert list(tmp_path.iterdir()) == []  # no folder, no half-copied file
    if name:
        again = grids("init", name, cwd=tmp_path)
        assert again.returncode == 0 and (tmp_path / name / "config" / "config.yaml").is_file(), again.stderr
