"""Adaptive model selection and generalisation prediction (docs/method.md §7).

This module is the selector that ``grids select`` and ``grids restore`` run, and the stage that
fits its references; it imports no report code (tests/test_layout.py). The selection report is
:mod:`grids.selection_report`, the out-of-distribution statistics :mod:`grids.ood`.

For an input image of unknown degradation:

1. Self-augmentation: ``selection.n_patches`` (default: ``features.n_patches``) random
   ``patch_size``² crops of the image, each flipped horizontally and/or vertically at random
   (seeded by ``seed``, so one image always gets the same patches). Crops overlap as much as
   needed: a 64 px image still yields 256 patches. An image smaller than the patch size on a side
   is first padded by mirror reflection up to the patch size (a warning says so).
2. The signature: one descriptor pass, then at every layer of ``selection.layers`` (and at
   ``features.layer`` when the choice or a statistic reads it) PCA fitted on those patches alone
   and the GGD fit, the similarity stage's recipe (:func:`grids.features.features_ggd`).
3. The group (``selection.reference``), against references fitted the same way on every image of
   each final member's degraded set (``results/selection/references.parquet``):

   * ``signature`` (default): the group of the nearest reference image in the signature space;
   * ``images``: the group of the nearest reference image's GGD at ``features.layer``, the
     divergence being ``KL(GGD(reference) || GGD(input))``;
   * ``sets`` (the paper's wording): the group whose mean set GGD (the means of its members'
     (alpha, sigma) from ``results/similarity/ggd.parquet``) is closest.

   Divergences are the similarity matrix's distance (``features.distance``, :mod:`grids.ggd`).
4. Without running any model, ``selection.statistic`` (:mod:`grids.ood`) scores the input; above
   its threshold it is out of distribution. The report's monotone fit of the drop on the score
   (``results/selection/drop_fit.parquet``) gives the expected drop.
5. The expected gain of the chosen model over the input, with an interval (:mod:`grids.gain`):
   the realised gains of the nearest reference images in the signature space
   (``results/selection/reference_gains.parquet``).

    python -m grids.selection references --set jpeg --manifest results/degraded/jpeg/manifest.parquet \
        --descriptor W --features JSON --layers conv_first RB16 --n-patches 64 --seed S \
        --out results/selection/references/jpeg.parquet

``references`` (rule ``selection_reference_set``, one job per degradation): the per-image
signatures of one degraded set, with the feature settings and descriptor they were fitted with.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import io, tables
from .config import config_section
from .gain import GainModel, fit_gain_model
from .ggd import GGD, get_distance
from .ood import References, SignatureBank, Statistic, fit_statistic, predict_drop, signature_table
from .seeds import rng_for
from .stage import add_per_test_set_argument, add_set_arguments

if TYPE_CHECKING:  # torch, which grids.features imports, is loaded when a signature is computed
    from .features import Signature

FEATURE_COLUMNS = {
    "n_patches": "n_patches",
    "patch_size": "patch_size",
    "pca_components": "pca_components",
    "kind": "feature_kind",
}


def self_augmented_patches(image: np.ndarray, n: int, size: int, seed: int = 0) -> np.ndarray:
    """``uint8 [n, size, size, 3]`` random crops of ``image``, each randomly flipped (see module doc)."""
    h, w = image.shape[:2]
    if min(h, w) < size:
        warnings.warn(
            f"image of {w}x{h} px is smaller than the {size} px patches: padded by mirror reflection", stacklevel=2
        )
        ph, pw = max(size - h, 0), max(size - w, 0)
        image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")
        h, w = image.shape[:2]
    rng = rng_for(seed, "self-augment", n, size)
    tops = rng.integers(0, h - size + 1, n)
    lefts = rng.integers(0, w - size + 1, n)
    flips = rng.integers(0, 4, n)  # bit 0: left-right, bit 1: up-down
    patches = np.empty((n, size, size, 3), np.uint8)
    for k in range(n):
        patch = image[tops[k] : tops[k] + size, lefts[k] : lefts[k] + size]
        if flips[k] & 1:
            patch = patch[:, ::-1]
        if flips[k] & 2:
            patch = patch[::-1]
        patches[k] = patch
    return patches


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
    gain_low: float | None = None  # its interval (selection.alpha, grids/gain.py)
    gain_high: float | None = None

    def as_dict(self) -> dict:
        """The selection as JSON values: a number that is not finite is None (JSON has no NaN or
        Infinity; an unbounded end of the gain interval, where the conformal rank exceeds the
        references, is null)."""
        return {
            "group": self.group,
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
        }


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float when it is a finite number, else None (JSON's null)."""
    return float(value) if value is not None and math.isfinite(value) else None


