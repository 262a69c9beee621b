"""Out-of-distribution statistics: will the chosen group's model cope with this input?

The selector (:mod:`grids.selection.selector`) picks the group whose references are closest to an input.
This module scores how far the input lies from the training degradations, without running any
restoration model, under five statistics (``selection.statistic``), each a class of
:data:`STATISTICS` that declares what it reads, its default threshold and its meaning:

============  ===============================================================================
statistic     score of an input, and its default threshold
============  ===============================================================================
paper         the paper's rule: distance (``features.distance``) of the input's GGD to the
              chosen group's mean set GGD (``results/similarity/ggd.parquet``); threshold 4
              (:data:`grids.ggd.PAPER_THRESHOLD`)
nearest       distance to the nearest reference image of the chosen group at
              ``features.layer`` (one GGD, two numbers per image); threshold: the 95th
              percentile of each reference's distance to its nearest other reference of its
              group
knn           Euclidean distance to the nearest reference image of any trained degradation in
              the *signature* space (below); threshold: split-conformal (below)
mahalanobis   the smallest Mahalanobis distance to a group's mean signature, under the
              within-group covariance pooled over groups (shrunk towards the identity: a group
              has a few dozen images for a handful of dimensions); split-conformal
gain          minus the expected gain of the chosen model over the input: the mean realised
              gain of the nearest reference images in the signature space (:mod:`grids.selection.gain`);
              threshold ``-selection.min_helpful_gain``: it asks "will the model help?" rather than
              "is the input unseen?"
============  ===============================================================================

**Signature.** One descriptor pass over the input's self-augmented patches gives the feature map
of every layer of ``selection.layers``; per layer the PCA + GGD fit of the similarity recipe gives
``(alpha, sigma)``. The signature is ``[log alpha, log sigma]`` per layer, standardised by the
references' mean and spread. The deepest layer has mapped the degradation onto image structure;
the shallow ones still see noise, blur and colour directly, so together they tell more than the
one GGD the group choice reads. ``knn`` and ``mahalanobis`` ask whether the input is like *any*
trained degradation, so an input closest to another group's references is not called out of
distribution for that (the group choice already went to the closest references it could).

**Split-conformal threshold.** The reference images (every image of every degraded similarity
set) are split by image id into two halves, seeded: the *proper* half is the bank the input is
scored against, the *calibration* half is scored against it. With ``n`` calibration scores the
threshold is the ``ceil((n + 1)(1 - alpha))``-th smallest (``selection.alpha``): an input drawn
like the calibration images is judged in distribution with probability at least ``1 - alpha``
(exchangeability; marginal over the trained degradations, and for test images only as far as
they resemble the reference images). Splitting by image id keeps one photo's differently degraded
copies on one side, so a calibration image never finds its own content in the bank.

**Adding a statistic** is one subclass of :class:`Statistic` in :data:`STATISTICS` (its name,
meaning, what it reads, ``default_threshold`` and ``score``) and a test; the config schema's
``selection.statistic`` enum is checked against the registry by the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from ..grouping.names import IDENTITY_GROUP
from .conformal import conformal_threshold, split_images
from .gain import fit_gain_model

if TYPE_CHECKING:
    from ..features import Signature

SHRINKAGE = 0.2  # Mahalanobis: covariance (1 - s) * pooled + s * identity, in standardised units


def signature_table(references: pd.DataFrame, layers: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """``(keys, Z)``: ``keys`` = ``degradation, image`` per reference image, ``Z [n, 2 * L]`` the
    images' :meth:`grids.features.Signature.vector` at ``layers``."""
    from ..features import Signature

    keys, rows = [], []
    for (degradation, image), part in references.groupby(["degradation", "image"], sort=True):
        keys.append((degradation, image))
        rows.append(Signature.from_rows(part).vector(layers))
    return pd.DataFrame(keys, columns=["degradation", "image"]), np.asarray(rows, np.float64)


