"""Reports: the upper-bound table (single-task models and the mix-all baseline).

    python -m grids.report upper-bounds --eval results/eval/*.parquet --out results/upper_bounds

``evaluation.parquet`` is every evaluation row concatenated (``model, trained_on, test_set,
degradation, image, psnr, ssim``); ``summary.md`` gives, per test set and degradation, the mean
PSNR/SSIM of the single-task model trained on that degradation, of the mix-all baseline, and the
baseline's drop in dB (the paper's motivation: mix-training costs up to several dB).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import io
from .groups import group_members


def upper_bound_summary(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Per (test_set, degradation): single-task and mix-all mean PSNR/SSIM and the drop."""
    means = evaluation.groupby(["trained_on", "test_set", "degradation"], as_index=False)[["psnr", "ssim"]].mean()
    single = means[means.trained_on == means.degradation].drop(columns="trained_on")
    largest = max(means.trained_on, key=lambda g: len(group_members(g)))
    mix = means[means.trained_on == largest].drop(columns="trained_on")
    table = single.merge(mix, on=["test_set", "degradation"], suffixes=("_single", "_mixall"), how="left")
    table["drop_db"] = table.psnr_single - table.psnr_mixall
    return table


def upper_bounds(eval_files: list[str], out_dir: str | Path) -> pd.DataFrame:
    out_dir = Path(out_dir)
    evaluation = pd.concat([pd.read_parquet(f) for f in eval_files], ignore_index=True)
    io.write_parquet(evaluation, out_dir / "evaluation.parquet")
    table = upper_bound_summary(evaluation)
    markdown = "# Upper bounds: single-task models vs the mix-all baseline\n\n"
    markdown += "Mean PSNR (dB) / SSIM on each test set; drop = single-task PSNR - mix-all PSNR.\n\n"
    markdown += table.round(3).to_markdown(index=False) + "\n"
    with io.atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(markdown)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.report", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("upper-bounds")
    p.add_argument("--eval", nargs="+", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    print(upper_bounds(args.eval, args.out).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    from .cli import run_stage

    sys.exit(run_stage(main))
