"""Degraded images per second, per degradation: reference (per image) vs batched torch, side by side.

    .venv/bin/python bench/bench_degradations.py [--size 512] [--batch 8] [--crop 256] [--device cpu] \
        [--canvas 128 --window 32]

* reference: the per-image numpy/OpenCV form on ``size`` x ``size`` images (what the ``degrade``
  stage runs), including parameter drawing; images/s on one thread.
* batched: the torch form on a ``(batch, 3, crop, crop)`` tensor on ``device`` (what online
  training will run), parameters drawn per image; crops/s.
* canvas, cut / window: what a training batch costs with the default recipe (``degrade_canvas``
  128, ``crop`` 32): the batched form on ``(batch, 3, canvas, canvas)`` and the crop cut from its
  output afterwards, next to the same crops computed through a ``Window`` (the trainer's way);
  crops/s.
* stage: the whole ``degrade`` stage (PNG read + degrade + PNG write + sha256) on the embedded
  default clean set, images/s, when ``results/clean/manifest.parquet`` exists.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from grids.data import EMBEDDED_PHOTOS, embedded_photo_path
from grids.degradations import NAMES, get_degradation
from grids.degradations.batched import Window, from_uint8_images
from grids.degrade import degrade_dataset
from grids.io import read_image, read_manifest


def photos(size: int) -> list[np.ndarray]:
    out = []
    for name in list(EMBEDDED_PHOTOS)[:5]:
        image, _ = read_image(embedded_photo_path(name))
        out.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
    return out


def rate(fn, count: int, min_seconds: float = 1.0) -> float:
    """Items per second of ``fn`` (which processes ``count`` items), repeated for >= min_seconds."""
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds or done == 0:
        fn()
        done += count
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--canvas", type=int, default=128, help="training canvas side (degrade_canvas)")
    parser.add_argument("--window", type=int, default=32, help="training crop side cut from the canvas")
    parser.add_argument("--clean", default="results/clean/manifest.parquet")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    images = photos(args.size)
    crops = from_uint8_images([img[: args.crop, : args.crop] for img in images] * 2, args.device)[: args.batch]
    clean = read_manifest(args.clean) if Path(args.clean).exists() else None
    canvases = from_uint8_images([img[: args.canvas, : args.canvas] for img in images] * 2, args.device)
    canvases = canvases[: args.batch]
    generator = torch.Generator(args.device).manual_seed(0)
    window = Window(np.random.default_rng(0).integers(args.canvas - args.window + 1, size=(args.batch, 2)), args.window)

    header = (
        f"{'degradation':15s} {'reference img/s':>16s} {'batched crops/s':>16s} {'canvas, cut /s':>15s}"
        f" {'window /s':>10s} {'speed-up':>9s} {'stage img/s':>12s}"
    )
    print(
        f"reference: {args.size}x{args.size} images | batched: {args.batch}x3x{args.crop}x{args.crop} on "
        f"{args.device} | canvas {args.canvas} -> window {args.window} | stage: "
        f"{len(clean) if clean is not None else 0} default clean images | 1 thread"
    )
    print(header)
    print("-" * len(header))
    for name in NAMES:
        deg = get_degradation(name)
        rng = np.random.default_rng(0)

        # Closures over this iteration's deg and rng, timed within the iteration.
        def reference():
            for img in images:
                deg(img, rng)  # noqa: B023

        def batched():
            params = [deg.sample(rng, (args.crop, args.crop)) for _ in range(args.batch)]  # noqa: B023
            deg.apply_batch(crops, params, generator)  # noqa: B023

        def canvas_then_cut():
            params = [deg.sample(rng, (args.canvas, args.canvas)) for _ in range(args.batch)]  # noqa: B023
            window.cut(deg.apply_batch(canvases, params, generator))  # noqa: B023

        def windowed():
            params = [deg.sample(rng, (args.canvas, args.canvas)) for _ in range(args.batch)]  # noqa: B023
            deg.apply_batch(canvases, params, generator, window)  # noqa: B023

        ref_rate = rate(reference, len(images))
        batch_rate = rate(batched, args.batch)
        cut_rate, window_rate = rate(canvas_then_cut, args.batch), rate(windowed, args.batch)
        stage = ""
        if clean is not None:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                degrade_dataset(clean, name, {}, 0, Path(tmp) / "manifest.parquet", Path(tmp) / "images")
                stage = f"{len(clean) / (time.perf_counter() - start):12.1f}"
        print(
            f"{name:15s} {ref_rate:16.1f} {batch_rate:16.1f} {cut_rate:15.1f} {window_rate:10.1f}"
            f" {window_rate / cut_rate:8.1f}x {stage:>12s}"
        )


if __name__ == "__main__":
    main()
