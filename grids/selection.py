"""Adaptive model selection and generalisation prediction (docs/method.md §7).

For an input image of unknown degradation:

1. Self-augmentation: ``features.n_patches`` random ``patch_size``² crops of the image, each
   flipped horizontally and/or vertically at random (seeded by ``seed``, so one image always gets
   the same patches). Crops overlap as much as needed: a 64 px image still yields 256 patches.
   An image smaller than the patch size on a side is first padded by mirror reflection up to
   the patch size (the fit then partly sees mirrored content; a warning says so).
2. Descriptor features, PCA fitted on those patches alone, GGD fit: exactly the similarity
   stage's recipe (:func:`grids.features.features_ggd`) with the same ``features`` config.
3. References per final group C_k (``selection.reference``):

   * ``images`` (default): every image of each member's degraded set gets its GGD by steps 1-2,
     exactly like an input (``results/selection/references.parquet``); the group's divergence is
     the smallest ``KL(GGD(reference) || GGD(input))`` over its members' images (nearest
     neighbour). Reference and input then come from one image each, so their statistics compare.
   * ``sets`` (the paper's wording): one GGD per group, the means of its members' (alpha, sigma)
     from the similarity stage (``results/similarity/ggd.parquet``, fitted on whole sets); the
     divergence is ``KL(GGD(C_k) || GGD(input))``.

   Divergences are reported on the distance scale ``log10(KL + 1e-5) + 5`` like the similarity
   matrix.
4. The group of smallest divergence is chosen. Its divergence predicts, without running the
   model, whether the input is like the training degradations: above ``selection.threshold`` the
   input is out of distribution. Its default (null) is, for ``images``, the 95th percentile of
   each reference image's distance to its nearest other reference of the same group (so about
   5 % of inputs of trained degradations are flagged), and for ``sets`` the paper's 4.

    python -m grids.selection report --ggd G --groups F --eval E... --test-set NAME CLEAN DEGRADED... \
        --descriptor W --features JSON --threshold T --seed S --divergences D.parquet --accuracy A.parquet \
        --prediction P.parquet --ood O.parquet --summary summary.md --confusion C.png --scatter S.png

    python -m grids.selection references --set jpeg --manifest results/degraded/jpeg/manifest.parquet \
        --descriptor W --features JSON --seed S --out results/selection/references/jpeg.parquet

``references`` (rule ``selection_references``, one job per degradation): the per-image GGDs of
one degraded set, with the feature settings and descriptor they were fitted with.

``report`` (rule ``selection_report``) selects a group for every degraded test image and writes
(columns: the ``selection_*`` tables of :mod:`grids.tables`):

* ``divergences.parquet``: every image's divergence to every group;
* ``accuracy.parquet``: the group chosen per image, and the PSNR of the chosen group's, the true
  group's and the degradation's single-task model on that image, from the evaluation tables (no
  model is run);
* ``prediction.parquet``: rank correlation of the chosen group's divergence with the PSNR obtained
  (``psnr``) and with the loss against the degradation's own single-task model (``drop``);
* ``ood.parquet``: out-of-distribution detection on the ``selection.unseen`` degradations (applied
  to the test sets, never trained on; their rows have ``seen`` false and no true group);
* ``confusion.png``, ``prediction.png`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, tables
from .ggd import GGD, kl_divergence, log_kl_distance
from .seeds import rng_for
from .similarity import add_set_arguments
from .stage import add_test_set_argument, test_set_manifests

PAPER_THRESHOLD = 4.0  # the paper's haze example; on the scale of set-level GGDs
FEATURE_COLUMNS = {"n_patches": "n_patches", "patch_size": "patch_size", "pca_components": "pca_components",
                   "kind": "feature_kind"}


def self_augmented_patches(image: np.ndarray, n: int, size: int, seed: int = 0) -> np.ndarray:
    """``uint8 [n, size, size, 3]`` random crops of ``image``, each randomly flipped (see module doc)."""
    h, w = image.shape[:2]
    if min(h, w) < size:
        warnings.warn(f"image of {w}x{h} px is smaller than the {size} px patches: padded by mirror reflection",
                      stacklevel=2)
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


def image_references(references: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """``group, alpha, sigma``: one row per reference image of each final group's members."""
    missing = sorted(set(groups.degradation) - set(references.degradation))
    if missing:
        raise ValueError(f"references.parquet has no images of {missing}: rebuild final_models")
    group_of = dict(zip(groups.degradation, groups.group))
    table = references[references.degradation.isin(group_of)]
    return pd.DataFrame({"group": table.degradation.map(group_of), "alpha": table.alpha, "sigma": table.sigma}).reset_index(drop=True)


