"""Adaptive model selection and generalisation prediction (docs/method.md §7).

This module is the selector that ``grids select`` and ``grids restore`` run, and the command line
of the selection stages; the selection report is :mod:`grids.selection_report`.

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

``report`` (rule ``selection_report``): the selector run on every degraded test image, scored
against the true groups and the evaluation tables (:mod:`grids.selection_report`, its tables and
figures).
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
from .selection_report import REPORT_FILES
from .similarity import add_set_arguments
from .stage import add_test_set_argument, test_set_manifests

PAPER_THRESHOLD = 4.0  # the paper's haze example; on the scale of set-level GGDs
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


def image_references(references: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """``group, alpha, sigma``: one row per reference image of each final group's members."""
    missing = sorted(set(groups.degradation) - set(references.degradation))
    if missing:
        raise ValueError(f"references.parquet has no images of {missing}: rebuild final_models")
    group_of = dict(zip(groups.degradation, groups.group))
    table = references[references.degradation.isin(group_of)]
    return pd.DataFrame(
        {"group": table.degradation.map(group_of), "alpha": table.alpha, "sigma": table.sigma}
    ).reset_index(drop=True)


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
        d = np.asarray(
            log_kl_distance(np.asarray(kl_divergence(a[:, None], s[:, None], a[None, :], s[None, :]), float)), float
        )
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
            "group": self.group,
            "distance": self.distance,
            "in_distribution": self.in_distribution,
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


def reference_table(
    name: str, manifest: pd.DataFrame, descriptor: str | None, features: dict, seed: int, device: str = "auto"
) -> pd.DataFrame:
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
        rows.append(
            [
                name,
                row.image_id,
                fit.alpha,
                fit.sigma,
                features["n_patches"],
                features["patch_size"],
                features["pca_components"],
                features["kind"],
                sha,
            ]
        )
    return pd.DataFrame(rows, columns=tables.columns("selection_references"))


class Selector:
    """Chooses a final group for an image (see the module docstring).

    ``references``: ``group, alpha, sigma`` rows (:func:`image_references` or :func:`group_ggds`).
    """

    def __init__(
        self,
        references: pd.DataFrame,
        features: dict,
        descriptor: str | None,
        threshold: float = 4.0,
        seed: int = 0,
        device: str = "auto",
    ):
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
        return Selection(
            str(best.group), float(best.distance), bool(best.distance <= self.threshold), table, fit.alpha, fit.sigma
        )


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
    results: str | Path, reference: str = "sets"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """``(ggd, groups, references)`` tables of a built workflow (``references`` None unless
    ``reference`` is ``images``), with a message naming the target to build."""
    results = Path(results)
    needed = {
        results / "similarity" / "ggd.parquet": "similarity_matrix",
        results / "final" / "groups.parquet": "final_models",
    }
    if reference == "images":
        needed[results / "selection" / "references.parquet"] = "final_models"
    for path, target in needed.items():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: build it first with `snakemake --cores all {target}`")
    references = pd.read_parquet(results / "selection" / "references.parquet") if reference == "images" else None
    return (
        pd.read_parquet(results / "similarity" / "ggd.parquet"),
        pd.read_parquet(results / "final" / "groups.parquet"),
        references,
    )


def build_references(
    reference: str,
    ggd: pd.DataFrame,
    groups: pd.DataFrame,
    references: pd.DataFrame | None,
    features: dict,
    descriptor_sha: str | None,
) -> pd.DataFrame:
    """The selector's ``group, alpha, sigma`` rows for ``selection.reference``, after checking that
    the stored fits used the config's features and descriptor."""
    check_features(ggd, features, descriptor_sha)
    if reference == "sets":
        return group_ggds(ggd, groups)
    check_features(references, features, descriptor_sha, "results/selection/references.parquet", "final_models")
    return image_references(references, groups)


def selector_from_config(
    config: dict, results: str | Path = "results", threshold: float | None = None, device: str = "auto"
) -> Selector:
    from .config import descriptor_weights
    from .descriptor import sha256_file

    reference = config["selection"]["reference"]
    ggd, groups, references = load_results(results, reference)
    features = config["features"]
    weights = descriptor_weights(config) if features["kind"] == "descriptor" else None
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(
            f"descriptor weights {weights} not found (descriptor.weights: train needs "
            "`snakemake results/descriptor/msrresnet_x4.pth`)"
        )
    table = build_references(reference, ggd, groups, references, features, sha256_file(weights) if weights else None)
    limit = resolve_threshold(config["selection"]["threshold"] if threshold is None else threshold, reference, table)
    return Selector(table, features, weights, limit, config["seed"], device)


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
            name, f"{name}.parquet"
        )
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
        table = reference_table(
            args.set, pd.read_parquet(args.manifest), args.descriptor or None, features, args.seed, args.device
        )
        tables.write(table, "selection_references", args.out)
        return 0
    if args.reference == "images" and not args.references:
        parser.error("--reference images needs --references")
    ggd, groups = pd.read_parquet(args.ggd), pd.read_parquet(args.groups)
    references = pd.read_parquet(args.references) if args.reference == "images" else None
    table = build_references(args.reference, ggd, groups, references, features, None)
    threshold = resolve_threshold(args.threshold, args.reference, table)
    selector = Selector(table, features, args.descriptor or None, threshold, args.seed, args.device)
    from .selection_report import selection_tables, write_report

    evaluation = io.read_parquets(args.eval)
    report = selection_tables(selector, groups, test_set_manifests(args.test_set), evaluation, args.unseen)
    write_report(report, groups, threshold, {name: getattr(args, name) for name in REPORT_FILES})
    print(Path(args.summary).read_text())
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
