"""The selector that ``grids select`` and ``grids restore`` run (docs/method.md §7).

For an input image of unknown degradation, after its signature (:mod:`grids.selection.signatures`):

3. The group (``selection.reference``), against references fitted the same way on every image of
   each final member's degraded set (``results/selection/references.parquet``):

   * ``signature`` (default): the group of the nearest reference image in the signature space;
   * ``images``: the group of the nearest reference image's GGD at ``features.layer``, the
     divergence being ``KL(GGD(reference) || GGD(input))``;
   * ``sets`` (the paper's wording): the group whose mean set GGD (the means of its members'
     (alpha, sigma) from ``results/similarity/ggd.parquet``) is closest.

   Divergences are the similarity matrix's distance (``features.distance``, :mod:`grids.ggd`).
4. Without running any model, ``selection.statistic`` (:mod:`grids.selection.statistics`) scores
   the input; above its threshold it is out of distribution. The report's monotone fit of the drop
   on the score (``results/selection/drop_fit.parquet``) gives the expected drop.
5. The expected gain of the chosen model over the input, with an interval
   (:mod:`grids.selection.gain`): the realised gains of the nearest reference images in the
   signature space (``results/selection/reference_gains.parquet``).

A :class:`Selector` is four objects, one per step: the :class:`~grids.selection.signatures.SignatureRecipe`,
the :class:`GroupChoice`, the :class:`Judge` and the :class:`GainPredictor`. :func:`build_selector`
makes them from a config's ``selection`` section and a built workflow's tables. This module imports
no report code (tests/test_layout.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..ggd import GGD, Distance, get_distance
from ..grouping.names import CLEAN, IDENTITY_GROUP
from ..learning import LEARNED, learning
from ..nss import expand_layers
from ..options import method_layer, reads_descriptor
from .gain import GainModel, fit_gain_model
from .signatures import (
    SignatureRecipe,
    check_features,
    selection_features,
    signature_layers,
)
from .statistics import References, SignatureBank, Statistic, fit_statistic, predict_drop, signature_table

if TYPE_CHECKING:  # torch, which grids.features imports, is loaded when a signature is computed
    from ..features import Signature


def candidates(groups: pd.DataFrame) -> pd.DataFrame:
    """``degradation, group``: the final groups and the identity, the candidate "nothing to
    restore", whose references are the clean images (its one member, ``clean``)."""
    if CLEAN in set(groups.degradation):
        return groups
    identity = pd.DataFrame({"degradation": [CLEAN], "group": [IDENTITY_GROUP]})
    return pd.concat([groups[["degradation", "group"]], identity], ignore_index=True)