def divergences(references: pd.DataFrame, fit: GGD) -> pd.DataFrame:
    """``group, kl, distance``: per group the smallest ``KL(reference || input)`` over its reference
    rows (one row per group for ``sets``, one per image for ``images``), smallest distance first."""
    kl = np.atleast_1d(kl_divergence(references.alpha.to_numpy(), references.sigma.to_numpy(), fit.alpha, fit.sigma))
    table = pd.DataFrame({"group": references.group.to_numpy(), "kl": np.asarray(kl, dtype=np.float64)})
    table = table.groupby("group", sort=False).kl.min().reset_index()
    table["distance"] = np.atleast_1d(log_kl_distance(table.kl.to_numpy()))
    return table.sort_values(["distance", "group"], kind="stable").reset_index(drop=True)


def leave_one_out_threshold(references: pd.DataFrame, quantile: float = 0.95) -> float:
    """The ``quantile`` of each reference's distance to the nearest *other* reference of its group:
    how far an input of a trained degradation typically lands from its group (groups with a
    single reference row have no such distance and are skipped)."""
    nearest = []
    for _, part in references.groupby("group", sort=False):
        if len(part) < 2:
            continue
        a, s = part.alpha.to_numpy(), part.sigma.to_numpy()
        d = np.asarray(log_kl_distance(np.asarray(kl_divergence(a[:, None], s[:, None], a[None, :], s[None, :]), float)), float)
        np.fill_diagonal(d, np.inf)
        nearest.extend(d.min(axis=0))  # column j: distance of the others (as references) to image j
    if not nearest:
        raise ValueError("no group has two reference images: set selection.threshold explicitly")
    return float(np.quantile(nearest, quantile))


def resolve_threshold(threshold: float | None, reference: str, references: pd.DataFrame) -> float:
    """``selection.threshold``, or its default for the reference kind (see the module doc)."""
    if threshold is not None:
        return float(threshold)
    return leave_one_out_threshold(references) if reference == "images" else PAPER_THRESHOLD


@dataclass
class Selection:
    group: str
    distance: float
    in_distribution: bool
    divergences: pd.DataFrame
    alpha: float
    sigma: float

    def as_dict(self) -> dict:
        return {
            "group": self.group, "distance": self.distance, "in_distribution": self.in_distribution,
            "input_ggd": {"alpha": self.alpha, "sigma": self.sigma},
            "divergences": {r.group: r.distance for r in self.divergences.itertuples()},
        }


def image_ggd(image: np.ndarray, features: dict, model, seed: int, device) -> GGD:
    """The GGD of one image: self-augmented patches, descriptor features (or SIFT), PCA, fit."""
    import torch

    from .features import descriptor_features, features_ggd, sift_features

    if features["kind"] == "sift":
        x = torch.from_numpy(sift_features([image], features["n_patches"], seed))
    else:
        patches = self_augmented_patches(image, features["n_patches"], features["patch_size"], seed)
        x = descriptor_features(model, patches, features["layer"], device)
    return features_ggd(x, features)[0]


def reference_table(name: str, manifest: pd.DataFrame, descriptor: str | None, features: dict, seed: int,
                    device: str = "auto") -> pd.DataFrame:
    """Stage ``selection_references``: the per-image GGD of every image of one degraded set."""
    from tqdm import tqdm

    from .descriptor import load_descriptor, sha256_file
    from .stage import pick_device

    device = pick_device(device)
    model, sha = None, ""
    if features["kind"] == "descriptor":
        model, sha = load_descriptor(descriptor, device), sha256_file(descriptor)
    rows = []
    for row in tqdm(manifest.itertuples(), total=len(manifest), desc=f"references {name}", unit="img"):
        fit = image_ggd(io.load_png(row.path), features, model, seed, device)
        rows.append([name, row.image_id, fit.alpha, fit.sigma, features["n_patches"], features["patch_size"],
                     features["pca_components"], features["kind"], sha])
    return pd.DataFrame(rows, columns=tables.columns("selection_references"))


