"""Trainings on a small CPU machine: one job at a time with every core, or two side by side?

    .venv/bin/python bench/bench_threads.py                # after `upper_bounds` (needs the crop store)
    .venv/bin/python bench/bench_threads.py --jobs 4 --iterations 150

The workflow gives its many-job rules (train, evaluate, GGD fits) half the local cores each
(workflow/rules/common.smk: side_by_side_threads), so Snakemake runs two at once. This times the
same `python -m grids.train` jobs (the default config's recipe, single-task groups) both ways, as
real processes, and prints the wall time of the whole batch and per job:

* ``one at a time``: each job with ``--threads CORES``, run in turn (the previous layout);
* ``side by side``: each job with ``--threads CORES // 2``, two at once (the current one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grids.config import load_config, training_recipe

ROOT = Path(__file__).resolve().parents[1]


def command(group: str, entry: dict, recipe: dict, store: str, threads: int, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "grids.train",
        "--group",
        group,
        "--store",
        store,
        "--degradations",
        json.dumps({group: entry}),
        "--recipe",
        json.dumps(recipe),
        "--seed",
        "0",
        "--threads",
        str(threads),
        "--out",
        str(out / group / "model.pth"),
        "--log",
        str(out / group / "train_log.parquet"),
        "--resume",
        str(out / group / "resume.pth"),
    ]


def run_batch(jobs: list[list[str]], at_once: int) -> float:
    """Wall seconds to run ``jobs``, ``at_once`` processes at a time."""
    start, running, queue = time.perf_counter(), [], list(jobs)
    while queue or running:
        while queue and len(running) < at_once:
            running.append(subprocess.Popen(queue.pop(0), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        done = running.pop(0)
        _, err = done.communicate()
        if done.returncode:
            raise SystemExit(f"training failed:\n{err.decode()[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="results/train/store/index.parquet")
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--jobs", type=int, default=4, help="trainings per layout (even)")
    parser.add_argument("--iterations", type=int, help="override the recipe's iterations")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if not Path(args.store).is_file():
        raise SystemExit(f"{args.store} not found: build it with `snakemake --cores all upper_bounds`")
    config = load_config(args.config, ROOT)
    recipe = training_recipe(config)
    if args.iterations:
        recipe["iterations"] = args.iterations
    groups = list(config["degradations"])[: args.jobs]
    print(
        f"{len(groups)} trainings ({', '.join(groups)}), {recipe['iterations']} iterations, "
        f"{args.cores} cores, torch threads per job as given"
    )
    print(f"{'layout':16s} {'threads/job':>11s} {'at once':>7s} {'wall s':>8s} {'s/job':>7s} {'speed-up':>8s}")
    base = None
    for name, threads, at_once in (
        ("one at a time", args.cores, 1),
        ("side by side", max(1, args.cores // 2), 2),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [
                command(g, config["degradations"][g], recipe, args.store, threads, Path(tmp) / name) for g in groups
            ]
            wall = run_batch(jobs, at_once)
        base = base or wall
        print(f"{name:16s} {threads:11d} {at_once:7d} {wall:8.1f} {wall / len(groups):7.1f} {base / wall:7.2f}x")


if __name__ == "__main__":
    main()
