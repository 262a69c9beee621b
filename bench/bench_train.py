"""Training throughput: end-to-end (online degradation + data) next to the bare model step.

    .venv/bin/python bench/bench_train.py                       # CPU, the default config's tiny SRResNet
    .venv/bin/python bench/bench_train.py --device cuda --batch 8 --crop 256 --archs srresnet,restormer --full

For each architecture and precision it times, in one process:

* bare: forward + L1 + backward + AdamW step on random tensors already on the device (no data);
* end-to-end: the same step fed the way the trainer feeds it, by :class:`grids.train.Prefetcher`
  over :class:`grids.train.OnlineDegrader` (random crops of the default training images, one
  degradation per sample drawn from all 11, batched on the device), with the trainer's default
  prefetch (2 batches ahead on CUDA, none on CPU) and, side by side, with none;

and prints it/s of each, the ratio end-to-end / bare (target on a GPU: >= 90 %) and the peak GPU
memory. On CUDA the precisions are bf16 autocast + channels_last (+ torch.compile with
``--compile``) and fp32 eager; each runs in a fresh model whose memory is released afterwards.
``--full`` uses the paper's backbone sizes instead of the default config's tiny SRResNet.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from grids.archs import ARCHS
from grids.config import validate_config
from grids.data import list_sources, load_source
from grids.degradations import get_degradation
from grids.train import OnlineDegrader, Prefetcher, optimisation_step

FULL_SIZES = {"srresnet": {"num_feat": 64, "num_block": 16}, "restormer": {}, "rrdbnet": {}}


def timed_steps(step, n: int, device: torch.device) -> float:
    for _ in range(3):
        step()  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", default="srresnet")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="paper-size backbones")
    parser.add_argument("--compile", action="store_true", help="torch.compile the bf16 CUDA model")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = validate_config(yaml.safe_load(open("config/config.yaml")))
    images_cfg = config["training"]["images"]
    images = [load_source(s, images_cfg, 0, "train")[0] for s in list_sources(images_cfg, 0, "train")]
    degradations = {n: get_degradation(n, e) for n, e in config["degradations"].items()}
    precisions = ["fp32"] if device.type == "cpu" else ["bf16", "fp32"]
    print(
        f"device {device} | batch {args.batch} x {args.crop}² | {len(degradations)} degradations online | "
        f"{torch.get_num_threads()} CPU threads"
    )
    prefetch = 2 if device.type == "cuda" else 0
    header = (
        f"{'arch':10s} {'precision':16s} {'params M':>8s} {'bare it/s':>10s} {'no prefetch':>12s} "
        f"{'e2e it/s':>9s} {'ratio':>6s} {'peak GB':>8s}"
    )
    print(header)
    print("-" * len(header))
    for arch in args.archs.split(","):
        kwargs = (
            FULL_SIZES[arch]
            if args.full
            else (config["training"]["arch_kwargs"] if arch == config["training"]["arch"] else {})
        )
        for precision in precisions:
            compiled = precision == "bf16" and args.compile
            label = precision + ("+compile" if compiled else "")
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                row = bench_one(
                    arch, kwargs, precision == "bf16", compiled, images, degradations, args, device, prefetch
                )
            except Exception as err:  # e.g. out of memory, no compiler for torch.compile: report it, bench the rest
                print(
                    f"{arch:10s} {label:16s} failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}", flush=True
                )
                row = None
            finally:  # nothing of this run may crowd the next one's memory
                if device.type == "cuda":
                    torch._dynamo.reset()
                    torch.cuda.empty_cache()
            if row is None:
                continue
            params, bare, inline, end_to_end = row
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            print(
                f"{arch:10s} {label:16s} {params:8.2f} {bare:10.2f} {inline:12.2f} {end_to_end:9.2f} "
                f"{end_to_end / bare:6.2f} {peak:8.1f}",
                flush=True,
            )


def bench_one(arch, kwargs, bf16, compiled, images, degradations, args, device, prefetch) -> tuple[float, ...]:
    """``(params M, bare it/s, end-to-end it/s without prefetch, with the trainer's prefetch)``."""
    torch.manual_seed(0)
    model = ARCHS[arch](**kwargs).to(device)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compiled else model
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = OnlineDegrader(images, degradations, args.crop, device)
    fixed = torch.rand(args.batch, 3, args.crop, args.crop, device=device)

    def step(x, y):  # the trainer's own step, so the bench times what training runs
        optimisation_step(step_model, optimiser, x, y, torch.ones(len(x), device=x.device), bf16)

    def fed(depth: int) -> float:
        loader = Prefetcher(data, args.batch, np.random.default_rng(0), torch.Generator(device).manual_seed(0), depth)
        try:
            return timed_steps(lambda: step(*loader.next()), args.steps, device)
        finally:
            loader.close()

    bare = timed_steps(lambda: step(fixed, fixed), args.steps, device)
    inline = fed(0)
    end_to_end = fed(prefetch) if prefetch else inline
    return sum(p.numel() for p in model.parameters()) / 1e6, bare, inline, end_to_end


if __name__ == "__main__":
    main()