@dataclass
class SignatureBank:
    """Reference signatures of one half of the references, standardised, with group labels."""

    z: np.ndarray  # [n, d] standardised
    groups: np.ndarray  # [n] group of each row
    mean: np.ndarray
    scale: np.ndarray
    group_means: dict[str, np.ndarray]
    precision: np.ndarray  # inverse of the shrunk pooled within-group covariance

    @classmethod
    def fit(cls, z: np.ndarray, groups: np.ndarray) -> SignatureBank:
        mean, scale = z.mean(axis=0), z.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        zs = (z - mean) / scale
        means = {g: zs[groups == g].mean(axis=0) for g in dict.fromkeys(groups)}
        centred = zs - np.stack([means[g] for g in groups])
        cov = centred.T @ centred / max(len(zs) - len(means), 1)
        cov = (1 - SHRINKAGE) * cov + SHRINKAGE * np.eye(z.shape[1])
        return cls(zs, np.asarray(groups), mean, scale, means, np.linalg.inv(cov))

    def standardise(self, z: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(z) - self.mean) / self.scale

    def knn(self, z: np.ndarray) -> float:
        """Distance to the nearest reference of the bank (standardised units)."""
        return float(np.sqrt(((self.z - self.standardise(z)) ** 2).sum(axis=1)).min())

    def group_distances(self, z: np.ndarray) -> pd.DataFrame:
        """``group, kl, distance``: per group the distance to its nearest reference (``kl`` NaN:
        no KL here), smallest first; the selector's choice for ``selection.reference: signature``."""
        d = np.sqrt(((self.z - self.standardise(z)) ** 2).sum(axis=1))
        table = pd.DataFrame({"group": self.groups, "distance": d}).groupby("group", sort=False).distance.min()
        table = table.reset_index().assign(kl=np.nan)[["group", "kl", "distance"]]
        return table.sort_values(["distance", "group"], kind="stable").reset_index(drop=True)

    def mahalanobis(self, z: np.ndarray) -> float:
        """The smallest Mahalanobis distance to a group's mean."""
        d = self.standardise(z)[0] - np.stack(list(self.group_means.values()))
        return float(np.sqrt(np.einsum("gi,ij,gj->g", d, self.precision, d).min()))


@dataclass(frozen=True, kw_only=True)
class References:
    """What a statistic is fitted on.

    ``rows``: the ``selection_references`` rows (every layer of every reference image);
    ``group_of``: degradation -> final group (other degradations' rows are left out);
    ``layer``: ``features.layer`` (the method's GGD); ``layers``: the signature's
    (``selection.layers``); ``set_ggds``: ``group, alpha, sigma``, each group's mean set GGD;
    ``alpha``: ``selection.alpha``; ``distance``: ``features.distance``; ``gains``: the
    references' realised gains (table ``selection_reference_gains``; the ``gain`` statistic's) and
    ``min_gain``: ``selection.min_helpful_gain``.
    """

    rows: pd.DataFrame
    group_of: dict[str, str]
    layer: str
    layers: list[str]
    set_ggds: pd.DataFrame | None = None
    alpha: float = 0.05
    seed: int = 0
    distance: str = "log_kl"
    gains: pd.DataFrame | None = None
    min_gain: float = 0.5

    def trained(self) -> pd.DataFrame:
        return self.rows[self.rows.degradation.isin(self.group_of)]


class Statistic:
    """An out-of-distribution statistic fitted on :class:`References`: ``score(signature, group)``
    (larger: further from the training degradations) and ``threshold`` (the default, or the given
    one). Subclasses declare:

    * ``name``: the config value of ``selection.statistic``;
    * ``meaning``: its score and default threshold in words;
    * ``reads_method_layer``: it reads the input's GGD at ``features.layer`` (the deepest layer,
      the costliest; the selector computes it only when something reads it);
    * ``layers``: the signature layers it reads (set on fitting);
    * ``against_group``: it measures the input against the chosen group (else every group);
    * ``signed``: its score may be negative, so any finite threshold is valid (else the score is a
      distance, >= 0, and a threshold must be > 0: :func:`check_threshold`).
    """

    name: ClassVar[str]
    meaning: ClassVar[str]
    reads_method_layer: ClassVar[bool] = False
    against_group: ClassVar[bool] = False
    signed: ClassVar[bool] = False

    def __init__(self, references: References, threshold: float | None = None):
        self.layers: list[str] = []
        self.fit(references)
        self.threshold = float(self.default_threshold() if threshold is None else threshold)

    def fit(self, references: References) -> None:
        raise NotImplementedError

    def default_threshold(self) -> float:
        raise NotImplementedError

    def score(self, signature: Signature, group: str) -> float:
        raise NotImplementedError


