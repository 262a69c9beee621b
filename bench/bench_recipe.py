"""Which training recipe learns the most per CPU-second? Single-task gain over the input per recipe.

    .venv/bin/snakemake --cores 2 train_store test_sets      # the crop store and degraded test sets
    .venv/bin/python bench/bench_recipe.py                   # every degradation, every recipe below
    .venv/bin/python bench/bench_recipe.py --degradations gaussian_blur sr --recipes base lr2e-3 \
        --steps 150 300 --workers 2

For each degradation of the config and each recipe (the config's recipe with a few keys changed),
one single-task model is trained from scratch for each step count (a whole run with that budget:
the cosine schedule ends at it, so the points are what a config with that many iterations gives),
then the heldout test set is restored. Printed per run: training seconds (the optimisation loop
only, no process start-up), the input's mean PSNR (the identity), the model's, and the gain.
``--workers`` runs that many trainings side by side, one torch thread each (the workflow's layout
on 2 cores); seconds are each run's own wall time under that load.

Every run reads the same crop store and test set as the workflow; the trainings are those of
``grids.train`` (same data order, seeds and schedule), run in this process, so the figures carry no
import or start-up cost: bench/RESULTS.md measures that separately.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import psnr_gains, run_jobs, workflow_parser

RECIPES = {  # name -> keys changed from the config's training recipe
    "base": {},
    "lr2e-3": {"lr": 2e-3},
    "lr2e-3 8blk": {"lr": 2e-3, "arch_kwargs": {"num_feat": 32, "num_block": 8}},
    "lr2e-3 16feat 8blk": {"lr": 2e-3, "arch_kwargs": {"num_feat": 16, "num_block": 8}},
    "lr2e-3 crop64 b4": {"lr": 2e-3, "crop": 64, "batch_size": 4},
    "lr2e-3 b4": {"lr": 2e-3, "batch_size": 4},
    "lr2e-3 crop32": {"lr": 2e-3, "crop": 32},
    "lr5e-3": {"lr": 5e-3},
}


def one_run(job: dict) -> dict:
    import numpy as np
    import torch

    from grids import io
    from grids.checkpoint import load_model
    from grids.store import CropStore
    from grids.train import train

    torch.set_num_threads(job["threads"])
    recipe = {**job["recipe"], "iterations": job["steps"], "checkpoint_every": 10**9}
    name = job["degradation"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.pth"
        start = time.perf_counter()
        train(name, CropStore.open(job["store"]), {name: job["entry"]}, recipe, 0, out, Path(tmp) / "r.pth", "cpu")
        seconds = time.perf_counter() - start
        model, _ = load_model(out, "cpu")
    clean = io.read_manifest(job["clean"]).set_index("image_id").path
    degraded = io.read_manifest(job["degraded"]).set_index("image_id").path
    inputs, outputs, gain = psnr_gains(model, clean, degraded)
    return {
        "degradation": name,
        "recipe": job["name"],
        "steps": job["steps"],
        "train_s": seconds,
        "input_db": float(np.mean(inputs)),
        "model_db": float(np.mean(outputs)),
        "gain_db": float(gain.mean()),
        "gain_min_db": float(gain.min()),
    }


def row_line(row: dict) -> str:
    return (
        f"{row['degradation']:<15} {row['recipe']:<20} {row['steps']:>5} {row['train_s']:>8.1f} "
        f"{row['input_db']:>8.2f} {row['model_db']:>8.2f} {row['gain_db']:>+8.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    from grids.config import load_config, training_recipe

    parser = workflow_parser(__doc__)
    parser.add_argument("--degradations", nargs="+", help="default: every configured degradation")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--steps", nargs="+", type=int, default=[150, 300, 600])
    parser.add_argument("--steps-other", nargs="+", type=int, default=[300], help="budgets of the non-lr recipes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="also write every row to this JSON-lines file")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    base = training_recipe(config)
    names = args.degradations or list(config["degradations"])
    results = Path(args.results)
    jobs = []
    for recipe_name in args.recipes:
        budgets = args.steps if recipe_name in ("base", "lr2e-3") else args.steps_other
        if recipe_name == "base":
            budgets = [min(args.steps)]
        for steps in budgets:
            for name in names:
                jobs.append(
                    {
                        "name": recipe_name,
                        "recipe": {**base, **RECIPES[recipe_name]},
                        "steps": steps,
                        "degradation": name,
                        "entry": config["degradations"][name],
                        "store": str(results / "train/store/index.parquet"),
                        "clean": str(results / f"test/{args.test_set}/clean/manifest.parquet"),
                        "degraded": str(results / f"test/{args.test_set}/degraded/{name}/manifest.parquet"),
                        "threads": max(1, (os.cpu_count() or 2) // args.workers),
                    }
                )
    print(f"{len(jobs)} trainings, {args.workers} at a time; base recipe {json.dumps(base, sort_keys=True)}")
    print(
        f"{'degradation':<15} {'recipe':<20} {'steps':>5} {'train s':>8} {'input dB':>8} {'model dB':>8} {'gain dB':>8}"
    )
    rows = run_jobs(one_run, jobs, args.workers, row_line, args.out, ordered=True)
    print("\ndegradations gaining >= 0.5 dB, per recipe and steps (mean train s per run):")
    keys = dict.fromkeys((r["recipe"], r["steps"]) for r in rows)
    for recipe_name, steps in keys:
        picked = [r for r in rows if (r["recipe"], r["steps"]) == (recipe_name, steps)]
        good = sum(r["gain_db"] >= 0.5 for r in picked)
        seconds = sum(r["train_s"] for r in picked) / len(picked)
        print(f"  {recipe_name:<20} {steps:>5} steps: {good:>2} of {len(picked)}  ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
