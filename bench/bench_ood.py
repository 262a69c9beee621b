"""Cost per image of the out-of-distribution statistics: what each needs computed for one input.

    .venv/bin/python bench/bench_ood.py                   # CPU, the default config's features
    .venv/bin/python bench/bench_ood.py --device cuda --images 8

The statistics of :mod:`grids.ood` share one signature pass, but each needs only part of it:

* ``paper`` and ``nearest``: the GGD at ``features.layer`` (the deepest map by default, which is
  what the group choice reads too);
* ``knn`` and ``mahalanobis``: the signature at ``selection.layers`` (GGD + energy per layer),
  plus ``features.layer`` when the group is chosen by the method's GGD as the selector does.

For each option (its layers and patch count) it times :func:`grids.selection.image_signature` on
the same images (default-config test images: one photo, three dead-leaves images, each
degraded by JPEG) after one warm-up, and prints s/image next to the selector's full pass.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from grids import io
from grids.config import SHIPPED_DESCRIPTOR, load_config
from grids.data import dead_leaves, embedded_photo_path
from grids.degradations import get_degradation
from grids.descriptor import load_descriptor
from grids.selection import image_signature


def options(features: dict, layers: list[str]) -> list[tuple[str, str, list[str], int]]:
    """``(option, method layer, extra layers, n_patches)`` rows, the selector's full pass first."""
    n, deepest = features["n_patches"], features["layer"]
    shallow = [layer for layer in layers if layer in ("conv_first", "RB1", "RB2", "RB4")]
    return [
        ("selector (all statistics)", deepest, layers, n),
        ("paper / nearest", deepest, [], n),
        ("knn / mahalanobis alone", layers[-1], layers[:-1], n),
        ("shallow signature", shallow[-1], shallow[:-1], n),
        ("shallow signature, 64 patches", shallow[-1], shallow[:-1], 64),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=4, help="images timed per option")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(["config/config.yaml"])
    features, layers = config["features"], config["selection"]["layers"]
    model = load_descriptor(str(SHIPPED_DESCRIPTOR), args.device)
    jpeg = get_degradation("jpeg", config["degradations"]["jpeg"])
    clean = [io.read_image(embedded_photo_path("chelsea"))[0]] + [
        dead_leaves(128, np.random.default_rng(i)) for i in range(3)
    ]
    images = [jpeg(image, np.random.default_rng(k))[0] for k, image in enumerate(clean)][: args.images]
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {len(images)} images")
    print(f"{'option':32s} {'layers':48s} {'patches':>7s} {'s/image':>8s} {'vs selector':>11s}")
    full = None
    for name, method, extra, n in options(features, layers):
        cfg = {**features, "layer": method, "n_patches": n}
        image_signature(images[0], cfg, model, 0, args.device, extra)  # warm-up
        times = []
        for image in images:
            start = time.perf_counter()
            image_signature(image, cfg, model, 0, args.device, extra)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        full = full or t
        shown = ", ".join(dict.fromkeys([*extra, method]))
        print(f"{name:32s} {shown:48s} {n:7d} {t:8.2f} {t / full:10.0%}")


if __name__ == "__main__":
    main()
