"""Cost per image of the out-of-distribution statistics: what each needs computed for one input.

    .venv/bin/python bench/bench_ood.py                   # CPU, the default config's features
    .venv/bin/python bench/bench_ood.py --device cuda --images 8
    .venv/bin/python bench/bench_ood.py --results results   # + the whole `grids select` per image

Each statistic of :mod:`grids.selection.statistics` needs part of one signature pass:

* ``paper`` and ``nearest`` (and the group choices ``images`` and ``sets``): the GGD at
  ``features.layer``, the deepest and costliest map (the selector before the signature existed
  computed only this, at ``features.n_patches`` patches);
* ``knn`` and ``mahalanobis`` (and the choice ``signature``, the default): the GGDs at
  ``selection.layers``, at ``selection.n_patches`` patches;
* the selection report scores all four, so it computes both.

For each option it times :func:`grids.selection.signatures.image_signature` on the same images (one photo
and three dead-leaves images of the default test set, each degraded by JPEG) after one warm-up,
and prints the median s/image next to the first option's. With ``--results`` (a built workflow,
``final_models`` at least) it also times what ``grids select`` does per image, signature, choice,
statistic and expected gain, with the default statistic and with each other one (the selector
built once, as ``grids select`` builds it for all its images).
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
from grids.selection.selector import selector_from_config
from grids.selection.signatures import image_signature, signature_layers
from grids.selection.statistics import STATISTICS


def options(features: dict, selection: dict) -> list[tuple[str, list[str], bool, int]]:
    """``(option, layers, with the method's layer, n_patches)`` rows."""
    layers, n = selection["layers"], selection["n_patches"] or features["n_patches"]
    return [
        (f"features.layer alone, {features['n_patches']} patches", [], True, features["n_patches"]),
        ("paper / nearest", [], True, n),
        ("knn / mahalanobis", layers, False, n),
        ("every statistic (the report)", layers, True, n),
        (f"knn / mahalanobis, {features['n_patches']} patches", layers, False, features["n_patches"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=4, help="images timed per option")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--results", help="a built workflow's results folder: also time the whole selector")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(["config/config.yaml"])
    features, selection = config["features"], config["selection"]
    model = load_descriptor(str(SHIPPED_DESCRIPTOR), args.device)
    jpeg = get_degradation("jpeg", config["degradations"]["jpeg"])
    clean = [io.read_image(embedded_photo_path("chelsea"))[0]] + [
        dead_leaves(128, np.random.default_rng(i)) for i in range(3)
    ]
    images = [jpeg(image, np.random.default_rng(k))[0] for k, image in enumerate(clean)][: args.images]
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {len(images)} images")
    print(f"{'option':40s} {'layers':38s} {'patches':>7s} {'s/image':>8s} {'vs first':>9s}")
    first = None
    for name, layers, method, n in options(features, selection):
        cfg = {**features, "n_patches": n}
        image_signature(images[0], cfg, model, 0, args.device, layers, method)  # warm-up
        times = []
        for image in images:
            start = time.perf_counter()
            image_signature(image, cfg, model, 0, args.device, layers, method)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        first = first or t
        shown = ", ".join(signature_layers(cfg, layers, method))
        print(f"{name:40s} {shown:38s} {n:7d} {t:8.2f} {t / first:8.0%}")
    if args.results:
        time_selectors(config, args.results, args.device, images)


def time_selectors(config: dict, results: str, device: str, images: list[np.ndarray]) -> None:
    """Median seconds per image of ``Selector.select`` (what ``grids select`` runs per image) under
    each statistic, the configured default first."""
    default = config["selection"]["statistic"]
    print(f"\n{'grids select, statistic':40s} {'layers':38s} {'patches':>7s} {'s/image':>8s}")
    for name in [default, *(s for s in STATISTICS if s != default)]:
        chosen = {**config, "selection": {**config["selection"], "statistic": name}}
        selector = selector_from_config(chosen, results, device=device)
        selector.select(images[0])  # warm-up
        times = []
        for image in images:
            start = time.perf_counter()
            selector.select(image)
            times.append(time.perf_counter() - start)
        label = f"{name}{' (default)' if name == default else ''}"
        recipe = selector.recipe
        layers = ", ".join([*recipe.layers, *([recipe.features["layer"]] if recipe.method else [])])
        n = recipe.features["n_patches"]
        print(f"{label:40s} {layers:38s} {n:7d} {statistics.median(times):8.2f}")


if __name__ == "__main__":
    main()
