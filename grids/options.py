"""The config's choices as small objects: an option is resolved once, from the config section that
holds it, and the code asks the object rather than comparing the option's string where it is used.
Torch-free, so the workflow resolves them while Snakemake parses it.

The fallback (``selection.fallback``) is :class:`grids.selection.fallback.Fallback`; whether a model
learned (``grouping.min_learned_gain``) is the rule of :mod:`grids.learning`.
"""

from __future__ import annotations

from dataclasses import dataclass

DECISIONS = ("point", "conservative")  # grouping.decision


@dataclass(frozen=True)
class Decision:
    """``grouping.decision``: how a verified group's drop ``dP`` becomes a verdict. ``point`` (the
    paper's rule): feasible when ``dP <= delta``. ``conservative``: when the upper end of its 95 %
    interval, ``dP + half_width``, is ``<= delta``, so the seed noise (the noise floor) enters it."""

    name: str

    def __post_init__(self):
        if self.name not in DECISIONS:
            raise ValueError(f"grouping.decision must be one of {', '.join(DECISIONS)}, got {self.name!r}")

    @classmethod
    def of(cls, grouping: dict) -> Decision:
        return cls(grouping["decision"])

    @property
    def uses_interval(self) -> bool:
        """Whether the verdict reads the interval, so waits for the noise floor's replicates."""
        return self.name == "conservative"

    @property
    def column(self) -> str:
        """The column of table ``grouping_verified`` the verdict compares with delta."""
        return "dP_high" if self.uses_interval else "dP"

    def feasible(self, dP, half_width, delta: float):
        """Feasible? (scalars or arrays)"""
        return dP + (half_width if self.uses_interval else 0.0) <= delta


def reads_descriptor(features: dict) -> bool:
    """``features.kind``: whether the features are the descriptor's (``descriptor``), not SIFT's."""
    return features["kind"] == "descriptor"


def method_layer(features: dict) -> str:
    """The signature key of the similarity's own features: ``features.layer``, or ``sift``."""
    return features["layer"] if reads_descriptor(features) else "sift"
