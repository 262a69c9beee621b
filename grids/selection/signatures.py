"""The signature space: how an image's degradation looks to the descriptor, as a few numbers.

Steps 1 and 2 of the selection (docs/method.md §7), shared by the selector that ``grids select``
runs, the reference tables it reads and the benchmarks:

1. Self-augmentation: ``selection.n_patches`` (default: ``features.n_patches``) random
   ``patch_size``² crops of the image, each flipped horizontally and/or vertically at random
   (seeded by ``seed``, so one image always gets the same patches). Crops overlap as much as
   needed: a 64 px image still yields 256 patches. An image smaller than the patch size on a side
   is first padded by mirror reflection up to the patch size (a warning says so).
2. The signature: one descriptor pass, then at every layer of ``selection.layers`` (and at
   ``features.layer`` when the choice or a statistic reads it) PCA fitted on those patches alone
   and the GGD fit, the similarity stage's recipe (:func:`grids.features.features_ggd`). The
   layer ``nss`` (default) adds the whole image's natural-scene statistics, GGD fits on its
   pixels (:mod:`grids.nss`): 18 more ``(alpha, sigma)`` pairs, no descriptor pass.

    python -m grids.selection.signatures references --set jpeg \
        --manifest results/degraded/jpeg/manifest.parquet --descriptor W --features JSON \
        --layers conv_first RB16 --n-patches 64 --seed S --out results/selection/references/jpeg.parquet

``references`` (rules ``selection_reference_set`` and ``test_signatures``, one job per degraded
set): the per-image signatures of one set, with the feature settings and descriptor they were
fitted with, and the seconds each image took (table ``selection_references``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import io, tables
from ..config import config_section
from ..nss import NSS, nss_ggds
from ..options import reads_descriptor
from ..seeds import rng_for
from ..stage import add_per_test_set_argument, add_set_arguments

if TYPE_CHECKING:  # torch, which grids.features imports, is loaded when a signature is computed
    from ..features import Signature

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


def selection_features(features: dict, selection: dict) -> dict:
    """The ``features`` an image's signature is fitted with: the similarity's, with
    ``selection.n_patches`` patches when set (one image needs fewer than a whole set)."""
    n = selection.get("n_patches")
    return features if n is None else {**features, "n_patches": n}


def signature_layers(features: dict, layers: list[str] = (), method: bool = True) -> list[str]:
    """The layers a signature holds: ``layers``, then the method's own unless ``method`` is False
    (no repeats; SIFT: its own only)."""
    if not reads_descriptor(features):
        return ["sift", *(NSS for layer in layers if layer == NSS)]
    return list(dict.fromkeys([*layers, features["layer"]] if method else layers))


def image_signature(
    image: np.ndarray, features: dict, model, seed: int, device, layers: list[str] = (), method: bool = True
) -> Signature:
    """The :class:`grids.features.Signature` of one image: self-augmented patches, one descriptor
    pass for every layer of :func:`signature_layers`, then per layer the similarity's PCA + GGD fit.
    SIFT: one entry."""
    import torch

    from ..features import Signature, descriptor_layer_features, features_ggd, sift_features

    deep = [layer for layer in signature_layers(features, layers, method) if layer != NSS]
    if not reads_descriptor(features):
        maps = {"sift": torch.from_numpy(sift_features([image], features["n_patches"], seed))}
    else:
        patches = self_augmented_patches(image, features["n_patches"], features["patch_size"], seed)
        maps = descriptor_layer_features(model, patches, deep, device) if deep else {}
    signature = {}
    for layer in list(maps):
        x = maps.pop(layer)  # freed after its fit: one layer's features in memory at a time
        signature[layer] = features_ggd(x, features)[0]
        del x
    if NSS in layers:  # the pixels' own statistics, of the whole image (grids/nss.py)
        signature.update(nss_ggds(image))
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

    from ..descriptor import load_descriptor
    from ..io import sha256_file
    from ..stage import pick_device

    device = pick_device(device)
    model, sha = None, ""
    if reads_descriptor(features):
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
    from ..features import Signature

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


@dataclass(frozen=True)
class SignatureRecipe:
    """How the selector computes an image's signature: ``features`` (the signatures' settings,
    :func:`selection_features`), the loaded descriptor ``model`` (None for SIFT), the ``seed`` of the
    self-augmentation, the ``device``, and the ``layers`` read, the method's own layer with them
    only where ``method`` (the deepest layer is the costliest)."""

    features: dict
    model: Any
    seed: int
    device: Any
    layers: tuple[str, ...]
    method: bool

    def of(self, image: np.ndarray) -> Signature:
        return image_signature(image, self.features, self.model, self.seed, self.device, self.layers, self.method)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.selection.signatures", description=__doc__.split("\n")[0])
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
    from ..stage import run_stage

    sys.exit(run_stage(main))
