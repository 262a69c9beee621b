"""Features + PCA + GGD fit per image set: this package's path vs a straightforward reference.

    .venv/bin/python bench/bench_similarity.py [--device cpu|cuda] [--srga-sets jpeg] [--sets all]

Both paths share the descriptor forward pass (float32, batches of 64) and differ after it:

* ours: centre in place, Gram matrix X Xᵀ (float32, on the device), float64 eigendecomposition
  of the N x N Gram, scores, GGD moments on the device (:func:`grids.features.pca_scores`,
  :func:`grids.ggd.fit_ggd_torch`);
* reference: X copied to float64 numpy, centred, full thin SVD (what sklearn's
  ``PCA(svd_solver="full")`` does), scores ``U S`` with the same sign convention, numpy GGD fit
  (:func:`grids.ggd.fit_ggd`).

Scales: ``default`` (config/config.yaml: 256 patches of 24², PCA 128) for every set; SRGA's
(800 patches of 32², deepest layer, PCA 300) and ``srga400`` (the same with 400 patches) for the
sets named by ``--big-sets``. The reference at full SRGA scale holds X in float64 (6.7 GB), numpy's
working copy and Vᵀ (6.7 GB each) next to the float32 X: over 24 GB, so it runs only where
``--reference-scales`` names it (default: default and srga400). Prints one table; the columns are seconds
per set, the speed-up of PCA+fit and of the whole path, the peak extra memory of each PCA+fit
(tracemalloc for numpy, CUDA peak for torch on GPU), and |Δalpha| between the two paths.
Run on a warm process: the first set also pays the descriptor load.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np
import torch

from grids import io
from grids.config import SHIPPED_DESCRIPTOR
from grids.degradations import NAMES
from grids.descriptor import load_descriptor
from grids.features import crop_patches, descriptor_features, flip_signs, patch_boxes, pca_scores
from grids.ggd import fit_ggd, fit_ggd_torch

SCALES = {"default": (256, 24, 128), "srga400": (400, 32, 300), "srga": (800, 32, 300)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load_set(name: str) -> dict[str, np.ndarray]:
    path = "results/clean/manifest.parquet" if name == "clean" else f"results/degraded/{name}/manifest.parquet"
    manifest = io.read_manifest(path)
    return {row.image_id: io.load_png(row.path) for row in manifest.itertuples()}


def ours(x: torch.Tensor, k: int, device: torch.device) -> tuple[float, float, float]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    fit = fit_ggd_torch(pca_scores(x, k))
    sync(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else float("nan")
    return seconds, fit.alpha, peak


def reference(x: torch.Tensor, k: int) -> tuple[float, float, float]:
    tracemalloc.start()
    start = time.perf_counter()
    data = x.cpu().numpy().astype(np.float64)
    data -= data.mean(axis=0)
    u, s, _ = np.linalg.svd(data, full_matrices=False)
    fit = fit_ggd(flip_signs(u[:, :k]) * s[:k])  # the same sign convention as ours
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, fit.alpha, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--descriptor", default=str(SHIPPED_DESCRIPTOR))
    parser.add_argument("--sets", default="all", help="comma-separated sets at the default scale, or 'all'")
    parser.add_argument(
        "--big-sets", default="jpeg", help="comma-separated sets at srga400 and SRGA scale ('' for none)"
    )
    parser.add_argument("--reference-scales", default="default,srga400", help="scales that also run the reference")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_descriptor(args.descriptor, device)
    names = ["clean", *NAMES] if args.sets == "all" else args.sets.split(",")
    big = [n for n in args.big_sets.split(",") if n]
    runs = [("default", n) for n in names] + [(scale, n) for scale in ("srga400", "srga") for n in big]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"device: {device} ({where})")
    header = (
        f"{'set':15s} {'scale':8s} {'forward s':>9s} {'ours s':>8s} {'ref s':>8s} {'PCA+fit x':>9s} "
        f"{'total x':>8s} {'ours MB':>8s} {'ref MB':>8s} {'|dalpha|':>9s}"
    )
    print(header)
    print("-" * len(header))
    for scale, name in runs:
        n, size, k = SCALES[scale]
        images = load_set(name)
        boxes = patch_boxes({i: im.shape[:2] for i, im in images.items()}, n, size, seed=0)
        patches = crop_patches(images, boxes, size)
        start = time.perf_counter()
        x = descriptor_features(model, patches, device=device)
        sync(device)
        forward = time.perf_counter() - start
        ref_s = ref_alpha = ref_mb = float("nan")
        if scale in args.reference_scales.split(","):
            ref_s, ref_alpha, ref_mb = reference(x, k)
        our_s, our_alpha, our_mb = ours(x, k, device)
        del x
        gc.collect()
        print(
            f"{name:15s} {scale:8s} {forward:9.2f} {our_s:8.3f} {ref_s:8.2f} {ref_s / our_s:9.1f} "
            f"{(forward + ref_s) / (forward + our_s):8.2f} {our_mb:8.0f} {ref_mb:8.0f} "
            f"{abs(our_alpha - ref_alpha):9.2e}"
        )


if __name__ == "__main__":
    main()
