"""Expected gain of the chosen model before running it, with an interval.

What a user asks before spending a GPU on an image is not "is this input unseen?" but "will the
chosen model improve it, and by about how much?". Every trained degradation's reference images
(the degraded similarity sets, whose signatures the selector already holds) are restored once by
their final group's model (rules ``evaluate_references``, ``evaluate_references_input``): each
reference then carries a signature and a realised gain over its degraded input. An input's
expected gain is read off its neighbours in the signature space:

1. **Prediction**: the mean realised gain of the ``K`` nearest references (Euclidean, signatures
   standardised by the references' mean and spread, the ``knn`` statistic's space).
2. **Interval** (split-conformal): every reference is predicted out of fold, from neighbours of
   *other* clean images only (one photo's differently degraded copies never vouch for each other);
   the ``ceil((n + 1)(1 - alpha))``-th smallest absolute error, ``q``, gives the interval
   ``prediction ± q``. Coverage is ``1 - alpha`` for inputs drawn like the references; the
   failure benchmark (:mod:`grids.selection.failure`) measures it on the held-out test images, seen and
   unseen degradations apart. (Scaling the error by the spread of the neighbours' gains, a
   locally weighted interval, was measured too: on the default run it doubled the mean width,
   19.5 against 9.7 dB, for 92 % against 90 % coverage; bench/RESULTS.md.)

The ``gain`` statistic of :mod:`grids.selection.statistics` scores an input by minus this expected gain, so an input
expected to gain less than ``selection.min_helpful_gain`` is flagged.

    python -m grids.selection.gain --groups results/final/groups.parquet --eval results/eval/references/input.parquet \
        results/eval/references/G1.parquet ... --clean results/train/clean/manifest.parquet \
        --out results/selection/reference_gains.parquet

writes table ``selection_reference_gains`` of :mod:`grids.tables`: per reference image its final
group and the gain of that group's model over the degraded image (rule ``selection_reference_gains``);
the clean training images are references too, of the identity (group ``identity``, a gain of 0):
an input with nothing to restore is expected to gain nothing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import io, tables
from ..grouping.names import CLEAN, IDENTITY, IDENTITY_GROUP
from ..learning import PSNR_CEILING
from .conformal import conformal_threshold

K = 5  # neighbours: a degraded set holds ~10 images, so its own degradation's still dominate


def reference_gains(evaluation: pd.DataFrame, groups: pd.DataFrame, clean_images=()) -> pd.DataFrame:
    """``degradation, image, group, psnr_input, psnr_model, gain``: every reference image of a final
    member restored by its group's model (``evaluation``: the identity's and the groups' rows), and
    the ``clean_images``, the identity's references (:func:`clean_gains`)."""
    group_of = dict(zip(groups.degradation, groups.group))
    rows = evaluation[evaluation.degradation.isin(group_of)]
    inputs = rows[rows.trained_on == IDENTITY].set_index(["degradation", "image"]).psnr
    models = rows[rows.trained_on == rows.degradation.map(group_of)].set_index(["degradation", "image"])
    missing = sorted(set(group_of) - set(models.index.get_level_values(0)))
    if missing:
        raise ValueError(f"no reference evaluation of {missing} by its group's model: pass every final group's table")
    table = models[["trained_on", "psnr"]].rename(columns={"trained_on": "group", "psnr": "psnr_model"})
    table = table.join(inputs.rename("psnr_input"), how="left").reset_index()
    if table.psnr_input.isna().any():
        first = table[table.psnr_input.isna()].iloc[0]
        raise ValueError(f"no identity evaluation of reference {first.degradation}/{first.image}: pass its table")
    table["gain"] = table.psnr_model - table.psnr_input
    table = pd.concat([table, clean_gains(clean_images)], ignore_index=True)
    table = table.sort_values(["degradation", "image"], kind="stable").reset_index(drop=True)
    return table[tables.columns("selection_reference_gains")]


