"""What every stage's command line shares: user errors as one line, and the compute device.

A stage module ends with::

    if __name__ == "__main__":
        sys.exit(run_stage(main))

so that a user error (a bad config, image, path or file) is one ``error:`` line on stderr with
exit status 2 instead of a traceback. The ``grids`` command (:mod:`grids.cli`) uses the same, and
stages never import the command module.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from .config import ConfigError
from .io import BadImageError

# What a user can cause: one ``error:`` line, not a traceback. OSError covers every file-system
# refusal (missing, permission, full disk, read-only), and its message names the path.
USER_ERRORS = (ConfigError, BadImageError, OSError, KeyError, ValueError)


def run_stage(main: Callable[[], int]) -> int:
    """Run a stage's ``main``; a user error becomes one line on stderr and exit status 2.

    ``GRIDS_DEBUG=1`` in the environment shows the full traceback instead.
    """
    try:
        return main()
    except USER_ERRORS as err:
        if os.environ.get("GRIDS_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, FileNotFoundError) and " " not in str(err):  # pyarrow's: the bare path
            message = f"{err}: no such file"
        print(f"error: {message}", file=sys.stderr)
        return 2


DEVICES = "auto, cpu, cuda, cuda:N or mps"


def uses_bf16(precision: str, device) -> bool:
    """Whether a model runs in bf16 autocast + channels_last on ``device`` (a torch.device).
    ``auto``: on CUDA, and on a CPU whose oneDNN has bf16 kernels (AVX-512: the default model's
    training step takes half the fp32 time, a whole training with its data about 0.65x,
    bench/RESULTS.md); elsewhere fp32."""
    import torch

    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def pick_device(device: str = "auto"):
    """``auto``: the first CUDA device when there is one, else the CPU; otherwise ``device`` as
    given, once checked: a name outside :data:`DEVICES`, or a device this machine lacks, is a
    ValueError naming ``--device`` (else loading a model on it fails naming the model's file)."""
    import torch

    if isinstance(device, torch.device):
        return device
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(device)):
        raise ValueError(f"--device {device!r}: expected one of {DEVICES}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "no CUDA device found" if torch.version.cuda else f"torch {torch.__version__} is built without CUDA"
            raise ValueError(f"--device {device}: CUDA is not available here ({why}); use --device cpu or auto")
        count, index = torch.cuda.device_count(), int(device.partition(":")[2] or 0)
        if index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: Apple's MPS is not available here; use --device cpu or auto")
    return torch.device(device)


# Tiles of a restoration (``grids restore``, ``python -m grids.evaluate``) overlap by this many
# pixels and are blended, so a tile must be larger: else it adds no new pixels and the output is garbage.
TILE_OVERLAP = 32
MIN_TILE = 2 * TILE_OVERLAP


def min_tile(multiple: int) -> int:
    """The smallest tile for a model whose input sides are padded to ``multiple``: twice the
    overlap (each tile then adds new pixels), rounded up to the multiple."""
    return -(-max(MIN_TILE, multiple) // multiple) * multiple


def check_tile(tile: int, multiple: int = 1, model: str = "") -> None:
    """ValueError naming ``--tile`` when ``tile`` is below :func:`min_tile` for ``model``."""
    if tile < min_tile(multiple):
        pads = f" for {model} (it pads its input to multiples of {multiple})" if model else ""
        raise ValueError(
            f"--tile {tile}: must be at least {min_tile(multiple)}{pads}; tiles overlap by {TILE_OVERLAP} px"
        )


def finite_float(text: str) -> float:
    """An argparse ``type``: a float that is a finite number (no nan, inf)."""
    import argparse
    import math

    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text}: must be a finite number")
    return value


def add_set_arguments(p) -> None:
    """The arguments of a stage that fits GGDs on one image set (``grids.similarity ggd``,
    ``grids.selection.signatures references``)."""
    p.add_argument("--set", required=True, help="set name (a degradation, or 'clean')")
    p.add_argument("--manifest", required=True, help="the set's manifest.parquet")
    p.add_argument("--descriptor", help="descriptor weights (.pth); not needed for kind=sift")
    p.add_argument("--features", required=True, help="the config's `features` section, as JSON")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--out", required=True)


def add_per_test_set_argument(parser, flag: str, metavar: str, help_text: str) -> None:
    """``flag NAME FILE...``, repeated per test set: the files a rule passes for each set."""
    parser.add_argument(flag, nargs="+", action="append", required=True, metavar=("NAME", metavar), help=help_text)


def add_test_set_argument(parser) -> None:
    """``--test-set NAME CLEAN DEGRADED...``, repeated per test set: the files a rule passes."""
    help_text = "a test set: its name, its clean manifest, then the manifest of each degraded copy (repeat per set)"
    add_per_test_set_argument(parser, "--test-set", "MANIFEST", help_text)


def test_set_manifests(values: list[list[str]]) -> dict[str, tuple[str, dict[str, str]]]:
    """``--test-set`` values -> {name: (clean manifest, {degradation: degraded manifest})}.

    A degraded manifest says which degradation it holds (its ``degradation`` column), so the
    files can come in any order; one without rows holds nothing to score and is left out.
    """
    import pandas as pd

    sets = {}
    for words in values:
        if len(words) < 2:
            raise ValueError(f"--test-set {' '.join(words)}: expected NAME CLEAN_MANIFEST [DEGRADED_MANIFEST ...]")
        name, clean, *degraded = words
        by_degradation = {}
        for path in degraded:
            names = pd.read_parquet(path, columns=["degradation"]).degradation.unique()
            if len(names) > 1:
                raise ValueError(f"{path}: holds several degradations ({', '.join(names)}), expected one")
            if len(names):
                by_degradation[str(names[0])] = path
        sets[name] = (clean, by_degradation)
    return sets
