"""What the trainer tests share (test_train.py, test_store.py, test_bad_inputs.py): a tiny training
recipe, the two-degradation group it trains on, and the ``python -m grids.train`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# An 8-feature, 2-block SRResNet on 32 px crops: a few dozen steps take seconds on one CPU thread.
TINY_ARCH = {"arch": "srresnet", "arch_kwargs": {"num_feat": 8, "num_block": 2}}
TINY_SCHEDULE = {"batch_size": 4, "crop": 32, "lr": 1e-3, "weight_decay": 1e-4, "warmup": 5, "min_lr_ratio": 0.01}
ENTRIES = {"gaussian_noise": {"sigma": [10.0, 50.0]}, "jpeg": {"quality": [10, 40]}}
GROUP = "gaussian_noise+jpeg"


def tiny_recipe(iterations: int, **changes) -> dict:
    """The tiny recipe for ``iterations`` steps: a checkpoint every 10, no torch.compile. ``changes``
    replace keys where they stand, so the recipe's JSON keeps one key order whatever is changed."""
    recipe = {**TINY_ARCH, "iterations": iterations, **TINY_SCHEDULE, "checkpoint_every": 10, "compile": False}
    return {**recipe, **changes}


def train_command(data: list[str], recipe: dict, out: Path, log: Path, resume: Path) -> list[str]:
    """``python -m grids.train`` on GROUP's ENTRIES, seed 0, one thread; ``data`` names the training
    images: ``["--clean", manifest]`` or ``["--store", index]``."""
    return [
        sys.executable,
        "-m",
        "grids.train",
        "--group",
        GROUP,
        *data,
        "--degradations",
        json.dumps(ENTRIES),
        "--recipe",
        json.dumps(recipe),
        "--seed",
        "0",
        "--out",
        str(out),
        "--log",
        str(log),
        "--resume",
        str(resume),
        "--threads",
        "1",
    ]
