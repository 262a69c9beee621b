"""Hostile and broken inputs: each gets one clear ``error:`` line naming the culprit, a non-zero
exit, and leaves nothing behind (no partial output, nothing touched outside the project).

One parametrised test per family: names, quoting, writers, configs, checkpoints, CLI. (Training
logs across kill -9 / SIGTERM are in tests/test_train.py; ``grids restore`` against a full disk,
a read-only file system and its own input in tests/test_workflow.py, which has built results.)
"""

from __future__ import annotations

import json
import math
import re
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from helpers import tiny_recipe

from grids import io
from grids.checkpoint import load_model, save_checkpoint
from grids.config import (
    DEFAULT_FEATURES,
    NAME_PATTERN,
    SHIPPED_DESCRIPTOR,
    ConfigError,
    load_config,
    schema,
    validate_config,
)
from grids.data import dead_leaves
from grids.degrade import degrade_dataset

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"

# A small valid config whose similarity stage runs in seconds.
SMALL = {
    "seed": 3,
    "images": {"photos": [], "dead_leaves": {"count": 2, "size": 48}, "min_side": 32},
    "features": {"n_patches": 12, "patch_size": 16, "pca_components": 6},
    "training": {
        "images": {"photos": [], "dead_leaves": {"count": 2, "size": 48}, "min_side": 32},
        "test_sets": {"heldout": {"dead_leaves": {"count": 1, "size": 48}, "min_side": 32}},
        "crop": 32,
    },
    "degradations": {"jpeg": {"quality": [10, 40]}},
    "selection": {"unseen": {}},
}


def run(args: list[str], cwd: Path, preexec=None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def stage(cwd: Path, module: str, **options: str) -> subprocess.CompletedProcess:
    """``python -m grids.<module> --key value ...`` (underscores in keys become dashes)."""
    words = [w for key, value in options.items() for w in (f"--{key.replace('_', '-')}", *value.split("\0"))]
    return run([sys.executable, "-m", f"grids.{module}", *words], cwd)


def grids(cwd: Path, *args: str, preexec=None) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "grids.cli", *args], cwd, preexec)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), "--cores", "1", *args], workdir
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a failed command (no traceback, nothing else claiming to be an error)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def project(path: Path, config: dict, text: str | None = None) -> Path:
    (path / "config").mkdir(parents=True, exist_ok=True)
    (path / "config" / "config.yaml").write_text(text if text is not None else yaml.safe_dump(config, sort_keys=False))
    return path