def clean_gains(images) -> pd.DataFrame:
    """The clean reference ``images``' rows: the identity's, which returns them as they are (both
    PSNRs at the ceiling, a gain of 0), so an input like them is expected to gain nothing."""
    images = [str(image) for image in images]
    return pd.DataFrame(
        {
            "degradation": CLEAN,
            "image": images,
            "group": IDENTITY_GROUP,
            "psnr_model": PSNR_CEILING,
            "psnr_input": PSNR_CEILING,
            "gain": 0.0,
        },
        index=range(len(images)),
    )


@dataclass
class GainModel:
    """The expected gain of an input from its nearest references (module doc)."""

    z: np.ndarray  # [n, d] standardised reference signatures
    gains: np.ndarray  # [n] realised gain of each reference's group model (dB)
    mean: np.ndarray
    scale: np.ndarray
    q: float  # the conformal half-width of the interval (dB)
    alpha: float
    k: int = K

    @classmethod
    def fit(cls, z: np.ndarray, gains: np.ndarray, images: np.ndarray, alpha: float, k: int = K) -> GainModel:
        """Fit on reference signatures ``z [n, d]``, their ``gains`` and clean ``images`` ids."""
        z, gains, images = np.asarray(z, np.float64), np.asarray(gains, np.float64), np.asarray(images)
        if len(z) < 2 or len(set(images)) < 2:
            raise ValueError("the expected gain needs references of at least two clean images")
        mean, scale = z.mean(axis=0), z.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        model = cls((z - mean) / scale, gains, mean, scale, float("inf"), alpha, k)
        errors = [abs(gains[i] - model.neighbours(model.z[i], images != images[i])) for i in range(len(z))]
        model.q = conformal_threshold(np.array(errors), alpha)
        return model

    def neighbours(self, zs: np.ndarray, allowed: np.ndarray | None = None) -> float:
        """The mean gain of the ``k`` nearest allowed references to standardised ``zs``."""
        d = np.sqrt(((self.z - zs) ** 2).sum(axis=1))
        if allowed is not None:
            d = np.where(allowed, d, np.inf)
        nearest = np.argsort(d, kind="stable")[: min(self.k, int(np.isfinite(d).sum()))]
        return float(self.gains[nearest].mean())

    def predict(self, z: np.ndarray) -> tuple[float, float, float]:
        """``(expected, low, high)`` gain in dB for one input's signature vector ``z``."""
        predicted = self.neighbours((np.asarray(z, np.float64) - self.mean) / self.scale)
        return predicted, predicted - self.q, predicted + self.q


def fit_gain_model(keys: pd.DataFrame, z: np.ndarray, gains: pd.DataFrame, alpha: float) -> GainModel:
    """The gain model over the reference signatures ``(keys, z)`` (:func:`grids.selection.statistics.signature_table`)
    of the images ``gains`` (table ``selection_reference_gains``) covers."""
    table = keys.merge(gains[["degradation", "image", "gain"]], on=["degradation", "image"], how="left")
    known = table.gain.notna().to_numpy()
    if not known.any():
        raise ValueError("reference_gains.parquet covers none of the references: rebuild `final_models`")
    return GainModel.fit(z[known], table.gain.to_numpy()[known], table.image.to_numpy()[known], alpha)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.selection.gain", description=__doc__.split("\n")[0])
    parser.add_argument("--groups", required=True, help="results/final/groups.parquet (the final groups)")
    parser.add_argument("--eval", nargs="+", required=True, help="reference eval tables: the input's and each group's")
    parser.add_argument("--clean", required=True, help="the clean references' manifest (results/train/clean/)")
    parser.add_argument("--out", required=True, help="the reference gains (.parquet) to write")
    args = parser.parse_args(argv)
    clean = io.read_manifest(args.clean).image_id
    table = reference_gains(io.read_parquets(args.eval), pd.read_parquet(args.groups), clean)
    tables.write(table, "selection_reference_gains", args.out)
    summary = table.groupby("degradation", sort=False).gain.agg(["mean", "std", "count"]).round(2)
    print(summary.to_string())
    return 0


if __name__ == "__main__":
    from ..stage import run_stage

    sys.exit(run_stage(main))