def flagged(in_distribution, expected_gain, min_gain: float):
    """What ``selection.fallback`` takes over (scalars or arrays): an input the statistic flags, or
    one whose chosen model is expected to gain less than ``min_gain`` dB (None/NaN: not known low)."""
    low_gain = np.asarray(expected_gain, dtype=np.float64) < min_gain
    return ~np.asarray(in_distribution, dtype=bool) | low_gain


def selection_features(features: dict, selection: dict) -> dict:
    """The ``features`` an image's signature is fitted with: the similarity's, with
    ``selection.n_patches`` patches when set (one image needs fewer than a whole set)."""
    n = selection.get("n_patches")
    return features if n is None else {**features, "n_patches": n}


def method_layer(features: dict) -> str:
    """The signature key of the similarity's own features: ``features.layer``, or ``sift``."""
    return "sift" if features["kind"] == "sift" else features["layer"]


def signature_layers(features: dict, layers: list[str] = (), method: bool = True) -> list[str]:
    """The layers a signature holds: ``layers``, then the method's own unless ``method`` is False
    (no repeats; SIFT: its own only)."""
    if features["kind"] == "sift":
        return ["sift"]
    return list(dict.fromkeys([*layers, features["layer"]] if method else layers))


def image_signature(
    image: np.ndarray, features: dict, model, seed: int, device, layers: list[str] = (), method: bool = True
) -> Signature:
    """The :class:`grids.features.Signature` of one image: self-augmented patches, one descriptor
    pass for every layer of :func:`signature_layers`, then per layer the similarity's PCA + GGD fit.
    SIFT: one entry."""
    import torch

    from .features import Signature, descriptor_layer_features, features_ggd, sift_features

    if features["kind"] == "sift":
        maps = {"sift": torch.from_numpy(sift_features([image], features["n_patches"], seed))}
    else:
        patches = self_augmented_patches(image, features["n_patches"], features["patch_size"], seed)
        maps = descriptor_layer_features(model, patches, signature_layers(features, layers, method), device)
    signature = {}
    for layer in list(maps):
        x = maps.pop(layer)  # freed after its fit: one layer's features in memory at a time
        signature[layer] = features_ggd(x, features)[0]
        del x
    return Signature(signature)


def reference_table(
    name: str,
    manifest: pd.DataFrame,
    descriptor: str | None,
    features: dict,
    seed: int,
    device: str = "auto",
    layers: list[str] = (),
) -> pd.DataFrame:
    """Stage ``selection_references``: the signature (one row per layer) of every image of one
    degraded set, and the seconds it took."""
    import time

    from tqdm import tqdm

    from .descriptor import load_descriptor, sha256_file
    from .stage import pick_device

    device = pick_device(device)
    model, sha = None, ""
    if features["kind"] == "descriptor":
        model, sha = load_descriptor(descriptor, device), sha256_file(descriptor)
    rows = []
    for row in tqdm(manifest.itertuples(), total=len(manifest), desc=f"references {name}", unit="img"):
        image = io.load_png(row.path)
        start = time.perf_counter()
        signature = image_signature(image, features, model, seed, device, layers)
        seconds = time.perf_counter() - start
        for layer in signature:
            rows.append(
                [
                    name,
                    row.image_id,
                    layer,
                    signature[layer].alpha,
                    signature[layer].sigma,
                    features["n_patches"],
                    features["patch_size"],
                    features["pca_components"],
                    features["kind"],
                    sha,
                    seconds,
                ]
            )
    return pd.DataFrame(rows, columns=tables.columns("selection_references"))


def read_signatures(values: list[list[str]]) -> dict[tuple[str, str, str], tuple[Signature, float]]:
    """``--signatures NAME FILE...`` values (per test set, its :func:`reference_table` files) ->
    ``{(test_set, degradation, image): (signature, seconds)}``: the degraded test images'
    signatures, computed once by their own jobs (rule ``test_signatures``) for every reader."""
    from .features import Signature

    found = {}
    for name, *paths in values:
        for path in paths:
            table = pd.read_parquet(path)
            for (degradation, image), rows in table.groupby(["degradation", "image"], sort=False):
                found[(name, str(degradation), str(image))] = (Signature.from_rows(rows), float(rows.seconds.iloc[0]))
    return found


def add_signatures_argument(parser) -> None:
    """``--signatures NAME FILE...``, repeated per test set (:func:`read_signatures`)."""
    help_text = "a test set's name, then its degraded images' signature tables (repeat per set)"
    add_per_test_set_argument(parser, "--signatures", "FILE", help_text)