class Selector:
    """Chooses a final group for an image (see the module docstring).

    ``references``: ``group, alpha, sigma`` rows (:func:`image_references` or :func:`group_ggds`).
    """

    def __init__(self, references: pd.DataFrame, features: dict, descriptor: str | None, threshold: float = 4.0,
                 seed: int = 0, device: str = "auto"):
        from .descriptor import load_descriptor
        from .stage import pick_device

        self.references, self.features, self.threshold, self.seed = references, features, threshold, seed
        self.device = pick_device(device)
        self.model = load_descriptor(descriptor, self.device) if features["kind"] == "descriptor" else None

    def input_ggd(self, image: np.ndarray) -> GGD:
        return image_ggd(image, self.features, self.model, self.seed, self.device)

    def select(self, image: np.ndarray) -> Selection:
        fit = self.input_ggd(image)
        table = divergences(self.references, fit)
        best = table.iloc[0]
        return Selection(str(best.group), float(best.distance), bool(best.distance <= self.threshold), table,
                         fit.alpha, fit.sigma)


def check_features(ggd: pd.DataFrame, features: dict, descriptor_sha: str | None,
                   table: str = "results/similarity/ggd.parquet", target: str = "similarity_matrix") -> None:
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
        raise ValueError(f"the descriptor weights changed since {table} was fitted: "
                         "rebuild `similarity_matrix` and `final_models`")


def load_results(results: str | Path, reference: str = "sets") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(ggd, groups, references)`` tables of a built workflow (``references`` None unless
    ``reference`` is ``images``), with a message naming the target to build."""
    results = Path(results)
    needed = {results / "similarity" / "ggd.parquet": "similarity_matrix",
              results / "final" / "groups.parquet": "final_models"}
    if reference == "images":
        needed[results / "selection" / "references.parquet"] = "final_models"
    for path, target in needed.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: build it first with `snakemake --cores all {target}`")
    references = pd.read_parquet(results / "selection" / "references.parquet") if reference == "images" else None
    return (pd.read_parquet(results / "similarity" / "ggd.parquet"), pd.read_parquet(results / "final" / "groups.parquet"),
            references)


def build_references(reference: str, ggd: pd.DataFrame, groups: pd.DataFrame, references: pd.DataFrame | None,
                     features: dict, descriptor_sha: str | None) -> pd.DataFrame:
    """The selector's ``group, alpha, sigma`` rows for ``selection.reference``, after checking that
    the stored fits used the config's features and descriptor."""
    check_features(ggd, features, descriptor_sha)
    if reference == "sets":
        return group_ggds(ggd, groups)
    check_features(references, features, descriptor_sha, "results/selection/references.parquet", "final_models")
    return image_references(references, groups)


def selector_from_config(config: dict, results: str | Path = "results", threshold: float | None = None,
                         device: str = "auto") -> Selector:
    from .config import descriptor_weights
    from .descriptor import sha256_file

    reference = config["selection"]["reference"]
    ggd, groups, references = load_results(results, reference)
    features = config["features"]
    weights = descriptor_weights(config) if features["kind"] == "descriptor" else None
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"descriptor weights {weights} not found (descriptor.weights: train needs "
                                "`snakemake results/descriptor/msrresnet_x4.pth`)")
    table = build_references(reference, ggd, groups, references, features, sha256_file(weights) if weights else None)
    limit = resolve_threshold(config["selection"]["threshold"] if threshold is None else threshold, reference, table)
    return Selector(table, features, weights, limit, config["seed"], device)