def files_under(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def png(path: Path, seed: int = 0, size: int = 48) -> Path:
    io.write_png(path, dead_leaves(size, np.random.default_rng(seed)))
    return path


# --- names ----------------------------------------------------------------------------------------

BAD_NAMES = ["../../../victim", "a/b", "gaussian_blur+jpeg", "deg deg", "$(touch pwned)", "Upper", "_x", "x.y", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("section", ["degradations", "selection.unseen", "training.test_sets", "baselines"])
def test_a_name_that_is_not_an_identifier_is_refused_naming_the_key(section, name):
    config = json.loads(json.dumps(SMALL))
    entry = {"function": "haze.py:haze"} if section != "training.test_sets" else {"dead_leaves": {"count": 1}}
    if section == "baselines":
        entry = {"iterations": 5}
    parent = config
    *path, last = section.split(".")
    for key in path:
        parent = parent.setdefault(key, {})
    parent.setdefault(last, {})[name] = entry
    with pytest.raises(ConfigError) as err:
        validate_config(config, ROOT / "examples")
    message = str(err.value)
    assert message.startswith(f"config key {section}.{name}: the name {name!r} is not allowed")
    assert NAME_PATTERN in message


def test_the_schema_documents_the_same_name_pattern():
    properties = schema()["properties"]
    for names in (
        properties["degradations"],
        properties["selection"]["properties"]["unseen"],
        properties["training"]["properties"]["test_sets"],
        properties["baselines"],
    ):
        assert names["propertyNames"]["pattern"] == NAME_PATTERN


@pytest.mark.parametrize("name", ["../../../victim", "$(touch pwned)", "a+b"])
@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_the_workflow_refuses_a_bad_name_before_any_job_and_touches_nothing(tmp_path, name):
    victim = tmp_path / "victim"
    (victim / "images").mkdir(parents=True)
    (victim / "images" / "precious.txt").write_text("keep me")
    (victim / "manifest.parquet").write_bytes(b"mine")
    before = files_under(victim)
    workdir = tmp_path / "a" / "b" / "project"
    config = {**SMALL, "degradations": {name: {"function": "funcs.py:ok"}}}
    project(workdir, config)
    (workdir / "funcs.py").write_text("def ok(image, rng):\n    return image, {}\n")
    result = snakemake(workdir, "degraded_datasets")
    assert result.returncode != 0
    assert f"invalid config: config key degradations.{name}: the name {name!r} is not allowed" in result.stderr
    assert files_under(victim) == before
    assert not (workdir / "results").exists() and not (workdir / "pwned").exists()


# --- quoting ----------------------------------------------------------------------------------------


def shell_commands(text: str) -> list[str]:
    """The string literals of every ``shell:`` block of a rule file, joined per block."""
    blocks, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "shell:":
            parts = []
            for follow in lines[i + 1 :]:
                if not follow.strip().startswith('"'):
                    break
                parts.append(follow.strip()[1:-1])
            blocks.append("".join(parts))
    return blocks


def test_every_shell_placeholder_is_quoted():
    rule_files = sorted((ROOT / "workflow").rglob("*.smk")) + [SNAKEFILE]
    commands = [cmd for path in rule_files for cmd in shell_commands(path.read_text())]
    assert len(commands) >= 18  # every rule with a shell command was found
    unquoted = [
        (cmd, field)
        for cmd in commands
        for field in re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", cmd)
        if not field.endswith(":q") and field != "threads"  # threads: an int Snakemake sets
    ]
    assert not unquoted, unquoted
    assert not any("'{" in cmd or '"{' in cmd for cmd in commands), "hand-written quotes around a placeholder"


def test_every_rule_writes_under_results_logs_or_benchmarks():
    """The parse-time guard (check_output_locations in common.smk) refuses a rule that does not."""
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'OUTPUT_ROOTS = ("results/", "logs/", "benchmarks/")' in common
    for path in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for block in re.findall(r"\n    (?:output|log|benchmark):\n((?:        .*\n)+)", text):
            for literal in re.findall(r'"([^"]+)"', block):
                if "/" in literal or "." in literal:
                    assert literal.startswith(("results/", "logs/", "benchmarks/", "../report/")), (path.name, literal)


@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_shell_metacharacters_in_config_paths_never_run(tmp_path):
    """A weights file, an images folder and a descriptor photo folder with ``$(...)`` and quotes in
    their names: the workflow runs on them and no command in them is executed."""
    workdir = project(tmp_path / "proj", {})
    images = workdir / "my images $(touch pwned_images)"
    images.mkdir()
    for i in range(2):
        png(images / f"img{i}.png", seed=i)
    weights = workdir / "w'$(touch pwned_weights)'.pth"
    shutil.copy(ROOT / "grids" / "assets" / "descriptor" / "msrresnet_x4.pth", weights)
    photos = workdir / "photos `touch pwned_photos`"
    photos.mkdir()
    for i in range(3):
        png(photos / f"p{i}.png", seed=10 + i, size=64)
    config = {
        **SMALL,
        "images": {"folder": images.name, "min_side": 32},
        "descriptor": {
            "weights": weights.name,
            "train": {"photos": photos.name, "holdout": 1, "iterations": 2, "batch_size": 2, "crop": 32},
        },
    }
    project(workdir, config)
    result = snakemake(workdir, "similarity_matrix", "results/descriptor/msrresnet_x4.pth")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (workdir / "results" / "similarity" / "matrix.parquet").is_file()
    assert (workdir / "results" / "descriptor" / "msrresnet_x4.pth").is_file()
    assert not list(tmp_path.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))
    ggd = pd.read_parquet(workdir / "results" / "similarity" / "ggd.parquet")
    assert ggd.descriptor_sha256.nunique() == 1  # the odd-named weights were really used


# --- writers ----------------------------------------------------------------------------------------


def limit_file_size():
    """A file-size limit of 2 KiB: every larger write fails with EFBIG, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


WRITERS = {
    "png": "io.write_png(OUT, (np.random.default_rng(0).random((96, 96, 3)) * 255).astype(np.uint8))",
    "parquet": "io.write_parquet(pd.DataFrame({'x': np.random.default_rng(0).random(4000)}), OUT)",
    "checkpoint": "m = torch.nn.Linear(64, 64); "
    "save_checkpoint(OUT, m, torch.optim.SGD(m.parameters(), 0.1), 1, ('{}', torch.zeros(1)), {})",
    "figure": "plt = io.pyplot(); fig = plt.figure(); plt.plot(np.random.default_rng(0).random(500)); "
    "io.save_figure(fig, OUT)",
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.slow  # a stage run per writer
def test_a_failed_write_names_the_output_and_leaves_nothing(tmp_path, writer):
    out = tmp_path / "out" / {"png": "a.png", "parquet": "a.parquet", "checkpoint": "a.pth", "figure": "a.png"}[writer]
    code = (
        "import sys, numpy as np, pandas as pd, torch\n"
        "from grids import io\nfrom grids.stage import run_stage\nfrom grids.checkpoint import save_checkpoint\n"
        f"OUT = {str(out)!r}\n"
        f"def main():\n    {WRITERS[writer]}\n    return 0\n"
        "sys.exit(run_stage(main))\n"
    )
    result = run([sys.executable, "-c", code], tmp_path, preexec=limit_file_size)
    line = one_error_line(result)
    assert line.startswith(f"error: {out}: cannot write"), line
    assert not out.exists() and not list(out.parent.iterdir())  # no partial file, no temporary left


@pytest.mark.parametrize("target", ["folder", "device", "input", "missing_folder_ok"])
def test_grids_degrade_checks_its_output_first(tmp_path, target):
    image = png(tmp_path / "in.png")
    (tmp_path / "folder").mkdir()
    output = {
        "folder": str(tmp_path / "folder"),
        "device": "/dev/full",
        "input": str(image),
        "missing_folder_ok": str(tmp_path / "new" / "sub" / "out.png"),
    }[target]
    before = image.read_bytes()
    result = grids(tmp_path, "degrade", str(image), "-d", "jpeg", "-o", output)
    assert image.read_bytes() == before
    if target == "missing_folder_ok":
        assert result.returncode == 0, result.stderr
        assert io.read_image(output)[0].shape == (48, 48, 3)
        return
    line = one_error_line(result)
    assert line.startswith(f"error: {output}: "), line
    assert {"folder": "is a folder", "device": "not a regular file", "input": "is the input image"}[target] in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "in.png"]
    assert not list((tmp_path / "folder").iterdir())


def test_atomic_path_refuses_to_replace_a_special_file():
    with pytest.raises(io.OutputError, match="/dev/null: exists and is not a regular file"):
        with io.atomic_path("/dev/null"):
            pass


def test_atomic_path_removes_what_a_killed_writer_of_the_same_output_left(tmp_path):
    (tmp_path / ".a.png.ab12cd_9").mkdir()  # a killed writer's temporary folder (mkdtemp's 8 characters)
    (tmp_path / ".a.png.ab12cd_9" / "a.png").write_bytes(b"half")
    (tmp_path / ".a.png.zz99zz_0").write_bytes(b"half")  # a temporary file of an older version
    (tmp_path / ".a.png.b.png.ab12cd_9").mkdir()  # another output's ("a.png.b.png"): not ours
    png(tmp_path / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.png.b.png.ab12cd_9", "a.png"]


# --- configs ------------------------------------------------------------------------------------------


CONFIG_CASES = {
    "duplicate_key": (
        "seed: 1\nimages: {photos: [astronaut]}\nseed: 2\ndegradations: {jpeg: {}}\n",
        r"config/config.yaml, line 3, column 1: duplicate key 'seed' \(first given on line 1\)",
    ),
    "nested_duplicate": (
        "seed: 1\nimages: {photos: [astronaut]}\ndegradations:\n  jpeg: {}\n  jpeg: {quality: 5}\n",
        r"config/config.yaml, line 5, column 3: duplicate key 'jpeg' \(first given on line 4\)",
    ),
    "syntax_error": (
        "seed: 1\nimages: {photos: [astronaut]\ndegradations: {jpeg: {}}\n",
        r"config/config.yaml, line 3, column \d+: not valid YAML",
    ),
    "stdlib_function": (
        "seed: 1\nimages: {photos: [astronaut]}\ndegradations: {evil: {function: 'os:system'}}\n",
        r"config key degradations.evil: function 'os:system': os is part of Python's standard library",
    ),
    "builtin_function": (
        "seed: 1\nimages: {photos: [astronaut]}\ndegradations: {evil: {function: 'numpy:add'}}\n",
        r"config key degradations.evil: function 'numpy:add' is a ufunc, not a plain Python function",
    ),
    "unknown_params": (
        "seed: 1\nimages: {photos: [astronaut]}\ndegradations: {h: {function: 'haze.py:haze', params: {nope: 1}}}\n",
        r"config key degradations.h: function 'haze.py:haze' does not take the params \['nope'\]",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_config_mistakes_get_one_line_in_check_config_and_the_workflow(tmp_path, case):
    text, expected = CONFIG_CASES[case]
    workdir = project(tmp_path, {}, text)
    shutil.copy(ROOT / "examples" / "haze.py", workdir / "haze.py")
    line = one_error_line(grids(workdir, "check-config", "config/config.yaml"))
    assert re.search(expected, line), line
    result = snakemake(workdir, "-n", "degraded_datasets")
    assert result.returncode != 0 and re.search(expected, result.stdout + result.stderr), result.stdout + result.stderr
    assert not (workdir / "results").exists()


def test_a_broken_symlink_or_unreadable_file_in_an_images_folder_is_named(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    png(folder / "good.png")
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "sub.png").mkdir()  # a folder with an image's name is skipped and reported, not read
    config = {**SMALL, "images": {"folder": "images", "min_side": 32}}
    with pytest.raises(
        ConfigError,
        match=r"config key images.folder: 1 unusable entries: .*gone.png: broken symbolic "
        r"link \(points to .*nowhere.png, which does not exist\)",
    ):
        with pytest.warns(UserWarning, match=r"skipping 1 non-image file\(s\): sub.png/"):
            validate_config(config, tmp_path)
    with pytest.raises(io.BadImageError, match="gone.png: broken symbolic link"):
        io.read_image(folder / "gone.png")


DEGRADATION_RETURNS = {
    "none": ("return None", "returned NoneType"),
    "one_value": ("return image", "returned ndarray"),
    "wrong_dtype": ("return image.astype('float32'), {}", "returned an image of float32"),
    "not_json": ("return image, {'rng': rng}", "returned params that are not JSON values"),
    "params_not_dict": ("return image, [1, 2]", "returned params of type list"),
}


@pytest.mark.parametrize("case", sorted(DEGRADATION_RETURNS))
def test_a_user_degradation_breaking_its_contract_names_it_and_the_image(tmp_path, case):
    body, expected = DEGRADATION_RETURNS[case]
    (tmp_path / "funcs.py").write_text(f"def bad(image, rng):\n    {body}\n")
    clean = tmp_path / "clean"
    clean.mkdir()
    png(clean / "leaf.png")
    manifest = clean / "manifest.parquet"
    pd.DataFrame([{"image_id": "leaf", "source_path": "x", "path": str(clean / "leaf.png")}]).to_parquet(manifest)
    entry = json.dumps({"function": str(tmp_path / "funcs.py") + ":bad"})
    out = tmp_path / "degraded"
    result = stage(
        tmp_path,
        "degrade",
        clean=str(manifest),
        name="mine",
        entry=entry,
        seed="0",
        manifest=str(out / "manifest.parquet"),
        images_dir=str(out / "images"),
    )
    line = one_error_line(result)
    assert "degradation 'mine'" in line and expected in line and "(image leaf," in line and "must return" in line
    assert not out.exists() or not any(out.iterdir())  # no image, no manifest, no temporary
    with pytest.raises(ValueError, match=expected):
        degrade_dataset(
            io.read_manifest(manifest), "mine", json.loads(entry), 0, out / "manifest.parquet", out / "images"
        )


# --- checkpoints ----------------------------------------------------------------------------------------


def grids_checkpoint(path: Path, arch: str, kwargs: dict, params: dict) -> Path:
    torch.save({"params": params, "arch": arch, "arch_kwargs": json.dumps(kwargs), "group": "jpeg"}, path)
    return path


def srresnet_params(**kwargs) -> dict:
    from grids.archs import SRResNet

    return SRResNet(**kwargs).state_dict()


CHECKPOINTS = {
    "size_mismatch": (
        lambda p: grids_checkpoint(
            p, "srresnet", {"num_feat": 8, "num_block": 1}, srresnet_params(num_feat=16, num_block=1)
        ),
        r"weights do not fit srresnet \{'num_feat': 8, 'num_block': 1\}: shape mismatches \['",
    ),
    "other_arch": (
        lambda p: grids_checkpoint(p, "restormer", {}, srresnet_params(num_feat=8, num_block=1)),
        r"weights do not fit restormer \{\}: missing keys \['.*'\] \(\+\d+ more\); unexpected keys \['",
    ),
    "basicsr_file": (
        lambda p: torch.save({"params_ema": srresnet_params(), "params": srresnet_params()}, p) or p,
        r"not a GRIDS model checkpoint: no arch, arch_kwargs entries \(its top-level keys: \['params', "
        r"'params_ema'\]\); a BasicSR/official file",
    ),
    "unknown_arch": (lambda p: grids_checkpoint(p, "swinir", {}, {}), r"unknown architecture 'swinir'"),
    "bare_tensor": (lambda p: torch.save(torch.zeros(3), p) or p, r"not a GRIDS model checkpoint \(it holds a Tensor"),
    "garbage": (lambda p: (p.write_bytes(b"not a checkpoint"), p)[1], r"not a loadable GRIDS checkpoint"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
@pytest.mark.slow  # one `grids restore` per kind of bad file
def test_a_model_file_that_does_not_fit_gets_one_line(tmp_path, case):
    make, expected = CHECKPOINTS[case]
    path = make(tmp_path / "model.pth")
    with pytest.raises(ValueError, match=expected):
        load_model(path)
    test_dir = tmp_path / "test"
    out = tmp_path / "eval.parquet"
    result = stage(
        tmp_path,
        "evaluate",
        model=str(path),
        test_set=f"heldout\0{test_dir / 'clean' / 'manifest.parquet'}",
        degradations="jpeg",
        out=str(out),
    )
    line = one_error_line(result)
    assert line.startswith(f"error: {path}: ") and re.search(expected, line), line
    assert not out.exists()


# --- weights files name an architecture, never code -------------------------------------------------

# A module whose body leaves a marker file: importing it is running the weights' code.
PLANTED = """import pathlib, torch
pathlib.Path(__file__).with_name("MARKER").write_text("the weights file ran this")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x)
"""
SMALL_SRRESNET = {"num_feat": 8, "num_block": 1}


def weights_file(folder: Path, suffix: str, arch: str, kwargs_text: str, params: dict) -> Path:
    """A model file written by the safetensors package (or torch.save), as someone else would."""
    from safetensors.torch import save_file

    path = folder / f"downloaded{suffix}"
    meta = {"arch": arch, "arch_kwargs": kwargs_text, "group": "jpeg"}
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in params.items()}, str(path), metadata=meta)
    else:
        torch.save({"params": params, **meta}, path)
    return path


def planted(folder: Path, suffix: str, spec: str) -> Path:
    """Weights naming the planted module's class: as ``evil.py`` (relative), by absolute path, or as
    the package ``evilpkg.net`` (importable from the working directory)."""
    (folder / "evil.py").write_text(PLANTED)
    (folder / "evilpkg").mkdir()
    (folder / "evilpkg" / "__init__.py").write_text("")
    (folder / "evilpkg" / "net.py").write_text(PLANTED)
    spec = spec.replace("ABS", str(folder))
    params = {"conv.weight": torch.zeros(3, 3, 3, 3), "conv.bias": torch.zeros(3)}
    return weights_file(folder, suffix, spec, "{}", params)


def srresnet_weights(folder: Path, suffix: str, kwargs_text: str = json.dumps(SMALL_SRRESNET), dtype=None) -> Path:
    params = srresnet_params(**SMALL_SRRESNET)
    params = {k: v.to(dtype) for k, v in params.items()} if dtype else params
    return weights_file(folder, suffix, "srresnet", kwargs_text, params)


def carded(folder: Path, suffix: str) -> Path:
    """Good weights beside a model card that records another file's sha256 (replaced after export)."""
    path = srresnet_weights(folder, suffix)
    (folder / "downloaded.md").write_text(f"# card\n\n- file: `{path.name}`, sha256 `{'0' * 64}`\n")
    return path


