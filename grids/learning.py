"""Did a model learn? Every model judged against its degraded input: the one home of that rule.

A model's *gain* on a degradation is its PSNR minus the degraded input's own PSNR on the same test
images (the identity: doing nothing). Per model and degradation, :func:`learning` says one of:

* ``learned``: mean gain >= ``grouping.min_learned_gain`` (0.5 dB by default);
* ``did_not_learn``: 0 <= mean gain < ``min_gain``: it restores (almost) nothing;
* ``below_input``: mean gain < -``BELOW_INPUT_DB`` (0.1 dB): its output is worse than its input by
  more than a model that restores nothing varies from one training seed to another (0.04-0.08 dB
  measured on the default run), so an identity's noise is not called a failure. For a model mix-trained on
  several degradations (a group model, the mix-all baseline) a member below its input marks a
  **failed mixed training**: its drop against the single-task model then measures the training
  recipe, not a conflict between the tasks (:func:`grids.grouping.evidence.group_verdict`).

Over a model's members, :func:`model_learning`: ``below_input`` if any member is, else the outcome
of the mean gain. Per image, :func:`harmed_images`: how many test images a model makes worse than
their input by more than ``HARM_DB`` (0.5 dB), since a mean over a handful of images hides a model
that ruins a few of them. :func:`judge` gives all three per model and degradation of an evaluation
table (rows of table ``eval`` of :mod:`grids.tables`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

LEARNED, DID_NOT_LEARN, BELOW_INPUT = "learned", "did_not_learn", "below_input"
OUTCOMES = (LEARNED, DID_NOT_LEARN, BELOW_INPUT)
# An output identical to its target (the clean test case left unchanged) has an MSE of 0 and an
# infinite PSNR; it scores this ceiling instead (grids.evaluate.psnr), so that means and gains stay
# finite. Rounding to 8 bits alone costs 58.9 dB (an error variance of 1/12 grey level²), so no
# restoration of a degraded image reaches it.
PSNR_CEILING = 60.0
HARM_DB = 0.5  # an image made worse than its input by more than this (dB) counts as harmed
BELOW_INPUT_DB = 0.1  # a mean gain below minus this (dB) is below the input, beyond retraining noise


def learning(gain: float, min_gain: float) -> str:
    """``below_input`` (gain < -``BELOW_INPUT_DB``), ``learned`` (gain >= ``min_gain``) or
    ``did_not_learn`` (the rest, an unknown gain included) for one model's mean gain (dB) on one
    degradation."""
    if gain < -BELOW_INPUT_DB:
        return BELOW_INPUT
    return LEARNED if gain >= min_gain else DID_NOT_LEARN


def model_learning(gains: Iterable[float], min_gain: float) -> str:
    """One model over its members' mean gains: ``below_input`` if any member ends below its input,
    else :func:`learning` of the mean gain."""
    values = np.asarray(list(gains), dtype=np.float64)
    if (values < -BELOW_INPUT_DB).any():
        return BELOW_INPUT
    return learning(float(values.mean()) if len(values) else float("nan"), min_gain)


def harmed_images(gains: Iterable[float]) -> int:
    """How many of the per-image ``gains`` (dB) are worse than the input by more than ``HARM_DB``."""
    return int((np.asarray(list(gains), dtype=np.float64) < -HARM_DB).sum())


def judge(evaluation: pd.DataFrame, min_gain: float) -> pd.DataFrame:
    """Per ``(trained_on, test_set, degradation)`` of evaluation rows (the index): the mean
    ``gain`` (dB), the ``harmed`` images (:func:`harmed_images`) and the ``learning`` outcome."""
    grouped = evaluation.groupby(["trained_on", "test_set", "degradation"], sort=False).gain
    table = pd.DataFrame({"gain": grouped.mean(), "harmed": grouped.agg(harmed_images).astype("int64")})
    table["learning"] = pd.Series([learning(g, min_gain) for g in table.gain], index=table.index, dtype=str)
    return table
