"""Every trained model's gain over its degraded input, per member, from a run's evaluation tables.

    .venv/bin/python bench/gains_table.py results          # a workflow's results folder

One line per model (single-task, mix-all, every verified group): per member, the mean gain over its
test images (model PSNR minus the input's, dB) and, in brackets, how many test images the model
makes worse than their input by more than 0.5 dB; then the partition. The standard a model is held
to before anything else: a member below its input is a failed training, not evidence of conflict.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

HARM_DB = 0.5  # an image made worse than its input by more than this counts as harmed


def member_gains(results: Path) -> pd.DataFrame:
    """One row per (model, member): mean gain, lowest image gain, images harmed, test images."""
    frames = [pd.read_parquet(p) for p in sorted((results / "eval").glob("*.parquet")) if p.stem != "input"]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[[d in group.split("+") for d, group in zip(rows.degradation, rows.trained_on)]]
    return (
        rows.groupby(["trained_on", "degradation"])
        .agg(
            gain=("gain", "mean"),
            lowest=("gain", "min"),
            harmed=("gain", lambda g: int((g < -HARM_DB).sum())),
            images=("gain", "size"),
        )
        .reset_index()
    )


def main(argv: list[str]) -> int:
    results = Path(argv[0] if argv else "results")
    gains = member_gains(results)
    for model, rows in gains.groupby("trained_on", sort=False):
        cells = ", ".join(f"{r.degradation} {r.gain:+.2f} ({r.harmed})" for r in rows.itertuples())
        print(f"{model}: mean {rows.gain.mean():+.2f} dB | {cells}")
    failed = gains[gains.gain < 0]
    print(
        f"\n{len(failed)} member(s) below their input: "
        + ", ".join(f"{r.trained_on}/{r.degradation}" for r in failed.itertuples())
    )
    groups = results / "final" / "groups.parquet"
    if groups.exists():
        partition = pd.read_parquet(groups).group.drop_duplicates()
        print("partition: " + " | ".join(partition))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