NOT_CODE = r"names the architecture '\S*net:Net', which is neither built in \(srresnet, restormer, rrdbnet\); "
WEIGHTS_FILES = {
    "code_relative": (lambda f, s: planted(f, s, "evil.py:Net"), NOT_CODE.replace("net:", "evil.py:")),
    "code_absolute": (lambda f, s: planted(f, s, "ABS/evil.py:Net"), NOT_CODE.replace("net:", "evil.py:")),
    "code_package": (lambda f, s: planted(f, s, "evilpkg.net:Net"), NOT_CODE),
    "int8_tensors": (
        lambda f, s: srresnet_weights(f, s, dtype=torch.int8),
        r"dtype mismatches \['body\.0\.conv1\.bias \(file int8, model float32\)'",
    ),
    "float64_tensors": (lambda f, s: srresnet_weights(f, s, dtype=torch.float64), r"\(file float64, model float32\)"),
    "card_sha256": (carded, r"its sha256 [0-9a-f]{16}\.\.\. differs from the 0{16}\.\.\. its model card \S+\.md rec"),
    "kwargs_nan": (lambda f, s: srresnet_weights(f, s, '{"num_feat": NaN}'), r"its arch_kwargs holds NaN: only finite"),
    "kwargs_infinite": (
        lambda f, s: srresnet_weights(f, s, '{"num_feat": 1e999}'),
        r"its arch_kwargs holds 1e999: only finite numbers",
    ),
    "kwargs_not_object": (lambda f, s: srresnet_weights(f, s, "[8, 1]"), r"its arch_kwargs is a JSON list, not an obj"),
}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("case", sorted(WEIGHTS_FILES))
def test_a_weights_file_runs_no_code_and_is_checked_before_loading(tmp_path, case, suffix):
    """Through the evaluate stage (what the workflow and `grids restore` load models with): one line
    naming the file, no output, and the planted module never imported (no marker file)."""
    make, expected = WEIGHTS_FILES[case]
    path = make(tmp_path, suffix)
    out = tmp_path / "eval.parquet"
    result = stage(
        tmp_path, "evaluate", model=str(path), test_set="heldout\0none.parquet", degradations="jpeg", out=str(out)
    )
    line = one_error_line(result)
    assert line.startswith(f"error: {path}: ") and re.search(expected, line), line
    assert not out.exists()
    assert not list(tmp_path.rglob("MARKER")), "the weights file's code ran"