def group_ggds(ggd: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """``group, alpha, sigma``: each final group's GGD, the mean of its members' parameters."""
    fits = ggd.set_index("degradation")
    missing = sorted(set(groups.degradation) - set(fits.index))
    if missing:
        raise ValueError(f"ggd.parquet has no fit for {missing}: rebuild similarity_matrix")
    rows = []
    for group, members in groups.groupby("group", sort=False).degradation:
        rows.append([group, float(fits.loc[members, "alpha"].mean()), float(fits.loc[members, "sigma"].mean())])
    return pd.DataFrame(rows, columns=["group", "alpha", "sigma"])


def image_references(references: pd.DataFrame, groups: pd.DataFrame, features: dict) -> pd.DataFrame:
    """``group, alpha, sigma``: one row per reference image of each final group's members."""
    missing = sorted(set(groups.degradation) - set(references.degradation))
    if missing:
        raise ValueError(f"references.parquet has no images of {missing}: rebuild final_models")
    group_of = dict(zip(groups.degradation, groups.group))
    table = references[references.degradation.isin(group_of)]
    if "layer" in table:  # the signature's other layers serve the out-of-distribution statistics
        table = table[table.layer == method_layer(features)]
    return pd.DataFrame(
        {"group": table.degradation.map(group_of), "alpha": table.alpha, "sigma": table.sigma}
    ).reset_index(drop=True)


def divergences(references: pd.DataFrame, fit: GGD, distance: str = "log_kl") -> pd.DataFrame:
    """``group, kl, distance``: per group the smallest divergence ``D(reference || input)`` over its
    reference rows (one row per group for ``sets``, one per image for ``images``), smallest distance
    first (``distance``: ``features.distance``)."""
    measure = get_distance(distance)
    kl, _ = measure.between(references.alpha.to_numpy(), references.sigma.to_numpy(), fit.alpha, fit.sigma)
    table = pd.DataFrame({"group": references.group.to_numpy(), "kl": np.atleast_1d(kl)})
    table = table.groupby("group", sort=False).kl.min().reset_index()
    table["distance"] = np.atleast_1d(measure.scale(table.kl.to_numpy()))
    return table.sort_values(["distance", "group"], kind="stable").reset_index(drop=True)


@dataclass
class Selection:
    group: str
    distance: float  # divergence to the chosen group (the selection's own distance)
    in_distribution: bool  # score <= the statistic's threshold
    divergences: pd.DataFrame
    alpha: float
    sigma: float
    statistic: str = ""  # the out-of-distribution statistic ("" : the distance itself)
    score: float = float("nan")
    expected_drop: float | None = None  # predicted PSNR loss against the single-task model (dB)
    expected_gain: float | None = None  # predicted gain of the chosen model over the input (dB)
    gain_low: float | None = None  # its interval (selection.alpha, grids/selection/gain.py)
    gain_high: float | None = None
    not_learned: dict[str, float] = field(default_factory=dict)  # members its model did not learn: their gains

    @property
    def nothing_to_restore(self) -> bool:
        """The identity was chosen: the input looks like the clean images."""
        return self.group == IDENTITY_GROUP

    def as_dict(self) -> dict:
        """The selection as JSON values: a number that is not finite is None (JSON has no NaN or
        Infinity; an unbounded end of the gain interval, where the conformal rank exceeds the
        references, is null)."""
        return {
            "group": self.group,
            "nothing_to_restore": self.nothing_to_restore,
            "distance": finite_or_none(self.distance),
            "in_distribution": self.in_distribution,
            "statistic": self.statistic,
            "score": finite_or_none(self.score),
            "expected_drop": finite_or_none(self.expected_drop),
            "expected_gain": finite_or_none(self.expected_gain),
            "gain_interval": None
            if self.expected_gain is None
            else [finite_or_none(self.gain_low), finite_or_none(self.gain_high)],
            # None where the choice did not need the method's GGD (reference: signature)
            "input_ggd": {"alpha": finite_or_none(self.alpha), "sigma": finite_or_none(self.sigma)},
            "divergences": {r.group: finite_or_none(r.distance) for r in self.divergences.itertuples()},
            "not_learned": {member: finite_or_none(gain) for member, gain in self.not_learned.items()},
        }


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float when it is a finite number, else None (JSON's null)."""
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class GroupChoice:
    """Step 3: ``references`` (``group, alpha, sigma`` rows, :func:`image_references` or
    :func:`group_ggds`) under the similarity's ``distance`` at the method's ``layer``; with a
    signature ``bank`` the divergence is instead the distance to the group's nearest reference in
    the signature space at ``bank_layers``."""

    references: pd.DataFrame
    distance: Distance
    layer: str
    bank: SignatureBank | None = None
    bank_layers: tuple[str, ...] = ()

    @property
    def groups(self) -> list[str]:
        """The final groups it chooses from, in the references' order."""
        return list(dict.fromkeys(self.references.group))

    def choose(self, signature: Signature) -> tuple[pd.DataFrame, GGD | None]:
        """Every group's divergence (smallest first) and the input's GGD at the method's layer
        (None where nothing read it)."""
        fit = signature[self.layer] if self.layer in signature else None
        if self.bank is not None:
            return self.bank.group_distances(signature.vector(self.bank_layers)), fit
        return divergences(self.references, fit, self.distance.name), fit


@dataclass(frozen=True)
class Judge:
    """Step 4: ``statistics`` (fitted :class:`~grids.selection.statistics.Statistic` by name, every one
    scored by :meth:`scores`); ``statistic`` names the one whose ``threshold`` sets
    ``in_distribution`` (None: the choice's own distance against ``threshold``). ``drop_fit``: the
    report's ``score, drop`` knots for that statistic, for the expected drop."""

    statistics: dict[str, Statistic]
    statistic: str | None
    threshold: float
    drop_fit: pd.DataFrame | None = None

    def scores(self, signature: Signature, group: str) -> dict[str, float]:
        """Every fitted statistic's score of the input against ``group``."""
        return {name: statistic.score(signature, group) for name, statistic in self.statistics.items()}

    def score(self, signature: Signature, group: str, distance: float) -> float:
        return self.statistics[self.statistic].score(signature, group) if self.statistic else distance

    def expected_drop(self, score: float) -> float | None:
        return None if self.drop_fit is None else float(predict_drop(self.drop_fit, score))


@dataclass(frozen=True)
class GainPredictor:
    """Step 5: the expected gain of the chosen model (:class:`~grids.selection.gain.GainModel`) over
    the signature at ``layers``."""

    model: GainModel
    layers: tuple[str, ...]

    def predict(self, signature: Signature, group: str) -> tuple[float, float, float]:
        """``(expected, low, high)`` gain over the input (dB) of ``group``'s model; the identity's
        is 0 exactly (it returns the input as it is)."""
        if group == IDENTITY_GROUP:
            return 0.0, 0.0, 0.0
        return self.model.predict(signature.vector(self.layers))


@dataclass(frozen=True)
class MemberGains:
    """What each final group's model gains over the input per member (dB, its export's ``gains``,
    on the grouping test set), and ``grouping.min_learned_gain``: below it, by the rule of
    :mod:`grids.learning`, the model did not learn that member."""

    gains: dict[str, dict[str, float]]
    min_learned_gain: float

    def not_learned(self, group: str) -> dict[str, float]:
        """The members ``group``'s model did not learn (or ends below the input on), with their gains."""
        return {m: g for m, g in self.gains.get(group, {}).items() if learning(g, self.min_learned_gain) != LEARNED}


@dataclass(frozen=True)
class Selector:
    """Chooses a final group for an image and judges whether its model will cope (module doc);
    ``members``: what each group's model learned, to name a member it did not."""

    recipe: SignatureRecipe
    choice: GroupChoice
    judge: Judge
    gain: GainPredictor | None = None
    members: MemberGains | None = None

    @property
    def device(self):
        return self.recipe.device

    @property
    def threshold(self) -> float:
        return self.judge.threshold

    @property
    def statistic(self) -> str | None:
        return self.judge.statistic

    def signature(self, image: np.ndarray) -> Signature:
        return self.recipe.of(image)

    def select(self, image: np.ndarray) -> Selection:
        signature = self.signature(image)
        table, fit = self.choice.choose(signature)
        best = table.iloc[0]
        score = self.judge.score(signature, str(best.group), float(best.distance))
        gain = (None,) * 3 if self.gain is None else self.gain.predict(signature, str(best.group))
        return Selection(
            group=str(best.group),
            distance=float(best.distance),
            in_distribution=bool(score <= self.judge.threshold),
            divergences=table,
            alpha=fit.alpha if fit else float("nan"),
            sigma=fit.sigma if fit else float("nan"),
            statistic=self.judge.statistic or "",
            score=score,
            expected_drop=self.judge.expected_drop(score),
            expected_gain=gain[0],
            gain_low=gain[1],
            gain_high=gain[2],
            not_learned=self.members.not_learned(str(best.group)) if self.members else {},
        )


def signature_recipe(
    features: dict, descriptor: str | None, seed: int, device: str, layers: set[str], method: bool
) -> SignatureRecipe:
    """The recipe of ``features`` with its descriptor loaded on ``device`` (None for SIFT), reading
    ``layers`` (sorted) and the method's own layer where ``method``."""
    from ..descriptor import load_descriptor
    from ..stage import pick_device

    device = pick_device(device)
    model = load_descriptor(descriptor, device) if reads_descriptor(features) else None
    return SignatureRecipe(
        features=features, model=model, seed=seed, device=device, layers=tuple(sorted(layers)), method=method
    )


def distance_selector(
    references: pd.DataFrame,
    features: dict,
    descriptor: str | None,
    threshold: float | None = None,
    seed: int = 0,
    device: str = "auto",
) -> Selector:
    """A selector judged by its choice's own distance alone: in distribution up to ``threshold``
    (default: the distance's own, :data:`grids.ggd.PAPER_THRESHOLD`); no statistic, no gain."""
    distance = get_distance(features["distance"])
    judge = Judge(statistics={}, statistic=None, threshold=distance.threshold if threshold is None else threshold)
    choice = GroupChoice(references=references, distance=distance, layer=method_layer(features))
    recipe = signature_recipe(features, descriptor, seed, device, layers=set(), method=True)
    return Selector(recipe=recipe, choice=choice, judge=judge)


def load_results(
    results: str | Path,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(ggd, groups, references, reference_gains, drop_fit)`` tables of a built workflow
    (``drop_fit`` None until the selection report has run), with a message naming the target to build."""
    results = Path(results)
    needed = {
        results / "similarity" / "ggd.parquet": "similarity_matrix",
        results / "final" / "groups.parquet": "final_models",
        results / "selection" / "references.parquet": "final_models",
        results / "selection" / "reference_gains.parquet": "final_models",
    }
    for path, target in needed.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: build it first with `snakemake --cores all {target}`")
    drop_fit = results / "selection" / "drop_fit.parquet"
    return (
        *(pd.read_parquet(path) for path in needed),
        pd.read_parquet(drop_fit) if drop_fit.is_file() else None,
    )


def build_references(
    reference: str,
    ggd: pd.DataFrame,
    groups: pd.DataFrame,
    references: pd.DataFrame,
    features: dict,
    descriptor_sha: str | None,
    image_features: dict | None = None,
) -> pd.DataFrame:
    """The selector's ``group, alpha, sigma`` rows for ``selection.reference``, after checking that
    the stored fits used the config's features (``features``: the similarity's, ``image_features``:
    the signatures', see :func:`selection_features`) and descriptor."""
    check_features(ggd, features, descriptor_sha)
    image_features = image_features or features
    table = "results/selection/references.parquet"
    check_features(references, image_features, descriptor_sha, table, "final_models")
    if reference == "sets":
        return group_ggds(ggd, groups)
    return image_references(references, groups, image_features)


def statistic_layers(features: dict, selection: dict) -> list[str]:
    """The layers of the signature space (``knn``, ``mahalanobis``, the ``signature`` choice)."""
    return signature_layers(features, selection["layers"]) if not reads_descriptor(features) else selection["layers"]


def fit_statistics(
    selection: dict,
    features: dict,
    ggd: pd.DataFrame,
    groups: pd.DataFrame,
    references: pd.DataFrame,
    seed: int,
    names: list[str] | None = None,
    gains: pd.DataFrame | None = None,
) -> dict[str, Statistic]:
    """The statistics ``names`` (default: every one of :data:`grids.selection.statistics.STATISTICS`, ``gain`` only
    with the references' ``gains``), fitted on the references; ``selection.threshold`` (when set)
    overrides the default statistic's threshold only."""
    from .statistics import STATISTICS

    layers = statistic_layers(features, selection)
    group_of = dict(zip(groups.degradation, groups.group))
    held = set(references.layer)
    missing = [layer for layer in expand_layers(signature_layers(features, layers)) if layer not in held]
    if missing:
        raise ValueError(
            f"results/selection/references.parquet has no signature at layers {missing} (selection.layers "
            "changed since it was built?): rebuild `final_models`"
        )
    fitted_on = References(
        rows=references,
        group_of=group_of,
        layer=method_layer(features),
        layers=layers,
        set_ggds=group_ggds(ggd, groups),
        alpha=selection["alpha"],
        seed=seed,
        distance=features["distance"],
        gains=gains,
        min_gain=selection["min_helpful_gain"],
    )
    if names is None:
        names = [name for name in STATISTICS if name != "gain" or gains is not None]
    return {
        name: fit_statistic(name, fitted_on, selection["threshold"] if name == selection["statistic"] else None)
        for name in names
    }


def build_selector(
    selection: dict,
    features: dict,
    ggd: pd.DataFrame,
    groups: pd.DataFrame,
    references: pd.DataFrame,
    descriptor: str | None,
    seed: int,
    device: str = "auto",
    descriptor_sha: str | None = None,
    drop_fit: pd.DataFrame | None = None,
    every_statistic: bool = False,
    gains: pd.DataFrame | None = None,
) -> Selector:
    """The selector of a config's ``selection`` section over a built workflow's tables
    (``features``: the config's, the similarity's). It scores ``selection.statistic`` alone, or
    with ``every_statistic`` all of them (the report's benchmark); with the references' ``gains``
    (table ``selection_reference_gains``) it also gives the expected gain. It chooses among the
    final ``groups`` and the identity (:func:`candidates`)."""
    groups = candidates(groups)
    image_features = selection_features(features, selection)
    table = build_references(selection["reference"], ggd, groups, references, features, descriptor_sha, image_features)
    # `grids select` fits the one statistic it reports; the report benchmarks all of them
    names = None if every_statistic else [selection["statistic"]]
    statistics = fit_statistics(selection, features, ggd, groups, references, seed, names, gains)
    layers = tuple(statistic_layers(features, selection))
    group_of = dict(zip(groups.degradation, groups.group))
    keys, z = signature_table(references[references.degradation.isin(group_of)], layers)
    bank = None
    if selection["reference"] == "signature":  # every reference image, in the knn statistic's space
        bank = SignatureBank.fit(z, keys.degradation.map(group_of).to_numpy())
    choice = GroupChoice(
        references=table,
        distance=get_distance(features["distance"]),
        layer=method_layer(image_features),
        bank=bank,
        bank_layers=layers if bank is not None else (),
    )
    gain_model = statistics["gain"].model if "gain" in statistics else None  # fitted once, for both
    if gain_model is None and gains is not None:
        gain_model = fit_gain_model(keys, z, gains, selection["alpha"])
    gain = None if gain_model is None else GainPredictor(model=gain_model, layers=layers)
    statistic = selection["statistic"]
    if drop_fit is not None:  # the report's knots for this statistic (none: no expected drop)
        drop_fit = drop_fit[drop_fit.statistic == statistic]
        drop_fit = drop_fit if len(drop_fit) else None
    judge = Judge(
        statistics=statistics, statistic=statistic, threshold=statistics[statistic].threshold, drop_fit=drop_fit
    )
    read = {layer for s in statistics.values() for layer in s.layers} | {
        *choice.bank_layers,
        *(gain.layers if gain else ()),
    }
    # The method's GGD (the deepest layer, the costliest) only when something reads it.
    method = choice.bank is None or any(s.reads_method_layer for s in statistics.values())
    recipe = signature_recipe(image_features, descriptor, seed, device, layers=read, method=method)
    return Selector(recipe=recipe, choice=choice, judge=judge, gain=gain)


def selector_from_config(
    config: dict, results: str | Path = "results", threshold: float | None = None, device: str = "auto"
) -> Selector:
    from ..config import descriptor_weights
    from ..grouping.export import exported_gains
    from ..io import sha256_file

    ggd, groups, references, gains, drop_fit = load_results(results)
    features = config["features"]
    weights = descriptor_weights(config) if reads_descriptor(features) else None
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(
            f"descriptor weights {weights} not found (descriptor.weights: train needs "
            "`snakemake results/descriptor/msrresnet_x4.pth`)"
        )
    selection = dict(config["selection"])
    if threshold is not None:
        selection["threshold"] = threshold
    sha = sha256_file(weights) if weights else None
    selector = build_selector(
        selection, features, ggd, groups, references, weights, config["data_seed"], device, sha, drop_fit, gains=gains
    )
    exported = exported_gains(Path(results) / "final" / "models", list(dict.fromkeys(groups.group)))
    return replace(selector, members=MemberGains(exported, config["grouping"]["min_learned_gain"]))


def add_selector_arguments(parser) -> None:
    """The benchmarks' options that build the selector from a built workflow's tables
    (:func:`selector_from_arguments`)."""
    parser.add_argument("--ggd", required=True, help="results/similarity/ggd.parquet")
    parser.add_argument("--groups", required=True, help="results/final/groups.parquet (the final groups)")
    parser.add_argument("--references", required=True, help="references.parquet (per-image signatures)")
    parser.add_argument("--reference-gains", required=True, help="reference_gains.parquet (their realised gains)")
    parser.add_argument("--descriptor", default="")
    parser.add_argument("--features", required=True, help="the config's features section, JSON")
    parser.add_argument("--selection", required=True, help="the config's selection section, JSON")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")


def selector_from_arguments(
    args, every_statistic: bool = False
) -> tuple[Selector, dict, dict, pd.DataFrame, pd.DataFrame]:
    """``(selector, features, selection, groups, references)`` from :func:`add_selector_arguments`'
    options (and ``args.device``), torch limited to ``args.threads``; the tables as read, once."""
    import json

    from ..config import config_section

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    features = config_section("features", json.loads(args.features))
    selection = config_section("selection", json.loads(args.selection))
    ggd, groups, references, gains = (
        pd.read_parquet(path) for path in (args.ggd, args.groups, args.references, args.reference_gains)
    )
    selector = build_selector(
        selection,
        features,
        ggd,
        groups,
        references,
        args.descriptor or None,
        args.seed,
        args.device,
        every_statistic=every_statistic,
        gains=gains,
    )
    return selector, features, selection, groups, references