# --- selection report ----------------------------------------------------------------------------


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def selection_tables(selector: Selector, groups: pd.DataFrame, test_sets: dict[str, tuple[str, dict[str, str]]],
                     evaluation: pd.DataFrame, unseen: list[str] = ()) -> dict[str, pd.DataFrame]:
    """Select a group for every degraded test image; score the choice against the true group and
    the divergence against the PSNR the chosen model obtained (read from ``evaluation``).
    ``unseen`` degradations (no model trained on them) have no true group: they measure whether
    the divergence calls them out of distribution. ``test_sets``: name -> (clean manifest,
    {degradation: degraded manifest}), as :func:`grids.stage.test_set_manifests` reads them."""
    from tqdm import tqdm

    true_group = dict(zip(groups.degradation, groups.group))
    psnr = evaluation.set_index(["trained_on", "test_set", "degradation", "image"]).psnr
    nan = float("nan")
    div_rows, rows = [], []
    for set_name, (_, degraded) in test_sets.items():
        for name in [*groups.degradation, *unseen]:
            if name not in degraded:
                raise ValueError(f"test set {set_name!r}: no degraded manifest given for {name}")
            manifest = pd.read_parquet(degraded[name])
            for row in tqdm(manifest.itertuples(), total=len(manifest), desc=f"{set_name}/{name}", unit="img"):
                choice = selector.select(io.load_png(row.path))
                for d in choice.divergences.itertuples():
                    div_rows.append([set_name, name, row.image_id, d.group, d.kl, d.distance])
                seen = name in true_group
                key = (set_name, name, row.image_id)
                rows.append([
                    set_name, name, row.image_id, seen, true_group.get(name, ""), choice.group,
                    seen and choice.group == true_group[name], choice.distance, choice.in_distribution,
                    psnr[(choice.group, *key)], psnr[(true_group[name], *key)] if seen else nan,
                    psnr[(name, *key)] if seen else nan,
                ])
    accuracy = pd.DataFrame(rows, columns=tables.columns("selection_accuracy"))
    prediction, ood = [], []
    for set_name, part in accuracy.groupby("test_set", sort=False):
        for target, values in (("psnr", part.psnr_chosen), ("drop", part.psnr_single - part.psnr_chosen)):
            keep = values.notna().to_numpy()
            rho, p = spearman(part.distance.to_numpy()[keep], values.to_numpy()[keep])
            prediction.append([set_name, target, int(keep.sum()), rho, p])
        seen, other = part[part.seen], part[~part.seen]
        ood.append([
            set_name, len(seen), len(other), float(seen.in_distribution.mean()),
            float((~other.in_distribution).mean()) if len(other) else nan,
            auroc(other.distance.to_numpy(), seen.distance.to_numpy()), selector.threshold,
            float(np.quantile(seen.distance, 0.95)),
        ])
    return {
        "divergences": pd.DataFrame(div_rows, columns=tables.columns("selection_divergences")),
        "accuracy": accuracy,
        "prediction": pd.DataFrame(prediction, columns=tables.columns("selection_prediction")),
        "ood": pd.DataFrame(ood, columns=tables.columns("selection_ood")),
    }


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random ``positive`` scores above a random ``negative`` (ties count 1/2):
    how well the distance separates unseen from seen degradations, whatever the threshold."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + ties / 2)