def test_a_weights_file_may_name_the_user_architecture_the_config_trusts(tmp_path, monkeypatch):
    """The config's own architecture (``archs``, from training.arch) is built; the same file
    without that trust is refused before the import."""
    path = planted(tmp_path, ".safetensors", "evil.py:Net")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="a weights file may not bring code: name the architecture in your config"):
        load_model(path, archs=["other.py:Net"])
    assert not (tmp_path / "MARKER").exists()
    model, state = load_model(path, archs=["evil.py:Net"])
    assert type(model).__name__ == "Net" and (tmp_path / "MARKER").exists()  # trusted: its module ran


def test_a_published_half_precision_file_still_imports_but_integers_do_not(tmp_path):
    """Published weights may be fp16 (cast to the model's float32); integer tensors never fit."""
    from grids.checkpoint import import_weights

    half = srresnet_weights(tmp_path, ".safetensors", dtype=torch.float16)
    state = import_weights(half, "srresnet", SMALL_SRRESNET, "pub", tmp_path / "pub.pth")
    assert all(v.dtype == torch.float32 for v in state["params"].values())
    (tmp_path / "downloaded.safetensors").unlink()
    ints = srresnet_weights(tmp_path, ".safetensors", dtype=torch.int8)
    with pytest.raises(ValueError, match=r"downloaded\.safetensors: weights do not fit .*dtype mismatches"):
        import_weights(ints, "srresnet", SMALL_SRRESNET, "pub", tmp_path / "pub2.pth")
    assert not (tmp_path / "pub2.pth").exists()


