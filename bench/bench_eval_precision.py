"""Does evaluating a bf16-trained model in bf16 change its numbers? fp32 and bf16, side by side.

    .venv/bin/python bench/bench_eval_precision.py --results results            # every trained model
    .venv/bin/python bench/bench_eval_precision.py --groups jpeg salt_pepper --threads 1

For each model under ``results/models/`` (or ``--groups``), :func:`grids.evaluate.evaluate_model`
scores it on its members' degraded test images twice, ``precision="fp32"`` and ``"model"`` (bf16
autocast + channels_last where the model was trained in bf16 and this CPU has bf16 kernels), and
prints per model: the mean PSNR in each, their difference, the largest per-image difference, and
the seconds each evaluation took. Both runs use one torch thread by default, as a workflow job does
on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from grids.evaluate import evaluate_model
from grids.grouping.names import group_members
from grids.stage import test_set_manifests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results", help="a built workflow's results folder")
    parser.add_argument("--test-set", default="heldout")
    parser.add_argument("--groups", nargs="*", help="models to score (default: every one under results/models)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = Path(args.results)
    groups = args.groups or sorted(p.parent.name for p in (results / "models").glob("*/model.pth"))
    test = results / "test" / args.test_set
    head = ("model", "fp32 dB", "bf16 dB", "bf16-fp32", "max |image|", "fp32 s", "bf16 s")
    print("{:<40} {:>8} {:>8} {:>9} {:>11} {:>7} {:>7}".format(*head))
    diffs = []
    for group in groups:
        members = group_members(group)
        manifests = [str(test / "clean/manifest.parquet")]
        manifests += [str(test / f"degraded/{m}/manifest.parquet") for m in members]
        sets = test_set_manifests([[args.test_set, *manifests]])
        scored, seconds = {}, {}
        for precision in ("fp32", "model"):
            start = time.perf_counter()
            model = results / "models" / group / "model.pth"
            scored[precision] = evaluate_model(model, sets, members, "cpu", precision=precision)
            seconds[precision] = time.perf_counter() - start
        a, b = scored["fp32"].psnr.to_numpy(), scored["model"].psnr.to_numpy()
        diffs.append(b - a)
        name = group if len(group) <= 40 else group[:37] + "..."
        print(
            f"{name:<40} {a.mean():>8.3f} {b.mean():>8.3f} {b.mean() - a.mean():>+9.4f} {np.abs(b - a).max():>11.4f}"
            f" {seconds['fp32']:>7.1f} {seconds['model']:>7.1f}"
        )
    every = np.concatenate(diffs)
    print(
        f"\n{len(every)} test images: bf16 - fp32 mean {every.mean():+.4f} dB, sd {every.std():.4f}, "
        f"largest |difference| {np.abs(every).max():.4f} dB"
    )


if __name__ == "__main__":
    main()
