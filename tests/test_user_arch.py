"""User-defined architectures (``training.arch: file.py:Class``): checked with the config, trained
and evaluated by the real workflow, read back by the model loader."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from grids.archs import ARCHS, resolve_arch, size_multiple
from grids.checkpoint import build_model, load_model
from grids.config import ConfigError, validate_config

pytestmark = pytest.mark.slow  # trains and evaluates a user architecture through the workflow: minutes

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "nafnet.py"
NAF_KWARGS = {"width": 8, "enc_blocks": [1, 1], "middle_blocks": 1, "dec_blocks": [1, 1]}


def minimal(arch: str, kwargs=None) -> dict:
    return {
        "seed": 0,
        "images": {"photos": ["chelsea"]},
        "degradations": {"jpeg": {}},
        "training": {"arch": arch, "arch_kwargs": kwargs},
    }


def test_size_multiple_of_the_built_ins():
    """What evaluation pads to: the table it replaced (srresnet 1, restormer 8, rrdbnet 4)."""
    assert {name: size_multiple(cls()) for name, cls in ARCHS.items()} == {"srresnet": 1, "restormer": 8, "rrdbnet": 4}


def test_the_example_keeps_the_contract():
    cls = resolve_arch(f"{EXAMPLE}:NAFNet")
    model = cls(**NAF_KWARGS).eval()
    assert size_multiple(model) == 4
    x = torch.rand(2, 3, 32, 36)
    with torch.no_grad():
        out = model(x)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()  # same-size restoration
    assert isinstance(build_model(f"{EXAMPLE}:NAFNet", NAF_KWARGS), torch.nn.Module)


@pytest.mark.parametrize(
    ("arch", "kwargs", "expected"),
    [
        (
            "missing.py:Net",
            None,
            r"config key training.arch: architecture 'missing.py:Net': file .*missing.py not found",
        ),
        ("nafnet.py:simple_gate", None, r"config key training.arch: .* is a function, not a torch.nn.Module subclass"),
        ("nafnet.py:Nope", None, r"config key training.arch: .* has no attribute 'Nope'"),
        ("os:PathLike", None, r"config key training.arch: .* part of Python's standard library"),
        ("nafnet.py:NAFNet", {"depth": 3}, r"config key training.arch_kwargs: nafnet.py:NAFNet does not accept"),
        ("swinir", None, r"config key training.arch: 'swinir' is not one of .* a class of your own"),
    ],
)
def test_a_bad_architecture_is_a_config_error_naming_the_key(tmp_path, arch, kwargs, expected):
    shutil.copy(EXAMPLE, tmp_path / "nafnet.py")
    with pytest.raises(ConfigError, match=expected):
        validate_config(minimal(arch, kwargs), base_dir=tmp_path)


def test_a_good_one_validates(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "nafnet.py")
    config = validate_config(minimal("nafnet.py:NAFNet", NAF_KWARGS), base_dir=tmp_path)
    assert config["training"]["arch"] == "nafnet.py:NAFNet" and config["training"]["arch_kwargs"] == NAF_KWARGS


def test_the_workflow_trains_and_evaluates_a_user_architecture(tmp_path, monkeypatch):
    config = {
        "seed": 3,
        "images": {"photos": ["chelsea"], "dead_leaves": {"count": 1, "size": 64}, "min_side": 32},
        "features": {"n_patches": 16, "patch_size": 16, "pca_components": 8},
        "training": {
            "images": {"photos": ["coffee"], "dead_leaves": {"count": 2, "size": 64}, "min_side": 32},
            "test_sets": {"heldout": {"dead_leaves": {"count": 1, "size": 44}, "min_side": 32}},
            "arch": "nafnet.py:NAFNet",
            "arch_kwargs": NAF_KWARGS,
            "iterations": 6,
            "batch_size": 2,
            "crop": 32,
            "warmup": 1,
            "checkpoint_every": 3,
        },
        "degradations": {"jpeg": {"quality": [10, 40]}, "gaussian_noise": {"sigma": [10.0, 50.0]}},
    }
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(EXAMPLE, tmp_path / "nafnet.py")
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path)]
    result = subprocess.run([*command, "--cores", "2", "upper_bounds"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    table = pd.read_parquet(tmp_path / "results" / "upper_bounds" / "evaluation.parquet")
    assert set(table.trained_on) == {"jpeg", "gaussian_noise", "gaussian_noise+jpeg"}
    assert table.psnr.between(5, 100).all()  # 44 px test images: padded to 48 for size_multiple 4, cropped back
    monkeypatch.chdir(tmp_path)  # the checkpoint names nafnet.py relative to the working directory, like the config
    model, state = load_model(tmp_path / "results" / "models" / "jpeg" / "model.pth", archs=["nafnet.py:NAFNet"])
    assert state["arch"] == "nafnet.py:NAFNet" and type(model).__name__ == "NAFNet"
    with pytest.raises(ValueError, match=r"model\.pth: names the architecture 'nafnet\.py:NAFNet', which is neither"):
        load_model(tmp_path / "results" / "models" / "jpeg" / "model.pth")  # the config's trust, not the file's
    # The architecture's file is an input of its trainings: editing it retrains.
    with (tmp_path / "nafnet.py").open("a") as f:
        f.write("\n# edited\n")
    dry = subprocess.run([*command, "-n", "upper_bounds"], capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and dry.stdout.count("rule train:") == 3, dry.stdout
