"""Does bf16 training cost quality? The same training in bf16 and in fp32, from the same seed.

    .venv/bin/python bench/bench_precision.py --device cuda --iterations 1500     # on a GPU
    .venv/bin/python bench/bench_precision.py --device cpu --iterations 40 --num-feat 16 --num-block 2 --crop 32

Trains one model per precision with :func:`grids.train.train` (same seed, same batches: the data
RNGs do not depend on the precision), restores the default config's held-out test images (the
clean test set degraded once by each of the group's degradations, fixed seeds) in fp32, and prints
per precision the training time and the mean PSNR, then the bf16 - fp32 difference (target:
within 0.05 dB). bf16 means autocast + channels_last, exactly what training on CUDA runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from grids.archs import size_multiple
from grids.checkpoint import load_model
from grids.config import validate_config
from grids.data import list_sources, load_source
from grids.degradations import get_degradation
from grids.evaluate import psnr, restore
from grids.grouping.names import group_members
from grids.seeds import rng_for
from grids.train import train


def load_images(images_cfg: dict, dataset: str) -> list[np.ndarray]:
    return [load_source(s, images_cfg, 0, dataset)[0] for s in list_sources(images_cfg, 0, dataset)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--group", default="gaussian_noise", help="canonical group name (members joined by +)")
    parser.add_argument("--arch", default="srresnet")
    parser.add_argument("--num-feat", type=int, default=64)
    parser.add_argument("--num-block", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--precisions", default="bf16,fp32")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = validate_config(yaml.safe_load(open("config/config.yaml")))
    training = config["training"]
    recipe = {
        **{k: training[k] for k in ("lr", "weight_decay", "min_lr_ratio", "compile")},
        "arch": args.arch,
        "arch_kwargs": {"num_feat": args.num_feat, "num_block": args.num_block},
        "iterations": args.iterations,
        "batch_size": args.batch,
        "crop": args.crop,
        "warmup": max(1, args.iterations // 10),
        "checkpoint_every": args.iterations,
    }
    members = group_members(args.group)
    entries = {m: config["degradations"][m] for m in members}
    images = load_images(training["images"], "train")
    test_name, test_cfg = next(iter(training["test_sets"].items()))
    pairs = []
    for index, clean in enumerate(load_images(test_cfg, test_name)):
        for name in members:
            degraded, _ = get_degradation(name, entries[name])(clean, rng_for(0, "bench_precision", name, index))
            pairs.append((degraded, clean))
    print(
        f"device {device} | {args.arch} {args.num_feat}/{args.num_block} | group {args.group} | "
        f"{args.iterations} it, batch {args.batch} x {args.crop}² | test: {len(pairs)} images of {test_name!r}"
    )
    print(f"{'precision':10s} {'train s':>8s} {'it/s':>7s} {'PSNR dB':>9s}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precisions.split(","):
            out = Path(tmp) / f"{precision}.pth"
            start = time.perf_counter()
            train(
                args.group,
                images,
                entries,
                recipe,
                0,
                out,
                Path(tmp) / f"resume-{precision}.pth",
                str(device),
                precision=precision,
            )
            seconds = time.perf_counter() - start
            model, state = load_model(out, device)
            multiple = size_multiple(model)
            results[precision] = float(np.mean([psnr(restore(model, d, device, multiple), c) for d, c in pairs]))
            print(
                f"{precision:10s} {seconds:8.1f} {args.iterations / seconds:7.1f} {results[precision]:9.4f}", flush=True
            )
    if "bf16" in results and "fp32" in results:
        print(f"bf16 - fp32: {results['bf16'] - results['fp32']:+.3f} dB (target: within ±0.05 dB)")


if __name__ == "__main__":
    main()