class _DistanceStatistic(Statistic):
    """The distance (``features.distance``) of the input's GGD at ``features.layer`` to the
    nearest of the chosen group's GGDs (:meth:`group_ggds`)."""

    reads_method_layer = True
    against_group = True

    def fit(self, references: References) -> None:
        from ..ggd import get_distance

        self.layer, self.distance = references.layer, get_distance(references.distance)

    def group_ggds(self, group: str) -> pd.DataFrame:
        raise NotImplementedError

    def score(self, signature: Signature, group: str) -> float:
        refs, fit = self.group_ggds(group), signature[self.layer]
        _, distance = self.distance.between(refs.alpha.to_numpy(), refs.sigma.to_numpy(), fit.alpha, fit.sigma)
        return float(distance.min())


class Paper(_DistanceStatistic):
    name = "paper"
    meaning = "distance of the input's GGD to the chosen group's mean set GGD; threshold 4 (the paper's)"

    def fit(self, references: References) -> None:
        super().fit(references)
        if references.set_ggds is None:
            raise ValueError("the paper statistic needs the groups' set GGDs")
        self.sets = references.set_ggds.set_index("group")

    def default_threshold(self) -> float:
        return self.distance.threshold

    def group_ggds(self, group: str) -> pd.DataFrame:
        return self.sets.loc[[group]]


class Nearest(_DistanceStatistic):
    name = "nearest"
    meaning = (
        "distance to the nearest reference image of the chosen group at features.layer; threshold: the 95th "
        "percentile of each reference's distance to its nearest other reference of its group"
    )

    def fit(self, references: References) -> None:
        super().fit(references)
        rows = references.trained()
        method = rows[rows.layer == self.layer]
        group = method.degradation.map(references.group_of).to_numpy()
        self.refs = pd.DataFrame({"group": group, "alpha": method.alpha, "sigma": method.sigma})

    def default_threshold(self) -> float:
        return nearest_threshold(self.refs, distance=self.distance.name)

    def group_ggds(self, group: str) -> pd.DataFrame:
        return self.refs[self.refs.group == group]


class _BankStatistic(Statistic):
    """A score in the signature space of ``selection.layers`` against a bank of half the reference
    images, with a split-conformal threshold from the other half (module doc)."""

    def fit(self, references: References) -> None:
        self.layers, self.alpha = list(references.layers), references.alpha
        keys, z = signature_table(references.trained(), self.layers)
        calibration = keys.image.isin(split_images(list(keys.image), references.seed)).to_numpy()
        groups = keys.degradation.map(references.group_of).to_numpy()
        self.bank = SignatureBank.fit(z[~calibration], groups[~calibration])
        self.calibration_scores = np.array([self.bank_score(z[i]) for i in np.flatnonzero(calibration)])

    def default_threshold(self) -> float:
        return conformal_threshold(self.calibration_scores, self.alpha)

    def bank_score(self, z: np.ndarray) -> float:
        """The score of signature ``z`` against the bank: its method named like the statistic."""
        return getattr(self.bank, self.name)(z)

    def score(self, signature: Signature, group: str) -> float:
        return self.bank_score(signature.vector(self.layers))


class Knn(_BankStatistic):
    name = "knn"
    meaning = (
        "Euclidean distance to the nearest reference image of any trained degradation in the signature space; "
        "split-conformal threshold"
    )


class Mahalanobis(_BankStatistic):
    name = "mahalanobis"
    meaning = (
        "the smallest Mahalanobis distance to a group's mean signature (pooled, shrunk covariance); "
        "split-conformal threshold"
    )


class Gain(Statistic):
    name = "gain"
    signed = True  # minus a gain in dB: its default threshold, -selection.min_helpful_gain, is negative
    meaning = (
        "minus the expected gain of the chosen model (the mean realised gain of the nearest reference images in "
        "the signature space, grids/selection/gain.py); threshold: minus selection.min_helpful_gain (flagged: not "
        "expected to help)"
    )

    def fit(self, references: References) -> None:
        if references.gains is None:
            raise ValueError(
                "the gain statistic needs the references' gains (results/selection/reference_gains.parquet)"
            )
        self.layers, self.min_gain = list(references.layers), references.min_gain
        keys, z = signature_table(references.trained(), self.layers)
        self.model = fit_gain_model(keys, z, references.gains, references.alpha)

    def default_threshold(self) -> float:
        return -self.min_gain

    def score(self, signature: Signature, group: str) -> float:
        if group == IDENTITY_GROUP:  # nothing restored: nothing gained, exactly
            return 0.0
        return -self.model.predict(signature.vector(self.layers))[0]