class Selector:
    """Chooses a final group for an image and judges whether its model will cope (module doc).

    ``references``: ``group, alpha, sigma`` rows (:func:`image_references` or :func:`group_ggds`)
    that choose the group. ``statistics``: fitted :class:`grids.ood.Statistic` by name, every
    one scored by :meth:`judge`; ``statistic`` names the one whose threshold sets
    ``in_distribution`` (None: the selection distance against ``threshold``, by default the
    distance's own, :data:`grids.ggd.PAPER_THRESHOLD`). ``drop_fit``: the report's ``score,
    drop`` knots for that statistic, for the expected drop. ``gain_model``: the expected gain of
    the chosen model (:class:`grids.gain.GainModel`) over the signature at ``gain_layers``.
    """

    def __init__(
        self,
        references: pd.DataFrame,
        features: dict,
        descriptor: str | None,
        threshold: float | None = None,
        seed: int = 0,
        device: str = "auto",
        statistics: dict[str, Statistic] | None = None,
        statistic: str | None = None,
        drop_fit: pd.DataFrame | None = None,
        bank: SignatureBank | None = None,
        bank_layers: list[str] = (),
        gain_model: GainModel | None = None,
        gain_layers: list[str] = (),
    ):
        from .descriptor import load_descriptor
        from .stage import pick_device

        self.references, self.features, self.seed = references, features, seed
        self.statistics, self.statistic, self.drop_fit = statistics or {}, statistic, drop_fit
        self.bank, self.bank_layers = bank, list(bank_layers)
        self.gain_model, self.gain_layers = gain_model, list(gain_layers)
        if statistic is not None and statistic not in self.statistics:
            raise ValueError(f"statistic {statistic!r} is not among the fitted ones {sorted(self.statistics)}")
        self.distance = get_distance(features["distance"])
        if statistic:
            self.threshold = self.statistics[statistic].threshold
        else:
            self.threshold = self.distance.threshold if threshold is None else threshold
        read = {layer for s in self.statistics.values() for layer in s.layers} | {*self.bank_layers, *self.gain_layers}
        self.layers = sorted(read)
        # The method's GGD (the deepest layer, the costliest) only when something reads it.
        self.method = self.bank is None or any(s.reads_method_layer for s in self.statistics.values())
        self.device = pick_device(device)
        self.model = load_descriptor(descriptor, self.device) if features["kind"] == "descriptor" else None

    def signature(self, image: np.ndarray) -> Signature:
        return image_signature(image, self.features, self.model, self.seed, self.device, self.layers, self.method)

    def choose(self, signature: Signature) -> tuple[pd.DataFrame, GGD | None]:
        """Every group's divergence (smallest first) and the input's GGD at the method's layer
        (None where nothing read it); with a signature ``bank`` the divergence is the distance to
        the group's nearest reference in the signature space."""
        layer = method_layer(self.features)
        fit = signature[layer] if layer in signature else None
        if self.bank is not None:
            return self.bank.group_distances(signature.vector(self.bank_layers)), fit
        return divergences(self.references, fit, self.distance.name), fit

    def judge(self, signature: Signature, group: str) -> dict[str, float]:
        """Every fitted statistic's score of the input against ``group``."""
        return {name: statistic.score(signature, group) for name, statistic in self.statistics.items()}

    def select(self, image: np.ndarray) -> Selection:
        signature = self.signature(image)
        table, fit = self.choose(signature)
        best = table.iloc[0]
        score = float(best.distance)
        if self.statistic:
            score = self.statistics[self.statistic].score(signature, str(best.group))
        drop = None if self.drop_fit is None else float(predict_drop(self.drop_fit, score))
        gain = (None,) * 3 if self.gain_model is None else self.expected_gain(signature)
        return Selection(
            str(best.group),
            float(best.distance),
            bool(score <= self.threshold),
            table,
            fit.alpha if fit else float("nan"),
            fit.sigma if fit else float("nan"),
            self.statistic or "",
            score,
            drop,
            *gain,
        )

    def expected_gain(self, signature: Signature) -> tuple[float, float, float]:
        """``(expected, low, high)`` gain of the chosen model over the input (dB, :mod:`grids.gain`)."""
        return self.gain_model.predict(signature.vector(self.gain_layers))


