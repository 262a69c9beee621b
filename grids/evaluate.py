"""Stage ``evaluate``: PSNR and SSIM of one model on every cached degraded test image.

Metric conventions (restoration, input and output of the same size):

* both on RGB uint8 (the model's output is clamped to [0, 1] and rounded to 8 bit first);
* PSNR over all pixels and the three channels, no border cropped: ``10 log10(255² / MSE)``, at
  most 60 dB (:data:`PSNR_CEILING`: identical images, the clean test case left unchanged);
* SSIM: Wang et al.'s settings (Gaussian window sigma 1.5, K1 0.01, K2 0.03, data range 255),
  per channel then averaged (``skimage.metrics.structural_similarity(channel_axis=2)``).

Inference pads each image (reflect) to a multiple of the architecture's size factor and, for
images larger than ``tile`` px, runs overlapping tiles (several per forward pass on CUDA) and
averages the overlaps. One test image is in memory at a time; each clean target is decoded once
for all the degradations.

A model runs in the precision it was trained in (its checkpoint's ``precision``): bf16 autocast +
``channels_last`` for a bf16 training where the device has bf16 kernels (:func:`grids.stage.uses_bf16`),
else fp32; ``--precision fp32`` forces fp32. On this project's AVX-512 CPU bf16 takes 0.47x the fp32
time and moves a model's mean PSNR by at most 0.01 dB (one image by 0.03 dB; 216 test images,
``bench/bench_eval_precision.py``), below the seed noise floor; published weights run in fp32.

Every row also carries the PSNR of the degraded input itself against the clean image and the
model's gain over it: a restoration model is judged against doing nothing first. ``--model input``
scores that identity as a model of its own (trained_on ``input``; no checkpoint).

Output (long): one row per test image, table ``eval`` of :mod:`grids.tables`.

    python -m grids.evaluate --model results/models/jpeg/model.pth --degradations jpeg sr \
        --test-set heldout results/test/heldout/clean/manifest.parquet \
            results/test/heldout/degraded/jpeg/manifest.parquet results/test/heldout/degraded/sr/manifest.parquet \
        --out results/eval/jpeg.parquet
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm import tqdm

from . import io, tables
from .archs import size_multiple
from .checkpoint import load_model
from .grouping.names import IDENTITY
from .learning import PSNR_CEILING
from .stage import TILE_OVERLAP, add_test_set_argument, check_tile, pick_device, test_set_manifests, uses_bf16


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two 8-bit images, at most :data:`PSNR_CEILING` (identical images)."""
    with np.errstate(divide="ignore"):
        return min(float(peak_signal_noise_ratio(a, b, data_range=255)), PSNR_CEILING)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        structural_similarity(
            a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


@torch.no_grad()
def _run(model, x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
    return model(x)[..., :h, :w]


@torch.no_grad()
def restore(
    model,
    image: np.ndarray,
    device,
    multiple: int = 1,
    tile: int = 512,
    overlap: int = TILE_OVERLAP,
    progress: bool = False,
    batch: int | None = None,
    bf16: bool = False,
) -> np.ndarray:
    """Restore a uint8 ``(H, W, 3)`` image; tiles of ``tile`` px (overlapping) when it is larger
    (``progress``: a progress bar over the tiles on stderr). Tiles go through the model ``batch``
    at a time (None: 4 on CUDA, where one tile leaves the GPU idle, 1 on CPU); every tile of an
    image has the same size, so they stack. ``bf16``: in bf16 autocast with the model and input
    ``channels_last``, as a bf16 training ran it (the model is converted in place)."""
    device = torch.device(device)
    if batch is None:
        batch = 4 if device.type == "cuda" else 1
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)
    if bf16:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = _tiled(model, x, multiple, tile, overlap, progress, batch)
    return (out[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def _tiled(model, x: torch.Tensor, multiple: int, tile: int, overlap: int, progress: bool, batch: int):
    """The model's float32 output for ``x [1, 3, H, W]``: whole, or from overlapping tiles averaged."""
    h, w = x.shape[-2:]
    if max(h, w) <= tile:
        return _run(model, x, multiple).float()
    out = torch.zeros_like(x)
    weight = torch.zeros_like(x[:, :1])
    stride = tile - overlap
    corners = [
        (min(top, max(h - tile, 0)), min(left, max(w - tile, 0)))
        for top in range(0, max(h - overlap, 1), stride)
        for left in range(0, max(w - overlap, 1), stride)
    ]
    with tqdm(total=len(corners), desc="tiles", unit="tile", disable=not progress) as bar:
        for start in range(0, len(corners), batch):
            chunk = corners[start : start + batch]
            windows = torch.cat([x[..., top : top + tile, left : left + tile] for top, left in chunk])
            restored = _run(model, windows, multiple).float()
            for k, (top, left) in enumerate(chunk):
                out[..., top : top + tile, left : left + tile] += restored[k : k + 1]
                weight[..., top : top + tile, left : left + tile] += 1
            bar.update(len(chunk))
    return out / weight


def runs_in_bf16(state: dict, precision: str, device: torch.device) -> bool:
    """Whether a checkpoint's model is evaluated in bf16: with ``precision`` ``model``, when it was
    trained in bf16 (its ``precision`` entry) and ``device`` has bf16 kernels; never with ``fp32``."""
    if precision not in ("model", "fp32"):
        raise ValueError(f"--precision {precision!r}: expected model or fp32")
    return precision == "model" and state.get("precision") == "bf16" and uses_bf16("auto", device)


def evaluate_model(
    model_path: str | Path,
    test_sets: dict[str, tuple[str | Path, dict[str, str | Path]]],
    degradations: list[str],
    device: str = "auto",
    tile: int = 512,
    archs: Collection[str] = (),
    precision: str = "model",
) -> pd.DataFrame:
    """PSNR/SSIM of the model at ``model_path`` on each test set's degraded copies.

    ``test_sets`` maps a name to its clean manifest and ``{degradation: degraded manifest}`` (made
    by the clean/degrade stages); ``degradations`` are scored in that order. One image is
    in memory at a time: each clean target is decoded once and scored against its restored copy
    from every degradation. Rows are ordered by test set, degradation, then image. ``archs``: the
    user architectures the config names, which the model file may name (built-ins always).
    ``precision``: ``model`` (the training's, :func:`runs_in_bf16`) or ``fp32``.
    """
    device = pick_device(device)
    if str(model_path) == IDENTITY:
        model, state, multiple = None, {"group": IDENTITY}, 1
    else:
        model, state = load_model(model_path, device, archs)
        multiple = size_multiple(model)
    check_tile(tile, multiple, f"{model_path} ({state.get('arch', 'identity')})")
    bf16 = model is not None and runs_in_bf16(state, precision, device)
    print(f"{model_path}: evaluated in {'bf16' if bf16 else 'fp32'}", file=sys.stderr)
    rows = []
    for set_name, (clean_manifest, degraded_manifests) in test_sets.items():
        clean = io.read_manifest(clean_manifest)
        missing = [name for name in degradations if name not in degraded_manifests]
        if missing:
            raise ValueError(f"test set {set_name!r}: no degraded manifest given for {', '.join(missing)}")
        degraded = {
            name: io.read_manifest(degraded_manifests[name]).set_index("image_id").path for name in degradations
        }
        for row in tqdm(clean.itertuples(), total=len(clean), desc=set_name, unit="img"):
            target = io.load_png(row.path)
            for k, name in enumerate(degradations):
                if row.image_id not in degraded[name].index:
                    continue
                image = io.load_png(degraded[name][row.image_id])
                output = image if model is None else restore(model, image, device, multiple, tile, bf16=bf16)
                score, baseline = psnr(output, target), psnr(image, target)
                rows.append(
                    [
                        (set_name, k, row.Index),
                        str(model_path),
                        state["group"],
                        set_name,
                        name,
                        row.image_id,
                        score,
                        ssim(output, target),
                        baseline,
                        score - baseline,
                    ]
                )
    rows.sort(key=lambda r: (list(test_sets).index(r[0][0]), *r[0][1:]))  # the table's order, not the loop's
    return pd.DataFrame([r[1:] for r in rows], columns=tables.columns("eval"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", required=True, help=f"a model checkpoint, or {IDENTITY!r}: the degraded input itself"
    )
    add_test_set_argument(parser)
    parser.add_argument("--degradations", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tile", type=int, default=512, help="tile side (px) for images larger than it")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--precision",
        choices=["model", "fp32"],
        default="model",
        help="model: the precision the model was trained in (bf16 where the device has bf16 kernels); fp32",
    )
    parser.add_argument(
        "--arch", nargs="*", default=[], help="the config's architectures, which the model file may name (trusted)"
    )
    args = parser.parse_args(argv)
    check_tile(args.tile)  # before any file is read; evaluate_model checks it against the model too
    if args.threads:
        torch.set_num_threads(args.threads)
    table = evaluate_model(
        args.model,
        test_set_manifests(args.test_set),
        args.degradations,
        args.device,
        args.tile,
        args.arch,
        args.precision,
    )
    tables.write(table, "eval", args.out)
    print(table.groupby("degradation")[["psnr", "ssim", "psnr_input", "gain"]].mean().round(3).to_string())
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
