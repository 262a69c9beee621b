"""The noise floor: how far single-task models of one recipe land apart when only the training
seed changes, from replicate trainings (rule ``noise_floor``).

A drop is the difference of two independently seeded models, so its seed standard deviation is
``sqrt(2) * s`` for a seed-to-seed standard deviation ``s`` of one model's mean PSNR. One row per
replicated degradation, and a last ``pooled`` row, the root mean variance over them, which stands
in for a degradation that was not replicated (:func:`grids.grouping.evidence.seed_drop_sd` reads
them: a group's interval takes its noisiest member's).

    python -m grids.grouping.noise_floor --test-set heldout --single E... \\
        --replicate DEG EVAL ... --out results/grouping/noise_floor.parquet
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from .. import tables
from .evidence import POOLED, test_rows


def noise_floor(test_set: str, replicates: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Seed-to-seed spread per replicated degradation: ``replicates[name]`` are the evaluations of
    that degradation's single-task models, one per seed (the workflow's own model first). A last
    ``pooled`` row holds the root mean variance over the degradations."""
    rows = []
    for name, evaluations in replicates.items():
        psnr, gain = [], []
        for frame in evaluations:
            own = test_rows(frame, test_set)
            own = own[own.degradation == name]
            if own.empty:
                raise ValueError(f"a replicate of {name!r} has no rows of {name!r} on {test_set!r}")
            psnr.append(own.psnr.mean())
            gain.append(own.gain.mean())
        sd = float(np.std(psnr, ddof=1)) if len(psnr) > 1 else float("nan")
        rows.append(
            [name, len(psnr), float(np.mean(psnr)), sd, float(np.sqrt(2) * sd), float(np.mean(gain)), min(gain)]
        )
    sds = np.array([r[3] for r in rows if np.isfinite(r[3])])
    pooled = float(np.sqrt(np.mean(sds**2))) if len(sds) else float("nan")
    seeds = int(sum(r[1] for r in rows))
    rows.append([POOLED, seeds, float("nan"), pooled, float(np.sqrt(2) * pooled), float("nan"), float("nan")])
    return pd.DataFrame(rows, columns=tables.columns("grouping_noise_floor"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.grouping.noise_floor", description=__doc__.split("\n")[0])
    parser.add_argument("--test-set", required=True)
    parser.add_argument("--single", nargs="*", default=[], help="evaluations of the workflow's single-task models")
    parser.add_argument("--replicate", nargs=2, action="append", default=[], metavar=("DEGRADATION", "EVAL"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    singles = {}
    for path in args.single:
        frame = pd.read_parquet(path)
        singles[str(frame.trained_on.iloc[0])] = frame
    replicates: dict[str, list[pd.DataFrame]] = {}
    for name, path in args.replicate:
        if name not in singles:
            raise ValueError(f"replicate of {name!r}: no --single evaluation of that degradation's own model")
        replicates.setdefault(name, [singles[name]]).append(pd.read_parquet(path))
    table = noise_floor(args.test_set, replicates)
    tables.write(table, "grouping_noise_floor", args.out)
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    from ..stage import run_stage

    sys.exit(run_stage(main))