def check_features(
    ggd: pd.DataFrame,
    features: dict,
    descriptor_sha: str | None,
    table: str = "results/similarity/ggd.parquet",
    target: str = "similarity_matrix",
) -> None:
    """The config's features (and descriptor) must be those ``table``'s GGDs were fitted with."""
    row = ggd.iloc[0]
    for key, column in FEATURE_COLUMNS.items():
        stored = row[column].item() if hasattr(row[column], "item") else row[column]  # numpy -> Python
        if stored != features[key]:
            raise ValueError(
                f"config key features.{key} is {features[key]!r} but {table} was fitted with "
                f"{stored!r}: pass the config the results were built with, or rebuild `{target}`"
            )
    if descriptor_sha is not None and row.descriptor_sha256 and row.descriptor_sha256 != descriptor_sha:
        raise ValueError(
            f"the descriptor weights changed since {table} was fitted: rebuild `similarity_matrix` and `final_models`"
        )


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
    return signature_layers(features, selection["layers"]) if features["kind"] == "sift" else selection["layers"]


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
    """The statistics ``names`` (default: every one of :data:`grids.ood.STATISTICS`, ``gain`` only
    with the references' ``gains``), fitted on the references; ``selection.threshold`` (when set)
    overrides the default statistic's threshold only."""
    from .ood import STATISTICS

    layers = statistic_layers(features, selection)
    group_of = dict(zip(groups.degradation, groups.group))
    missing = [layer for layer in signature_layers(features, layers) if layer not in set(references.layer)]
    if missing:
        raise ValueError(
            f"results/selection/references.parquet has no signature at layers {missing} (selection.layers "
            "changed since it was built?): rebuild `final_models`"
        )
    fitted_on = References(
        references,
        group_of,
        method_layer(features),
        layers,
        group_ggds(ggd, groups),
        selection["alpha"],
        seed,
        features["distance"],
        gains,
        selection["min_gain"],
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
    (table ``selection_reference_gains``) it also gives the expected gain."""
    image_features = selection_features(features, selection)
    table = build_references(selection["reference"], ggd, groups, references, features, descriptor_sha, image_features)
    # `grids select` fits the one statistic it reports; the report benchmarks all of them
    names = None if every_statistic else [selection["statistic"]]
    statistics = fit_statistics(selection, features, ggd, groups, references, seed, names, gains)
    bank, layers = None, statistic_layers(features, selection)
    group_of = dict(zip(groups.degradation, groups.group))
    keys, z = signature_table(references[references.degradation.isin(group_of)], layers)
    if selection["reference"] == "signature":  # every reference image, in the knn statistic's space
        bank = SignatureBank.fit(z, keys.degradation.map(group_of).to_numpy())
    gain_model = statistics["gain"].model if "gain" in statistics else None  # fitted once, for both
    if gain_model is None and gains is not None:
        gain_model = fit_gain_model(keys, z, gains, selection["alpha"])
    if drop_fit is not None:
        drop_fit = drop_fit[drop_fit.statistic == selection["statistic"]]
    return Selector(
        table,
        image_features,
        descriptor,
        seed=seed,
        device=device,
        statistics=statistics,
        statistic=selection["statistic"],
        drop_fit=drop_fit if drop_fit is not None and len(drop_fit) else None,
        bank=bank,
        bank_layers=layers if bank is not None else (),
        gain_model=gain_model,
        gain_layers=layers if gain_model is not None else (),
    )


def selector_from_config(
    config: dict, results: str | Path = "results", threshold: float | None = None, device: str = "auto"
) -> Selector:
    from .config import descriptor_weights
    from .descriptor import sha256_file

    ggd, groups, references, gains, drop_fit = load_results(results)
    features = config["features"]
    weights = descriptor_weights(config) if features["kind"] == "descriptor" else None
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(
            f"descriptor weights {weights} not found (descriptor.weights: train needs "
            "`snakemake results/descriptor/msrresnet_x4.pth`)"
        )
    selection = dict(config["selection"])
    if threshold is not None:
        selection["threshold"] = threshold
    sha = sha256_file(weights) if weights else None
    return build_selector(
        selection, features, ggd, groups, references, weights, config["data_seed"], device, sha, drop_fit, gains=gains
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.selection", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("references", help="per-image signatures of one degraded set")
    add_set_arguments(p)
    p.add_argument("--layers", nargs="*", default=[], help="selection.layers (features.layer is always added)")
    p.add_argument("--n-patches", type=int, help="selection.n_patches (default: features.n_patches)")
    p = sub.add_parser("combine", help="concatenate per-set reference tables")
    p.add_argument("--references", nargs="+", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "combine":
        tables.write(io.read_parquets(args.references), "selection_references", args.out)
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    features = config_section("features", json.loads(args.features))
    table = reference_table(
        args.set,
        io.read_manifest(args.manifest),
        args.descriptor or None,
        selection_features(features, {"n_patches": args.n_patches}),
        args.seed,
        args.device,
        args.layers,
    )
    tables.write(table, "selection_references", args.out)
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
