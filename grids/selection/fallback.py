"""The fallback (``selection.fallback``): what ``grids restore`` does with an input it flags.

An input is *flagged* when the selector's statistic calls it out of distribution, or when the
chosen model is expected to gain less than ``selection.min_helpful_gain`` dB over it (an unknown expected
gain is not known to be low), unless the selector chose the identity (nothing to restore: there is
no model to replace). A flagged input then goes to:

===========  ======================================================================
fallback     what ``grids restore`` writes for a flagged input
===========  ======================================================================
none         the chosen group model's output anyway (a warning on stderr)
mixall       the mix-all model's output (the model trained on every degradation)
identity     the input unchanged
===========  ======================================================================

This module is the rule's one home: ``grids restore`` asks it where an input goes, and the
failure benchmark (:mod:`grids.selection.failure`) asks it what each fallback would have given on
every test image, from the evaluation tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..grouping.names import IDENTITY_GROUP

if TYPE_CHECKING:  # `grids restore` and `grids --help` import this module: no pandas at import
    import pandas as pd

FALLBACKS = ("none", "mixall", "identity")  # selection.fallback


@dataclass(frozen=True)
class Fallback:
    """``name``: one of :data:`FALLBACKS`; ``min_gain``: the expected gain (dB) below which an input
    is flagged; ``mix_all``: the mix-all group's name (None with one degradation: its model is then
    the chosen one)."""

    name: str
    min_gain: float
    mix_all: str | None = None

    def __post_init__(self):
        if self.name not in FALLBACKS:
            raise ValueError(f"selection.fallback is {self.name!r}: choose one of {', '.join(FALLBACKS)}")

    def flags(self, in_distribution, expected_gain, chosen):
        """Which inputs this fallback takes over (scalars or arrays): an input the statistic flags,
        or one whose chosen model is expected to gain less than ``min_gain`` dB (None/NaN: not
        known to be low); never one for which the identity was ``chosen`` (nothing to restore:
        no model to replace)."""
        low_gain = np.asarray(expected_gain, dtype=np.float64) < self.min_gain
        model = np.asarray(chosen) != IDENTITY_GROUP
        return (~np.asarray(in_distribution, dtype=bool) | low_gain) & model

    def route(self, group: str) -> tuple[str, str]:
        """``(model, what)``: the group whose model a flagged input goes to (``identity``: none, the
        input is written unchanged) and the words that say so."""
        if self.name == "mixall":
            chosen = self.mix_all or group
            return chosen, f"the mix-all model ({chosen})"
        if self.name == "identity":
            return IDENTITY_GROUP, "the input unchanged (the identity)"
        return group, "its model anyway (selection.fallback: none)"

    def measured(self, outcomes: pd.DataFrame) -> bool:
        """Whether the evaluation tables give this fallback's PSNR on every image of ``outcomes``
        (``mixall`` needs the mix-all model's: none with one degradation)."""
        return not (self.name == "mixall" and outcomes.psnr_mixall.isna().any())

    def routed(self, outcomes: pd.DataFrame) -> int:
        """How many images of ``outcomes`` this fallback sends elsewhere than their chosen model."""
        return 0 if self.name == "none" else int(outcomes.flagged.sum())

    def psnr(self, outcomes: pd.DataFrame) -> np.ndarray:
        """Each test image's PSNR after ``grids restore`` with this fallback (``outcomes``: table
        ``selection_failure_images``): flagged images get the mix-all model's output or the input
        itself, the others the chosen model's."""
        other = {"none": outcomes.psnr_chosen, "mixall": outcomes.psnr_mixall, "identity": outcomes.psnr_input}
        return np.where(outcomes.flagged, other[self.name], outcomes.psnr_chosen)
