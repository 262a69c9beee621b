"""Does mixed training learn? Each member's gain over its degraded input, per recipe and budget.

    .venv/bin/snakemake --cores 2 results/train/store/index.parquet \\
        $(for d in gaussian_blur motion_blur rl sr ringing defocus_blur jpeg poisson_noise inpainting \\
          gaussian_noise salt_pepper; do echo results/test/heldout/degraded/$d/manifest.parquet; done)
    .venv/bin/python bench/bench_mixed.py                       # the default grid below
    .venv/bin/python bench/bench_mixed.py --groups mixall --variants base photos+balanced_l1 --steps 1600 400m

A model trained on several degradations (a group, or all of them: the mix-all baseline) is only
evidence of conflict when it restores; this benchmark measures whether it does. For each group,
recipe variant and budget, one model is trained from scratch (the whole cosine schedule ends at the
budget) and every member's heldout test images are restored. Printed per member: the input's mean
PSNR, the model's, the gain (model minus input, dB), the worst image's gain, and how many test
images the model makes worse than their input by more than 0.5 dB. Per training: the mean and the
lowest member gain, and the training seconds (each run's own wall time, ``--workers`` side by side,
one torch thread each: the workflow's layout on 2 cores).

Budgets: ``1600`` is 1600 steps whatever the group; ``400m`` is 400 steps per member (a group of
three trains 1200), so that each member sees as many samples as its single-task model.

Variants (keys changed from the config's training recipe, and the training images):
``base`` the config as it is; ``photos`` adds the 11 photos shipped in grids/assets/photos that no
test set uses (clipped highlights, skies, dark regions: what test photos contain and the default
training images lack); ``balanced_l1`` the loss balanced per member; ``balanced`` batches balanced
per member; ``canvasN`` degrades an N px crop and cuts the training crop from it; ``bf16`` /
``fp32`` the training precision (the default: bf16 on this CPU); ``emaD`` saves a moving average of
the weights with decay 0.D; and their combinations. ``default+blocksN``: today's default recipe
(``base``, since the config now holds the photos, the canvas and the balanced MSE) with N residual
blocks instead of 4.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import psnr_gains, run_jobs, workflow_parser

GROUPS = {  # name -> members; the cover: the mix-all, the paper's C4, inpainting, noise+blur, blurs
    "mixall": None,
    "c4": ["gaussian_noise", "salt_pepper"],
    "inpaint": ["gaussian_blur", "inpainting", "poisson_noise"],
    "noise_blur": ["gaussian_blur", "gaussian_noise"],
    "blurs": ["defocus_blur", "gaussian_blur", "motion_blur"],
}
VARIANTS = {  # name -> (extra training photos?, recipe keys changed)
    "base": (False, {}),
    "photos": (True, {}),
    "balanced_l1": (False, {"loss": "balanced_l1"}),
    "balanced": (False, {"balanced_batches": True}),
    "photos+balanced_l1": (True, {"loss": "balanced_l1"}),
    "photos+balanced_l1+balanced": (True, {"loss": "balanced_l1", "balanced_batches": True}),
    "canvas128": (False, {"degrade_canvas": 128}),
    "photos+canvas128": (True, {"degrade_canvas": 128}),
    "photos+canvas256": (True, {"degrade_canvas": 256}),
    "photos+canvas128+balanced_l1": (True, {"degrade_canvas": 128, "loss": "balanced_l1"}),
    "photos+canvas128+fp32": (True, {"degrade_canvas": 128, "precision": "fp32"}),
    "photos+canvas128+bf16": (True, {"degrade_canvas": 128, "precision": "bf16"}),
    "photos+canvas128+ema999": (True, {"degrade_canvas": 128, "ema": 0.999}),
    "photos+canvas128+mse": (True, {"degrade_canvas": 128, "loss": "mse"}),
    "photos+canvas128+mse+ema999": (True, {"degrade_canvas": 128, "loss": "mse", "ema": 0.999}),
    "photos+canvas128+balanced_mse": (True, {"degrade_canvas": 128, "loss": "balanced_mse"}),
    # the default recipe with a deeper body: each residual block widens the receptive field by 4 px
    # (4 blocks: 21 px, 8: 37 px, 16: 69 px), what a 10-20 px motion kernel asks for
    "default+blocks8": (False, {"arch_kwargs": {"num_feat": 32, "num_block": 8}}),
    "default+blocks16": (False, {"arch_kwargs": {"num_feat": 32, "num_block": 16}}),
}


def training_images(results: Path, photos: bool) -> list:
    """The default training images (the workflow's clean training set), plus, with ``photos``,
    the shipped photos that no test set uses and the default set does not already hold."""
    from grids import io
    from grids.data import SHIPPED_TEST_PHOTOS

    images = [io.load_png(p) for p in io.read_manifest(results / "train/clean/manifest.parquet").path]
    if photos:
        folder = Path(io.__file__).parent / "assets" / "photos"
        held_out = {file for file, _ in SHIPPED_TEST_PHOTOS.values()}
        for path in sorted(folder.glob("lomiri*.jpg")):
            if path.name not in held_out:
                images.append(io.read_image(path)[0])
    return images


def one_run(job: dict) -> list[dict]:
    import numpy as np
    import torch

    from grids import io
    from grids.checkpoint import load_model
    from grids.train import train

    torch.set_num_threads(job["threads"])
    members = job["members"]
    recipe = {**job["recipe"], "iterations": job["iterations"], "checkpoint_every": 10**9}
    group = "+".join(sorted(members))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.pth"
        start = time.perf_counter()
        images = training_images(Path(job["results"]), job["photos"])
        train(group, images, job["entries"], recipe, job["seed"], out, Path(tmp) / "r.pth", "cpu", progress_every=10**9)
        seconds = time.perf_counter() - start
        model, _ = load_model(out, "cpu")
    test = Path(job["results"]) / "test" / job["test_set"]
    clean = io.read_manifest(test / "clean/manifest.parquet").set_index("image_id").path
    rows = []
    for name in sorted(members):
        degraded = io.read_manifest(test / f"degraded/{name}/manifest.parquet").set_index("image_id").path
        inputs, outputs, gain = psnr_gains(model, clean, degraded)
        rows.append(
            {
                "group": job["group"],
                "variant": job["variant"],
                "budget": job["budget"],
                "iterations": job["iterations"],
                "seed": job["seed"],
                "member": name,
                "train_s": seconds,
                "input_db": float(np.mean(inputs)),
                "model_db": float(np.mean(outputs)),
                "gain_db": float(gain.mean()),
                "worst_image_db": float(gain.min()),
                "images_worse": int((gain < -0.5).sum()),
                "image_gains": [round(float(g), 3) for g in gain],
            }
        )
    return rows


def iterations_for(budget: str, n_members: int) -> int:
    """``"1600"`` -> 1600; ``"400m"`` -> 400 per member."""
    return int(budget[:-1]) * n_members if budget.endswith("m") else int(budget)


def jobs_for(args, config: dict, base: dict) -> list[dict]:
    names = list(config["degradations"])
    groups = [name for g in args.groups for name in (names if g == "singles" else [g])]
    jobs = []
    for group in groups:
        members = GROUPS[group] or names if group in GROUPS else group.split("+")
        for variant in args.variants:
            photos, changes = VARIANTS[variant]
            for budget in args.steps:
                for seed in args.seeds:
                    jobs.append(
                        {
                            "group": group,
                            "members": members,
                            "variant": variant,
                            "photos": photos,
                            "recipe": {**base, **changes},
                            "budget": budget,
                            "iterations": iterations_for(budget, len(members)),
                            "seed": seed,
                            "entries": {m: config["degradations"][m] for m in members},
                            "results": args.results,
                            "test_set": args.test_set,
                            "threads": max(1, (os.cpu_count() or 2) // args.workers),
                        }
                    )
    return jobs


def print_summary(rows: list[dict]) -> None:
    print("\nper training: mean member gain, lowest member gain, images made worse by > 0.5 dB (all members)")
    keys = dict.fromkeys((r["group"], r["variant"], r["budget"], r["seed"]) for r in rows)
    head = ("group", "variant", "budget", "seed", "steps", "mean", "lowest", "worse", "s")
    print("{:<11} {:<25} {:>6} {:>4} {:>5} {:>6} {:>7} {:>5} {:>6}".format(*head))
    for key in keys:
        picked = [r for r in rows if (r["group"], r["variant"], r["budget"], r["seed"]) == key]
        group, variant, budget, seed = key
        mean = sum(r["gain_db"] for r in picked) / len(picked)
        lowest = min(picked, key=lambda r: r["gain_db"])
        worse = sum(r["images_worse"] for r in picked)
        print(
            f"{group:<11} {variant:<25} {budget:>6} {seed:>4} {picked[0]['iterations']:>5} {mean:>+6.2f} "
            f"{lowest['gain_db']:>+7.2f} {worse:>5} {picked[0]['train_s']:>6.0f}  (lowest: {lowest['member']})"
        )


def row_line(row: dict) -> str:
    return (
        f"{row['group']:<11} {row['variant']:<25} {row['budget']:>6} {row['member']:<15} "
        f"{row['input_db']:>6.2f} {row['model_db']:>6.2f} {row['gain_db']:>+6.2f} "
        f"{row['worst_image_db']:>+6.2f} {row['images_worse']:>5}"
    )


def main(argv: list[str] | None = None) -> int:
    from grids.config import load_config, training_recipe

    parser = workflow_parser(__doc__)
    parser.add_argument(
        "--groups", nargs="+", default=list(GROUPS), help=f"{', '.join(GROUPS)}, singles, or members joined by +"
    )
    variants = ["base", "photos", "photos+balanced_l1"]
    parser.add_argument("--variants", nargs="+", default=variants, choices=list(VARIANTS))
    parser.add_argument("--steps", nargs="+", default=["400m"], help="budgets: 1600 (steps) or 400m (per member)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="also append every row to this JSON-lines file")
    args = parser.parse_args(argv)

    config = load_config(args.config)
    base = training_recipe(config)
    jobs = jobs_for(args, config, base)
    print(f"{len(jobs)} trainings, {args.workers} at a time; base recipe {json.dumps(base, sort_keys=True)}")
    print(
        f"{'group':<11} {'variant':<25} {'budget':>6} {'member':<15} {'input':>6} {'model':>6} {'gain':>6} "
        f"{'worst':>6} {'worse':>5}"
    )
    rows = run_jobs(one_run, jobs, args.workers, row_line, args.out, ordered=False)
    print_summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