def test_a_corrupt_resume_checkpoint_says_which_file_to_delete(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    png(clean / "a.png", size=64)
    pd.DataFrame([{"image_id": "a", "path": str(clean / "a.png")}]).to_parquet(clean / "manifest.parquet")
    resume = tmp_path / "resume.pth"
    resume.write_bytes(b"\x00" * 100)  # what a disk error can leave
    recipe = tiny_recipe(
        3,
        arch_kwargs={"num_feat": 4, "num_block": 1},
        batch_size=1,
        weight_decay=0,
        warmup=1,
        min_lr_ratio=0.1,
        checkpoint_every=2,
    )
    out = tmp_path / "model.pth"
    result = stage(
        tmp_path,
        "train",
        group="jpeg",
        clean=str(clean / "manifest.parquet"),
        degradations=json.dumps({"jpeg": {}}),
        recipe=json.dumps(recipe),
        seed="0",
        out=str(out),
        log=str(tmp_path / "log.parquet"),
        resume=str(resume),
    )
    line = one_error_line(result)
    assert f"{resume}: not a loadable GRIDS checkpoint" in line and f"delete it (rm {resume})" in line
    assert not out.exists()


def test_a_checkpoint_write_goes_through_atomic_path(tmp_path):
    path = tmp_path / "ckpt.pth"
    model = torch.nn.Linear(2, 2)
    save_checkpoint(path, model, torch.optim.SGD(model.parameters(), 0.1), 1, ("{}", torch.zeros(1)), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]


# --- CLI ------------------------------------------------------------------------------------------------


def test_grids_select_reports_every_bad_path_before_any_work(tmp_path):
    png(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    (tmp_path / "folder.png").mkdir()
    # No results and no config here: the inputs are checked before either is looked for.
    line = one_error_line(grids(tmp_path, "select", "ok.png", "corrupt.png", "nope.png", "folder.png"))
    assert line.startswith("error: 3 of 4 input images are unusable: ")
    assert "corrupt.png: not a readable image" in line and "nope.png: no such file" in line
    assert "folder.png: is a folder" in line and "ok.png" not in line.replace("corrupt.png", "")


def test_grids_restore_refuses_its_input_as_output_before_any_work(tmp_path):
    image = png(tmp_path / "x.png")
    before = image.read_bytes()
    line = one_error_line(grids(tmp_path, "restore", "x.png", "-o", "./x.png"))
    assert "x.png: is the input image" in line and "--force" in line
    assert image.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_check_config_on_a_missing_or_unreadable_file(tmp_path):
    assert one_error_line(grids(tmp_path, "check-config", "nope.yaml")) == "error: config file nope.yaml not found"
    (tmp_path / "dir.yaml").mkdir()
    line = one_error_line(grids(tmp_path, "check-config", "dir.yaml"))
    assert line == "error: config file dir.yaml: is a folder, not a file"


def test_load_config_rejects_duplicates_in_any_merged_file(tmp_path):
    (tmp_path / "a.yaml").write_text("seed: 1\nimages: {photos: [astronaut]}\ndegradations: {jpeg: {}}\n")
    (tmp_path / "b.yaml").write_text("training:\n  iterations: 5\n  iterations: 6\n")
    with pytest.raises(ConfigError, match=r"b.yaml, line 3, column 3: duplicate key 'iterations'"):
        load_config([tmp_path / "a.yaml", tmp_path / "b.yaml"])


# --- the crop store ---------------------------------------------------------------------------------


def clean_training_set(tmp_path: Path) -> Path:
    from grids.data import prepare_clean_set, set_paths

    config = {"photos": [], "dead_leaves": {"count": 3, "size": 48}, "min_side": 32}
    prepare_clean_set(config, 0, *set_paths(tmp_path / "clean"))
    return tmp_path / "clean" / "manifest.parquet"


def build_store_stage(cwd: Path, manifest: Path, store: Path, prefix: tuple[str, ...] = ()):
    args = ("--clean", str(manifest), "--index", str(store / "index.parquet"), "--arrays", str(store / "arrays"))
    return run([sys.executable, *(prefix or ("-m", "grids.store")), *args], cwd)


# python -m grids.store that kills itself with SIGKILL while writing its second array: a
# deterministic kill -9 in the middle of a write (after atomic_path made its temporary folder).
KILLED_STORE = (
    "import os, signal, sys, numpy as np\nfrom grids import store\n"
    "save, calls = np.save, []\n"
    "def dying_save(f, array, **kw):\n"
    "    calls.append(1)\n"
    "    if len(calls) == 2:\n"
    "        f.write(b'\\x93NUMPY half an array'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
    "    save(f, array, **kw)\n"
    "np.save = dying_save\n"
    "sys.exit(store.main(sys.argv[1:]))\n"
)


@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_train_store_killed_with_kill_9_reruns_to_the_uninterrupted_result(tmp_path):
    manifest = clean_training_set(tmp_path)
    killed = build_store_stage(tmp_path, manifest, tmp_path / "killed", ("-c", KILLED_STORE))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    arrays = tmp_path / "killed" / "arrays"
    assert any(p.is_dir() and p.name.startswith(".") for p in arrays.iterdir())  # the temporary folder left
    rerun = build_store_stage(tmp_path, manifest, tmp_path / "killed")
    assert rerun.returncode == 0, rerun.stderr
    assert build_store_stage(tmp_path, manifest, tmp_path / "whole").returncode == 0
    assert files_under(arrays) == files_under(tmp_path / "whole" / "arrays")  # no temporary left either
    index = {s: pd.read_parquet(tmp_path / s / "index.parquet") for s in ("killed", "whole")}
    assert index["killed"].drop(columns="path").equals(index["whole"].drop(columns="path"))
    assert [Path(p).name for p in index["killed"].path] == [Path(p).name for p in index["whole"].path]


@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_train_store_killed_from_outside_while_a_temporary_exists_reruns_cleanly(tmp_path):
    """``kill -9`` of a real ``python -m grids.store`` the moment a temporary folder appears (polled;
    a build that finished first is retried on a fresh folder)."""
    import time

    from grids.data import prepare_clean_set, set_paths

    config = {"photos": [], "dead_leaves": {"count": 6, "size": 768}, "min_side": 32}
    prepare_clean_set(config, 0, *set_paths(tmp_path / "clean"))
    manifest = tmp_path / "clean" / "manifest.parquet"
    for attempt in range(8):
        store = tmp_path / f"killed{attempt}"
        args = ["--clean", str(manifest), "--index", str(store / "index.parquet"), "--arrays", str(store / "arrays")]
        job = subprocess.Popen([sys.executable, "-m", "grids.store", *args], cwd=tmp_path, stderr=subprocess.DEVNULL)
        caught = False
        while job.poll() is None and not caught:
            if (store / "arrays").is_dir():
                caught = any(p.is_dir() for p in (store / "arrays").iterdir())
            if caught:
                job.kill()
            time.sleep(0.0002)
        job.wait()
        if caught and job.returncode == -signal.SIGKILL and any((store / "arrays").iterdir()):
            break
    else:
        pytest.skip("the build always finished before a temporary folder was seen")
    assert any(p.is_dir() and p.name.startswith(".") for p in (store / "arrays").iterdir())
    assert build_store_stage(tmp_path, manifest, store).returncode == 0
    assert build_store_stage(tmp_path, manifest, tmp_path / "whole").returncode == 0
    assert files_under(store / "arrays") == files_under(tmp_path / "whole" / "arrays")
    names = [sorted(p.name for p in (folder / "arrays").iterdir()) for folder in (store, tmp_path / "whole")]
    assert names[0] == names[1]  # no temporary folder left


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flip_a_pixel(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


# How an array is damaged -> what a training job opening the store says (None: it cannot tell,
# the header and size are right) and what a rebuild says.
STORE_DAMAGE = {
    "truncated": (truncate, r"bytes where its header needs \d+ \(truncated\)", r"\(truncated\); rebuilt"),
    "deleted": (Path.unlink, r"missing", None),
    "not_npy": (lambda p: p.write_bytes(b"garbage"), r"not a readable \.npy array", r"not a readable \.npy array"),
    "pixel_changed": (flip_a_pixel, None, r"sha256 \w+\.\.\. differs from the \w+\.\.\. recorded when written"),
    "stale_temporary": (lambda p: (p.parent / f".{p.name}.ab12cd_9").mkdir(), None, None),
}


@pytest.mark.parametrize("case", sorted(STORE_DAMAGE))
def test_a_damaged_store_is_named_when_opened_and_rebuilt(tmp_path, case):
    damage, when_opened, when_rebuilt = STORE_DAMAGE[case]
    manifest = clean_training_set(tmp_path)
    store = tmp_path / "store"
    assert build_store_stage(tmp_path, manifest, store).returncode == 0
    good = files_under(store / "arrays")
    array = sorted((store / "arrays").glob("*.npy"))[1]
    damage(array)
    opened = run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom grids.stage import run_stage\nfrom grids.store import CropStore\n"
            f"sys.exit(run_stage(lambda: CropStore.open({str(store / 'index.parquet')!r}) and 0))",
        ],
        tmp_path,
    )
    if when_opened is None:
        assert opened.returncode == 0, opened.stderr
    else:
        line = one_error_line(opened)
        assert line.startswith(f"error: {array}: ") and re.search(when_opened, line), line
        assert "snakemake --forcerun train_store" in line
    rebuilt = build_store_stage(tmp_path, manifest, store)
    assert rebuilt.returncode == 0, rebuilt.stderr
    if when_rebuilt:
        assert re.search(f"{re.escape(str(array))}: .*{when_rebuilt}", rebuilt.stdout), rebuilt.stdout
    assert files_under(store / "arrays") == good
    assert sorted(p.name for p in (store / "arrays").iterdir()) == sorted(good)  # no folder left


# --- command-line numbers and choices ---------------------------------------------------------------

# (arguments after `grids`, the start of the one error line). Each is refused before any work, so
# no results, model or config beyond the working directory's default is needed.
CLI_CASES = {
    "tile_zero": (["restore", "in.png", "-o", "out.png", "--tile", "0"], "error: --tile 0: must be an integer >= 64"),
    "tile_negative": (["restore", "in.png", "-o", "out.png", "--tile", "-5"], "error: --tile -5: must be"),
    "tile_one": (["restore", "in.png", "-o", "out.png", "--tile", "1"], "error: --tile 1: must be"),
    "threshold_nan": (["select", "in.png", "--threshold", "nan"], "error: --threshold nan: must be a finite number"),
    "threshold_inf": (["restore", "in.png", "-o", "out.png", "--threshold", "inf"], "error: --threshold inf: must"),
    "threshold_minus_inf": (["select", "in.png", "--threshold=-inf"], "error: --threshold -inf: must be a finite"),
    "fallback_with_group": (
        ["restore", "in.png", "-o", "out.png", "--group", "jpeg", "--fallback", "identity"],
        "error: --fallback identity with --group jpeg: a fallback replaces the chosen model of a flagged input, "
        "and --group skips the choice; give one of them",
    ),
    "instances_zero": (["plan", "--instances", "0"], "error: --instances 0: must be an integer >= 1"),
    "instances_negative": (["plan", "--instances", "-3"], "error: --instances -3: must be an integer >= 1"),
    "digits_negative": (["matrix", "m.parquet", "--digits", "-1"], "error: --digits -1: must be an integer >= 0"),
    "seed_negative": (["degrade", "in.png", "-d", "jpeg", "-o", "o.png", "--seed", "-1"], "error: --seed -1: must"),
    "device_unknown": (["select", "in.png", "--device", "gpu"], "error: --device 'gpu': expected one of auto, cpu"),
    "device_cuda_none": (["select", "in.png", "--device", "cuda"], "error: --device cuda: CUDA is not available"),
    "device_cuda_index": (["select", "in.png", "--device", "cuda:99"], "error: --device cuda:99: "),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_every_cli_number_and_choice_is_checked_naming_the_option(tmp_path, case):
    args, expected = CLI_CASES[case]
    if case == "device_cuda_none" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    png(tmp_path / "in.png")
    before = files_under(tmp_path)
    line = one_error_line(grids(tmp_path, *args))
    assert line.startswith(expected), line
    assert files_under(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


# (statistic, --threshold, accepted): the gain statistic's score is minus a gain in dB, so its
# threshold may be negative (its default is -selection.min_helpful_gain); the others' scores are distances.
THRESHOLDS = [
    ("gain", "-0.5", True),
    ("gain", "0", True),
    ("gain", "2.5", True),
    ("knn", "-0.5", False),
    ("paper", "0", False),
    ("mahalanobis", "3", True),
]


@pytest.mark.parametrize(("statistic", "value", "accepted"), THRESHOLDS)
def test_threshold_is_checked_against_the_statistic(tmp_path, statistic, value, accepted):
    """Checked once the config names the statistic, before any result is read: an accepted one
    goes on to ask for the built results (there are none here)."""
    project(tmp_path, {**SMALL, "selection": {"unseen": {}, "statistic": statistic}})
    png(tmp_path / "in.png")
    line = one_error_line(grids(tmp_path, "select", "in.png", "--threshold", value))
    if accepted:
        assert line.startswith("error: results/similarity/ggd.parquet not found: build it first"), line
    else:
        assert line == (
            f"error: --threshold {float(value)}: must be a finite number > 0 (the {statistic} statistic's score "
            "is a distance, >= 0)"
        ), line


# --fallback identity writes the input's own pixels: (what, stored array as OpenCV reads it)
UNCHANGED = {
    "rgb_16bit": np.random.default_rng(1).integers(0, 65536, (20, 30, 3), dtype=np.uint16),
    "rgba_8bit": np.random.default_rng(2).integers(0, 256, (20, 30, 4), dtype=np.uint8),
    "rgba_16bit": np.random.default_rng(3).integers(0, 65536, (20, 30, 4), dtype=np.uint16),
    "gray_16bit": np.random.default_rng(4).integers(0, 65536, (20, 30), dtype=np.uint16),
}


@pytest.mark.parametrize("case", sorted(UNCHANGED))
def test_the_identity_fallback_writes_the_input_unchanged(tmp_path, case):
    """Depth and alpha survive (the 8-bit RGB reading the models get would lose them)."""
    import cv2

    stored = UNCHANGED[case]
    cv2.imwrite(str(tmp_path / "in.png"), stored)
    io.copy_as_png(tmp_path / "in.png", tmp_path / "out" / "out.png")
    back = cv2.imread(str(tmp_path / "out" / "out.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == stored.dtype and back.shape == stored.shape
    np.testing.assert_array_equal(back, stored)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["out.png"]  # no temporary left


def test_select_json_has_null_for_what_json_cannot_hold():
    """An unbounded gain interval (the conformal rank above the references) and a NaN score are
    null, so that `grids select --json` is JSON that any parser reads."""
    from grids.selection.selector import Selection

    choice = Selection(
        "jpeg", 1.5, True, pd.DataFrame({"group": ["jpeg"], "distance": [math.inf]}), math.nan, 0.2, "gain",
        score=math.nan, expected_gain=1.0, gain_low=-math.inf, gain_high=math.inf,
    )  # fmt: skip
    text = json.dumps(choice.as_dict(), allow_nan=False)
    answer = json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} in {text}"))
    assert answer["gain_interval"] == [None, None] and answer["score"] is None
    assert answer["divergences"] == {"jpeg": None} and answer["input_ggd"] == {"alpha": None, "sigma": 0.2}


def test_the_smallest_tile_covers_the_overlap_and_the_architecture_s_multiple():
    from grids.stage import MIN_TILE, TILE_OVERLAP, check_tile, min_tile

    assert MIN_TILE == 2 * TILE_OVERLAP == min_tile(1) == min_tile(4) == min_tile(16)
    assert min_tile(24) == 72 and min_tile(128) == 128
    check_tile(96, 48, "m.pth")
    with pytest.raises(ValueError, match=r"^--tile 64: must be at least 96 for m.pth \(it pads its input to multip"):
        check_tile(64, 48, "m.pth")


@pytest.mark.parametrize("tile", ["0", "-5", "63"])
def test_python_m_grids_evaluate_refuses_a_tile_below_the_minimum(tmp_path, tile):
    out = tmp_path / "eval.parquet"
    result = stage(
        tmp_path,
        "evaluate",
        model="input",
        test_set="heldout\0none.parquet",
        degradations="jpeg",
        out=str(out),
        tile=tile,
    )
    assert one_error_line(result).startswith(f"error: --tile {tile}: must be at least 64; tiles overlap by 32 px")
    assert not out.exists()


# --- user architectures -----------------------------------------------------------------------------

USER_NET = """import torch
{top}

class Net(torch.nn.Module):
    def __init__(self, width=4):
        super().__init__()
        {init}
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        {forward}
        return self.conv(x)
"""
SPEC = r"config key training\.arch: architecture 'net\.py:Net': "
INIT = r"Net\(\*\*\{'width': 3\}\) raised "
FORWARD = r"forward on a \(1, 3, 16, 16\) input "
# case -> (code changes, the error line's pattern after the config key)
USER_ARCHS = {
    "import_raises": ({"top": "raise RuntimeError('no gpu')"}, r"importing \S*net\.py raised RuntimeError: no gpu"),
    "import_exits": ({"top": "import sys; sys.exit(3)"}, r"importing \S*net\.py raised SystemExit: 3"),
    "init_raises": ({"init": "raise ValueError('bad width')"}, INIT + r"ValueError: bad width"),
    "init_exits": ({"init": "raise SystemExit('usage: net')"}, INIT + r"SystemExit: usage: net"),
    "forward_raises": ({"forward": "raise IndexError('odd')"}, FORWARD + r"raised IndexError: odd"),
    "wrong_shape": (
        {"forward": "return torch.nn.functional.interpolate(x, scale_factor=2)"},
        FORWARD + r"returned \(1, 3, 32, 32\); a backbone restores at the same size",
    ),
    "not_a_tensor": ({"forward": "return [x]"}, FORWARD + r"returned list"),
    "multiple_zero": ({"init": "self.size_multiple = 0"}, r"size_multiple is 0, expected a positive integer"),
    "multiple_float": ({"init": "self.size_multiple = 2.5"}, r"size_multiple is 2\.5, expected a positive integer"),
    "multiple_text": ({"init": "self.size_multiple = '4'"}, r"size_multiple is '4', expected a positive integer"),
}


@pytest.mark.parametrize("case", sorted(USER_ARCHS))
@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_a_user_architecture_breaking_its_contract_is_one_line_at_parse_time(tmp_path, case):
    changes, expected = USER_ARCHS[case]
    code = USER_NET.format(**{"top": "", "init": "pass", "forward": "pass", **changes})
    config = {**SMALL, "training": {**SMALL["training"], "arch": "net.py:Net", "arch_kwargs": {"width": 3}}}
    workdir = project(tmp_path, config)
    (workdir / "net.py").write_text(code)
    line = one_error_line(grids(workdir, "check-config", "config/config.yaml"))
    assert re.search(SPEC + expected, line), line
    if case in ("import_exits", "init_raises", "wrong_shape"):  # the workflow's pre-check says the same
        result = snakemake(workdir, "-n", "degraded_datasets")
        output = result.stdout + result.stderr
        assert result.returncode != 0 and re.search(SPEC + expected, output) and "Traceback" not in output, output
    assert sorted(p.name for p in workdir.iterdir()) == ["config", "net.py"]  # no results, no caches


# --- validation experiments ---------------------------------------------------------------------------

# SMALL trains jpeg only; the experiments name two more degradations, configured here.
EXPERIMENT_DEGRADATIONS = {"jpeg": {"quality": [10, 40]}, "gaussian_noise": {}, "sr": {}}
EXPERIMENTS = {
    "typo": ([["jpg", "sr"], ["gaussian_noise", "jpeg"]], r"'jpg' is not a degradation .*did you mean 'jpeg'\?"),
    "unknown": ([["zzz_qqq", "sr"], ["gaussian_noise", "jpeg"]], r"'zzz_qqq' is not a degradation .*built-ins are"),
    "identical": ([["jpeg", "sr"], ["sr", "jpeg"]], r"its two groups are the same \(jpeg, sr\)"),
    "empty": ([[], ["sr", "jpeg"]], r"\[\] has 0 member\(s\); a group mixes 2 or more degradations"),
    "one_member": ([["jpeg"], ["sr"]], r"\['\w+'\] has 1 member\(s\); a group mixes 2 or more"),
    "unequal": ([["jpeg", "sr", "gaussian_noise"], ["sr", "jpeg"]], r"its two groups have 3 and 2 members"),
}


@pytest.mark.parametrize("case", sorted(EXPERIMENTS))
@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_a_bad_validation_experiment_is_one_line_at_parse_time(tmp_path, case):
    sides, expected = EXPERIMENTS[case]
    config = {**SMALL, "degradations": EXPERIMENT_DEGRADATIONS, "validation": {"experiments": {"e1": sides}}}
    workdir = project(tmp_path, config)
    line = one_error_line(grids(workdir, "check-config", "config/config.yaml"))
    assert re.search(r"config key validation\.experiments\.e1\S*: " + expected, line), line
    if case == "typo":  # the workflow's pre-check says the same
        result = snakemake(workdir, "-n", "degraded_datasets")
        output = result.stdout + result.stderr
        assert result.returncode != 0 and re.search(expected, output) and "Traceback" not in output, output
    assert sorted(p.name for p in workdir.iterdir()) == ["config"]


# A composite unseen degradation (`compose:` trained degradations in sequence) -> the error.
COMPOSITES = {
    "typo": ({"compose": ["jpg", "sr"]}, r"compose: 'jpg' is not a trained degradation; did you mean 'jpeg'\?"),
    "untrained": ({"compose": ["jpeg", "motion_blur"]}, r"compose: 'motion_blur' is not a trained degradation"),
    "one_part": ({"compose": ["jpeg"]}, r"compose: expected a list of two or more trained degradation names"),
    "not_a_list": ({"compose": "jpeg"}, r"compose: expected a list of two or more"),
    "extra_key": ({"compose": ["jpeg", "sr"], "params": {}}, r"a composite takes only `compose`.*\['params'\]"),
}


@pytest.mark.parametrize("case", sorted(COMPOSITES))
def test_a_bad_composite_is_one_line_at_parse_time(tmp_path, case):
    entry, expected = COMPOSITES[case]
    config = {**SMALL, "degradations": EXPERIMENT_DEGRADATIONS, "selection": {"unseen": {"mixed": entry}}}
    workdir = project(tmp_path, config)
    line = one_error_line(grids(workdir, "check-config", "config/config.yaml"))
    assert re.search(r"config key selection\.unseen\.mixed(\.compose)?: " + expected.split(": ", 1)[-1], line), line
    assert sorted(p.name for p in workdir.iterdir()) == ["config"]


def test_an_experiment_naming_a_built_in_left_out_of_the_config_is_skipped_not_refused(tmp_path):
    from grids.validation import runnable_experiments

    sides = [["jpeg", "motion_blur"], ["gaussian_noise", "sr"]]  # motion_blur: built-in, not configured
    config = {**SMALL, "degradations": EXPERIMENT_DEGRADATIONS, "validation": {"experiments": {"e1": sides}}}
    result = grids(project(tmp_path, config), "check-config", "config/config.yaml")
    assert result.returncode == 0, result.stderr
    kept, skipped = runnable_experiments({"e1": sides}, list(EXPERIMENT_DEGRADATIONS))
    assert not kept and skipped == ["experiment e1 skipped: motion_blur not among the configured degradations"]


# --- config files that are code, missing, folders or not YAML ----------------------------------------

YTE = 'seed: ?__import__("pathlib").Path("pwned").touch() or 3\n'
CONFIG_FILES = {
    "yte_in_base": ("config/config.yaml", "__use_yte__: true\n" + YTE, "__use_yte__ makes Snakemake run"),
    "yte_in_extra": ("extra.yaml", "__use_yte__: true\n" + YTE, "__use_yte__ makes Snakemake run"),
    "yte_false": ("extra.yaml", "__use_yte__: false\nseed: 4\n", "__use_yte__ makes Snakemake run"),
    "missing": ("missing.yaml", None, "not found"),
    "folder": ("folder.yaml", "", "is a folder, not a file"),
    "syntax": ("extra.yaml", "seed: 1\nimages: {photos: [astronaut]\n", r"line \d+, column \d+: not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_FILES))
@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_a_config_file_that_is_code_missing_a_folder_or_not_yaml_is_one_line_naming_it(tmp_path, case):
    name, text, expected = CONFIG_FILES[case]
    workdir = project(tmp_path, SMALL)
    if case == "folder":
        (workdir / name).mkdir()
    elif text is not None:
        base = yaml.safe_dump({k: v for k, v in SMALL.items() if k != "seed"})  # the file sets seed
        (workdir / name).write_text(text if name != "config/config.yaml" else base + text)
    extra = [] if name == "config/config.yaml" else [name]
    line = one_error_line(grids(workdir, "check-config", "config/config.yaml", *extra))
    assert re.search(f"^error: config file {re.escape(name)}(:| |, ).*{expected}", line), line
    assert not (workdir / "pwned").exists()  # grids never evaluates a config
    if case in ("yte_in_base", "yte_in_extra"):
        result = snakemake(workdir, "-n", "degraded_datasets", *(["--configfile", name] if extra else []))
        output = result.stdout + result.stderr
        assert result.returncode != 0 and re.search(expected, output) and "Traceback" not in output, output
        assert not (workdir / "results").exists()
        if case == "yte_in_base":  # checked before Snakemake loads it: the expression never ran
            assert not (workdir / "pwned").exists()
        # (A --configfile is loaded, its expressions run, by Snakemake before the workflow: README.)


def readme_host(module_snakefile: Path) -> str:
    """The host Snakefile of the README's "Using the workflow inside your own", as written there."""
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("```python\n# your Snakefile") :].split("\n", 1)[1]
    block = block[: block.index("```")]
    return re.sub(r'snakefile: "[^"]*".*', f"snakefile: {str(module_snakefile)!r}", block)


def layout(kind: str, workdir: Path) -> list[str]:
    """A working directory of each kind (its config/config.yaml written by the test); the Snakefile options."""
    if kind == "init":
        assert grids(workdir.parent, "init", workdir.name).returncode == 0
        return []  # workflow/Snakefile, found by Snakemake
    if kind == "module":
        (workdir / "Snakefile").write_text(readme_host(SNAKEFILE))
        return ["-s", str(workdir / "Snakefile")]
    return ["-s", str(SNAKEFILE)]


BASE = yaml.safe_dump({k: v for k, v in SMALL.items() if k != "seed"})  # the cases set seed
LAYOUT_CASES = {
    "yte": (BASE + "__use_yte__: true\n" + YTE, r"config/config.yaml: __use_yte__ makes Snakemake run"),
    "syntax": (
        "seed: 1\nimages: {photos: [astronaut]\n" + BASE,
        r"config/config.yaml, line \d+, column \d+: not valid",
    ),
    "duplicate": (BASE + "seed: 1\nseed: 2\n", r"config/config.yaml, line \d+, column 1: duplicate key 'seed'"),
}


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
@pytest.mark.parametrize("kind", ["checkout", "init", "module"])
def test_every_layout_checks_its_config_before_snakemake_loads_it(tmp_path, kind, case):
    """The checkout, a `grids init` folder and the README's host workflow read config/config.yaml
    with the package's loader first: nothing evaluated, the file and line named, nothing written."""
    text, expected = LAYOUT_CASES[case]
    workdir = tmp_path / "study"
    workdir.mkdir()
    options = layout(kind, workdir)
    (workdir / "config" / "config.yaml").unlink(missing_ok=True)
    project(workdir, {}, text)
    result = run([sys.executable, "-m", "snakemake", *options, "-n", "--cores", "1", "all"], workdir)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and re.search(expected, output) and "Traceback" not in output, output
    assert not (workdir / "pwned").exists() and not (workdir / "results").exists()


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
def test_grids_run_checks_every_configfile_before_snakemake_loads_it(tmp_path, case):
    """Snakemake loads a --configfile before any line of the workflow: `grids run` reads it first."""
    text, expected = LAYOUT_CASES[case]
    workdir = project(tmp_path, SMALL)
    (workdir / "extra.yaml").write_text(text)
    result = grids(workdir, "run", "-s", str(SNAKEFILE), "-n", "--cores", "1", "--configfile", "extra.yaml")
    assert re.search(expected.replace("config/config", "extra"), one_error_line(result))
    assert not (workdir / "pwned").exists() and not (workdir / "results").exists()
    (workdir / "extra.yaml").write_text("seed: 4\n")
    result = grids(workdir, "run", "-s", str(SNAKEFILE), "-n", "--cores", "1", "--configfile", "extra.yaml")
    assert result.returncode == 0 and "degrade" in result.stdout, result.stdout + result.stderr


# --- one line naming the culprit ----------------------------------------------------------------------


def culprit_ncnn_binary_param(workdir: Path) -> tuple[list[str], str]:
    (workdir / "r.param").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (workdir / "r.bin").write_bytes(b"\0" * 64)
    return ["import-ncnn-rrdb", "r.param", "r.bin", "-o", "out.pth"], r"^error: r\.param: not an ncnn \.param file"


def culprit_ncnn_own_input(workdir: Path) -> tuple[list[str], str]:
    (workdir / "r.param").write_text("7767517\n1 1\n")
    (workdir / "r.bin").write_bytes(b"\0" * 64)
    return ["import-ncnn-rrdb", "r.param", "r.bin", "-o", "r.bin"], r"^error: r\.bin: is the input file r\.bin; [^-]*$"


def culprit_weights_folder(workdir: Path) -> tuple[list[str], str]:
    (workdir / "weights").mkdir()
    config = {**SMALL, "baselines": {"esr": {"weights": "weights", "arch": "rrdbnet", "arch_kwargs": {"scale": 4}}}}
    project(workdir, config)
    return ["check-config"], r"^error: config key baselines\.esr\.weights: weights is a folder; give the weights file"


CULPRITS = {
    "ncnn_binary_param": culprit_ncnn_binary_param,
    "ncnn_own_input": culprit_ncnn_own_input,  # no --force suggested: the command has none
    "weights_folder": culprit_weights_folder,
}


@pytest.mark.parametrize("case", sorted(CULPRITS))
def test_each_mistake_is_one_line_naming_the_culprit(tmp_path, case):
    args, expected = CULPRITS[case](tmp_path)
    before = files_under(tmp_path)
    line = one_error_line(grids(tmp_path, *args))
    assert re.search(expected, line), line
    assert files_under(tmp_path) == before  # nothing written, nothing touched


@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_a_job_building_a_user_class_whose_constructor_raises_names_the_class(tmp_path):
    (tmp_path / "net.py").write_text(USER_NET.format(top="", init="raise ValueError('bad width')", forward="pass"))
    code = "import sys\nfrom grids.stage import run_stage\nfrom grids.checkpoint import build_model\n"
    code += "sys.exit(run_stage(lambda: build_model('net.py:Net', {'width': 3}) and 0))\n"
    line = one_error_line(run([sys.executable, "-c", code], tmp_path))
    assert line == "error: architecture 'net.py:Net': Net(**{'width': 3}) raised ValueError: bad width", line


# --- kill -9 at any point of a stage ----------------------------------------------------------------
# Each stage is run once whole, and once into another folder where it is killed with SIGKILL at
# several points in turn (the moment an atomic_path temporary appears, then at fractions of the
# whole run's time), each kill followed by the same command again; the last run is left to finish.
# Its outputs must equal the whole run's, with no temporary left. (train_store: above; train:
# tests/test_train.py, which kills a training mid-loop and resumes it to identical weights.)

KILL_FRACTIONS = (0.35, 0.7)
DEAD_LEAVES_SET = {"photos": [], "dead_leaves": {"count": 8, "size": 256}, "min_side": 32}


def has_temporary(folder: Path) -> bool:
    """An atomic_path temporary (a hidden ``.<name>.<random>`` sibling, file or folder) under ``folder``."""
    return folder.is_dir() and any(p.name.startswith(".") for p in folder.rglob("*"))


def kill_9_when(args: list[str], cwd: Path, ready, timeout: float = 300) -> int:
    """Run ``args`` and SIGKILL it the moment ``ready()`` holds; its return code (-9 when killed)."""
    import time

    job = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while job.poll() is None and time.monotonic() < deadline:
        if ready():
            job.kill()
            break
        time.sleep(0.002)
    return job.wait()


def outputs(folder: Path) -> dict[str, object]:
    """Every file under ``folder``: Parquet as a frame (the folder's own path replaced, so two
    folders compare), anything else as bytes."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            for column in frame.columns[[dtype.kind == "O" or dtype == "str" for dtype in frame.dtypes]]:
                frame[column] = frame[column].map(
                    lambda v: v.replace(str(folder), "<out>") if isinstance(v, str) else v
                )
            found[str(path.relative_to(folder))] = frame
        else:
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def stage_clean(tmp_path: Path):
    def command(out: Path) -> list[str]:
        return [
            *(sys.executable, "-m", "grids.data", "--images", json.dumps(DEAD_LEAVES_SET), "--seed", "0"),
            *("--dataset", "train", "--manifest", str(out / "manifest.parquet")),
            *("--images-dir", str(out / "images"), "--checks", str(out / "checks.parquet")),
        ]

    return command


def clean_set(tmp_path: Path) -> Path:
    folder = tmp_path / "clean"
    assert run(stage_clean(tmp_path)(folder), tmp_path).returncode == 0
    return folder / "manifest.parquet"


def stage_degrade(tmp_path: Path):
    clean = clean_set(tmp_path)

    def command(out: Path) -> list[str]:
        return [
            *(sys.executable, "-m", "grids.degrade", "--clean", str(clean), "--name", "gaussian_noise"),
            *("--seed", "0", "--manifest", str(out / "manifest.parquet"), "--images-dir", str(out / "images")),
        ]

    return command


def degraded_test_set(tmp_path: Path) -> list[str]:
    """``--test-set`` words for an 8-image clean set and its jpeg and noise copies."""
    clean = clean_set(tmp_path)
    words = ["heldout", str(clean)]
    for name in ("jpeg", "gaussian_noise"):
        folder = tmp_path / name
        assert (
            degrade_dataset(pd.read_parquet(clean), name, {}, 0, folder / "manifest.parquet", folder / "images")
            is not None
        )
        words.append(str(folder / "manifest.parquet"))
    return words


def stage_evaluate(tmp_path: Path):
    test_set = degraded_test_set(tmp_path)
    model = tmp_path / "model.pth"
    torch.manual_seed(0)
    grids_checkpoint(model, "srresnet", {"num_feat": 16, "num_block": 2}, srresnet_params(num_feat=16, num_block=2))

    def command(out: Path) -> list[str]:
        return [
            *(sys.executable, "-m", "grids.evaluate", "--model", str(model), "--test-set", *test_set),
            *("--degradations", "jpeg", "gaussian_noise", "--threads", "1", "--out", str(out / "eval.parquet")),
        ]

    return command


def stage_references(tmp_path: Path):
    manifest = degraded_test_set(tmp_path)[2]  # the jpeg copy
    features = {**DEFAULT_FEATURES, "n_patches": 32, "patch_size": 16, "pca_components": 8}

    def command(out: Path) -> list[str]:
        return [
            *(
                sys.executable,
                "-m",
                "grids.selection.signatures",
                "references",
                "--set",
                "jpeg",
                "--manifest",
                manifest,
            ),
            *("--descriptor", str(SHIPPED_DESCRIPTOR), "--features", json.dumps(features), "--seed", "0"),
            *("--threads", "1"),
            *("--out", str(out / "references.parquet")),
        ]

    return command


KILLED_STAGES = {"clean_images": stage_clean, "degrade": stage_degrade, "evaluate": stage_evaluate}
KILLED_STAGES["selection_references"] = stage_references


@pytest.mark.parametrize("name", sorted(KILLED_STAGES))
@pytest.mark.slow  # runs Snakemake or kills and reruns a stage
def test_a_stage_killed_with_kill_9_at_any_point_reruns_to_the_uninterrupted_result(tmp_path, name):
    import time

    command = KILLED_STAGES[name](tmp_path)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    start = time.monotonic()
    assert run(command(whole), tmp_path).returncode == 0
    seconds = time.monotonic() - start
    codes = [kill_9_when(command(killed), tmp_path, lambda: has_temporary(killed))]
    for fraction in KILL_FRACTIONS:
        at = time.monotonic() + fraction * seconds
        codes.append(kill_9_when(command(killed), tmp_path, lambda at=at: time.monotonic() >= at))
    assert codes[0] == -signal.SIGKILL and codes.count(-signal.SIGKILL) >= 2, codes  # really killed mid-run
    rerun = run(command(killed), tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert not has_temporary(killed)
    found, expected = outputs(killed), outputs(whole)
    assert sorted(found) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, pd.DataFrame):  # a measured time is the one column no rerun reproduces
            timeless = [c for c in value.columns if c != "seconds"]
            pd.testing.assert_frame_equal(found[key][timeless], value[timeless], obj=key)
        else:
            assert found[key] == value, key


@pytest.mark.parametrize("command", ["degrade", "restore", "import-ncnn-rrdb"])
def test_a_command_writing_a_file_creates_its_missing_folder_and_says_so(tmp_path, command):
    """The policy for output folders, one for every command: create them, documented in ``--help``."""
    helped = grids(tmp_path, command, "--help")
    assert re.search(r"a\s+missing\s+folder\s+is\s+created", helped.stdout), helped.stdout
    if command == "degrade":
        png(tmp_path / "in.png")
        done = grids(tmp_path, "degrade", "in.png", "-d", "jpeg", "-o", "new/deeper/out.png")
        assert done.returncode == 0, done.stderr
        assert io.load_png(tmp_path / "new" / "deeper" / "out.png").shape == (48, 48, 3)