STATISTICS: dict[str, type[Statistic]] = {cls.name: cls for cls in (Paper, Nearest, Knn, Mahalanobis, Gain)}


def fit_statistic(name: str, references: References, threshold: float | None = None) -> Statistic:
    """The statistic called ``name`` fitted on ``references`` (``threshold``: None for its own)."""
    if name not in STATISTICS:
        raise ValueError(f"unknown statistic {name!r}; expected one of {', '.join(STATISTICS)}")
    return STATISTICS[name](references, threshold)


def check_threshold(name: str, threshold: float, what: str) -> None:
    """A threshold ``what`` (``--threshold 2.5``) for the statistic ``name``: finite, and > 0 where
    the score is a distance; one ValueError starting with ``what`` otherwise."""
    signed = STATISTICS[name].signed if name in STATISTICS else False
    if not math.isfinite(threshold):
        raise ValueError(f"{what}: must be a finite number")
    if not signed and threshold <= 0:
        raise ValueError(f"{what}: must be a finite number > 0 (the {name} statistic's score is a distance, >= 0)")


def listed(names, last: str = "or") -> str:
    """Names quoted and joined for a sentence of the docs or the report: `a`, `b` or `c`."""
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {last} {quoted[-1]}"


def nearest_threshold(references: pd.DataFrame, quantile: float = 0.95, distance: str = "log_kl") -> float:
    """The ``quantile`` of each reference's distance to the nearest *other* reference of its group:
    how far an input of a trained degradation typically lands from its group (groups with a
    single reference row have no such distance and are skipped)."""
    from ..ggd import get_distance

    nearest = []
    for _, part in references.groupby("group", sort=False):
        if len(part) < 2:
            continue
        _, d = get_distance(distance).pairwise(part.alpha.to_numpy(), part.sigma.to_numpy())
        np.fill_diagonal(d, np.inf)
        nearest.extend(d.min(axis=0))  # column j: distance of the others (as references) to image j
    if not nearest:
        raise ValueError("no group has two reference images: set selection.threshold explicitly")
    return float(np.quantile(nearest, quantile))


def fit_drop(scores: np.ndarray, drops: np.ndarray) -> pd.DataFrame:
    """A non-decreasing fit ``drop ≈ f(score)`` (isotonic regression, scipy): ``score, drop``
    knots, the mean score and fitted drop of each block; :func:`predict_drop` interpolates."""
    from scipy.optimize import isotonic_regression

    order = np.argsort(scores, kind="stable")
    x, y = np.asarray(scores, np.float64)[order], np.asarray(drops, np.float64)[order]
    fitted = isotonic_regression(y).x
    blocks = np.r_[0, np.flatnonzero(np.diff(fitted)) + 1, len(fitted)]
    knots = [(x[a:b].mean(), fitted[a]) for a, b in zip(blocks[:-1], blocks[1:])]
    return pd.DataFrame(knots, columns=["score", "drop"])


def predict_drop(knots: pd.DataFrame, score: float | np.ndarray) -> np.ndarray:
    """The fitted drop at ``score`` (linear between knots, constant beyond them)."""
    return np.interp(score, knots.score.to_numpy(), knots["drop"].to_numpy())


def cross_fitted_drops(images: np.ndarray, scores: np.ndarray, drops: np.ndarray, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions: the image ids are split in two halves (seeded), each half
    predicted by the fit on the other, so every prediction is for an image the fit never saw."""
    held = np.asarray(images)
    first = np.isin(held, sorted(split_images(list(held), seed)))
    predicted = np.full(len(scores), np.nan)
    for test in (first, ~first):
        if test.all() or not test.any():
            continue
        predicted[test] = predict_drop(fit_drop(scores[~test], drops[~test]), scores[test])
    return predicted
