"""Split-conformal thresholds: a calibration half of the reference images, and the rank that
covers ``1 - alpha`` of inputs drawn like them (:mod:`grids.selection.statistics`,
:mod:`grids.selection.gain`)."""

from __future__ import annotations

import math

import numpy as np

from ..seeds import rng_for


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest of ``n`` calibration scores (inf when that
    rank exceeds ``n``: too few scores for this ``alpha``)."""
    scores = np.sort(np.asarray(scores, np.float64))
    rank = math.ceil((len(scores) + 1) * (1 - alpha))
    return float("inf") if rank > len(scores) else float(scores[rank - 1])


def split_images(images: list[str], seed: int) -> set[str]:
    """The calibration half of the reference image ids (seeded; the other half is the bank)."""
    ids = sorted(set(images))
    order = rng_for(seed, "conformal-split", len(ids)).permutation(len(ids))
    return {ids[i] for i in order[: len(ids) // 2]}