def plot_confusion(accuracy: pd.DataFrame, groups: list[str], path: str | Path) -> None:
    """Rows: the true degradation; columns: the chosen group; the true group's cell outlined."""
    plt = io.pyplot()
    names = list(dict.fromkeys(accuracy.degradation))
    counts = pd.crosstab(accuracy.degradation, accuracy.chosen_group).reindex(index=names, columns=groups, fill_value=0)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(groups), 1.2 + 0.45 * len(names)))
    ax.imshow(counts.to_numpy(), cmap="Blues", aspect="auto")
    truth = dict(zip(accuracy.degradation, accuracy.true_group))
    for i, name in enumerate(names):
        for j, group in enumerate(groups):
            ax.text(j, i, counts.iloc[i, j], ha="center", va="center", fontsize=8)
            if truth[name] == group:  # unseen degradations have no true group
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:orange", lw=2))
    ax.set_xticks(range(len(groups)), [g.replace("+", "+\n") for g in groups], fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("chosen group")
    ax.set_ylabel("true degradation")
    ax.set_title(f"Model selection: {accuracy.correct.mean():.0%} correct (orange: the true group)")
    fig.tight_layout()
    io.save_figure(fig, path)


def plot_prediction(accuracy: pd.DataFrame, prediction: pd.DataFrame, threshold: float, path: str | Path) -> None:
    """Divergence to the chosen group vs the PSNR its model obtained, one colour per degradation."""
    plt = io.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for name, part in accuracy.groupby("degradation", sort=False):
        unseen = not part.seen.iloc[0]
        ax.scatter(part.distance, part.psnr_chosen, s=30 if unseen else 18, marker="x" if unseen else "o",
                   label=f"{name} (unseen)" if unseen else name, alpha=0.8)
    ax.axvline(threshold, color="grey", linestyle="--", label=f"out of distribution > {threshold:g}")
    rho = prediction[prediction.target == "psnr"].spearman
    ax.set_title(f"Prediction without inference: Spearman rho = {', '.join(f'{r:.2f}' for r in rho)}")
    ax.set_xlabel("divergence to the chosen group (log KL)")
    ax.set_ylabel("PSNR of the chosen model (dB)")
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    io.save_figure(fig, path)


REPORT_FILES = ("divergences", "accuracy", "prediction", "ood", "summary", "confusion", "scatter")


def write_report(report: dict[str, pd.DataFrame], groups: pd.DataFrame, threshold: float,
                 paths: dict[str, str | Path]) -> None:
    """Write the :func:`selection_tables` (``selection_{name}`` tables), the summary and the two
    figures to ``paths`` (keyed by :data:`REPORT_FILES`: a table's name, ``summary``,
    ``confusion`` and ``scatter``)."""
    for name, table in report.items():
        tables.write(table, f"selection_{name}", paths[name])
    accuracy, prediction = report["accuracy"], report["prediction"]
    plot_confusion(accuracy, list(dict.fromkeys(groups.group)), paths["confusion"])
    plot_prediction(accuracy, prediction, threshold, paths["scatter"])
    per = accuracy.groupby(["test_set", "degradation"], sort=False).agg(
        seen=("seen", "first"), images=("correct", "size"), accuracy=("correct", "mean"), distance=("distance", "mean"),
        in_distribution=("in_distribution", "mean"), psnr_chosen=("psnr_chosen", "mean"), psnr_true=("psnr_true", "mean"),
    ).reset_index()
    per["accuracy"] = per.accuracy.where(per.seen)  # no true group for an unseen degradation
    seen = accuracy[accuracy.seen]
    text = "# Adaptive model selection\n\n"
    text += f"Overall: {seen.correct.mean():.1%} of {len(seen)} test images of trained degradations get their true "
    text += f"group's model; {seen.in_distribution.mean():.1%} of them are judged in distribution "
    text += f"(distance <= {threshold:g}).\n\n"
    text += per.round(3).to_markdown(index=False) + "\n\n## Prediction without inference\n\n"
    text += "Spearman rank correlation of the divergence to the chosen group with the PSNR its model obtained "
    text += "(`psnr`) and with the loss against the degradation's single-task model (`drop`).\n\n"
    text += prediction.round(4).to_markdown(index=False) + "\n\n## Out-of-distribution detection\n\n"
    text += ("Unseen degradations (`selection.unseen`, no model trained on them) should be flagged: `unseen_flagged` "
             "is the fraction above the threshold, `seen_in_distribution` the fraction of trained ones below it, "
             "`auroc` how well the distance separates the two whatever the threshold, `seen_p95` the 95th "
             "percentile of the trained degradations' distances (a data-driven threshold).\n\n")
    text += report["ood"].round(3).to_markdown(index=False) + "\n"
    with io.atomic_path(paths["summary"]) as tmp:
        tmp.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.selection", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="selection accuracy and divergence/PSNR correlation on the test sets")
    p.add_argument("--ggd", required=True)
    p.add_argument("--groups", required=True)
    p.add_argument("--eval", nargs="+", required=True, help="evaluation tables of every single-task and final model")
    add_test_set_argument(p)
    p.add_argument("--descriptor", default="")
    p.add_argument("--features", required=True, help="the config's features section, JSON")
    p.add_argument("--reference", choices=["images", "sets"], required=True, help="selection.reference")
    p.add_argument("--references", help="references.parquet (per-image GGDs; needed for --reference images)")
    p.add_argument("--threshold", type=float, help="selection.threshold (default: that of the reference kind)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--unseen", action="append", default=[], help="a test degradation no model was trained on")
    for name in REPORT_FILES:
        what = {"summary": "summary.md", "confusion": "confusion.png", "scatter": "prediction.png"}.get(
            name, f"{name}.parquet")
        p.add_argument(f"--{name}", required=True, help=f"{what} to write")
    add_set_arguments(sub.add_parser("references", help="per-image GGDs of one degraded set"))
    p = sub.add_parser("combine", help="concatenate per-set reference tables")
    p.add_argument("--references", nargs="+", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "combine":
        tables.write(io.read_parquets(args.references), "selection_references", args.out)
        return 0
    features = json.loads(args.features)
    if args.command == "references":
        table = reference_table(args.set, pd.read_parquet(args.manifest), args.descriptor or None, features, args.seed,
                                args.device)
        tables.write(table, "selection_references", args.out)
        return 0
    if args.reference == "images" and not args.references:
        parser.error("--reference images needs --references")
    ggd, groups = pd.read_parquet(args.ggd), pd.read_parquet(args.groups)
    references = pd.read_parquet(args.references) if args.reference == "images" else None
    table = build_references(args.reference, ggd, groups, references, features, None)
    threshold = resolve_threshold(args.threshold, args.reference, table)
    selector = Selector(table, features, args.descriptor or None, threshold, args.seed, args.device)
    evaluation = io.read_parquets(args.eval)
    report = selection_tables(selector, groups, test_set_manifests(args.test_set), evaluation, args.unseen)
    write_report(report, groups, threshold, {name: getattr(args, name) for name in REPORT_FILES})
    print(Path(args.summary).read_text())
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
