"""Stages ``ggd_fit`` and ``similarity_matrix``: GGD per image set, log-KL matrix, heatmap.

``ggd_fit`` (one job per set, so sets run in parallel and an edited degradation refits alone)::

    python -m grids.similarity ggd --set jpeg --manifest results/degraded/jpeg/manifest.parquet \
        --descriptor assets/descriptor/msrresnet_x4.pth --features '{...}' --seed 0 \
        --out results/similarity/ggd/jpeg.parquet

``similarity_matrix`` (all sets)::

    python -m grids.similarity matrix --ggd results/similarity/ggd/*.parquet \
        --ggd-table results/similarity/ggd.parquet --matrix results/similarity/matrix.parquet \
        --heatmap results/similarity/heatmap.png --heatmap-svg results/similarity/heatmap.svg

Tables (long format; columns: ``similarity_ggd`` and ``similarity_matrix`` of :mod:`grids.tables`):

* ``ggd.parquet``: one row per set, with the feature settings it was fitted with; the clean set is
  the row ``clean``.
* ``matrix.parquet``: every ordered pair: ``kl = KL(p_a || p_b)``, ``distance = log10(kl + 1e-5) + 5``,
  ``distance_sym`` the mean of both directions. Smaller = more similar. Under ``features.distance``
  other than ``log_kl`` (:data:`grids.ggd.DISTANCES`), ``kl`` holds that distance's divergence.

The square form (:func:`wide_matrix`) and a group's mean pairwise distance (:func:`group_distance`)
are defined here once, for the grouping search and the validation alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, tables
from .config import config_section
from .ggd import DISTANCES, get_distance
from .options import method_layer, reads_descriptor
from .plotting import fit_width
from .stage import add_set_arguments, pick_device


def fit_set(
    name: str, manifest: pd.DataFrame, descriptor: str | None, features: dict, seed: int, device: str = "auto"
) -> pd.DataFrame:
    """One ``ggd.parquet`` row for the image set listed in ``manifest`` (columns image_id, path)."""
    from .descriptor import load_descriptor
    from .features import ImageFiles, set_ggd
    from .io import sha256_file

    device = pick_device(device)
    images = ImageFiles({row.image_id: row.path for row in manifest.itertuples()})  # decoded one at a time
    start = time.perf_counter()
    model, sha = None, ""
    if reads_descriptor(features):
        model, sha = load_descriptor(descriptor, device), sha256_file(descriptor)
    fit, n_values = set_ggd(images, features, seed, model, device)
    row = [
        name,
        fit.alpha,
        fit.sigma,
        n_values,
        method_layer(features),
        features["n_patches"],
        features["patch_size"],
        features["pca_components"],
        features["kind"],
        sha,
        str(device),
        time.perf_counter() - start,
    ]
    return pd.DataFrame([row], columns=tables.columns("similarity_ggd"))


def similarity_table(ggd: pd.DataFrame, distance: str = "log_kl") -> pd.DataFrame:
    """Long ``deg_a, deg_b, kl, distance, distance_sym`` over every ordered pair of sets, under the
    distance called ``distance`` (``features.distance``)."""
    names = ggd.degradation.tolist()
    kl, distance = get_distance(distance).pairwise(ggd.alpha.to_numpy(), ggd.sigma.to_numpy())
    symmetric = (distance + distance.T) / 2
    ia, ib = np.meshgrid(np.arange(len(names)), np.arange(len(names)), indexing="ij")
    values = [np.array(names)[ia.ravel()], np.array(names)[ib.ravel()], kl.ravel(), distance.ravel(), symmetric.ravel()]
    return pd.DataFrame(dict(zip(tables.columns("similarity_matrix"), values)))


def wide_matrix(matrix: pd.DataFrame, value: str = "distance_sym", names: list[str] | None = None) -> pd.DataFrame:
    """The square matrix of ``value`` (rows ``deg_a``, columns ``deg_b``), in ``names`` order
    (default: the table's), with a message naming the sets the table lacks."""
    order = list(names or dict.fromkeys(matrix.deg_a))
    missing = sorted(set(order) - set(matrix.deg_a))
    if missing:
        raise ValueError(f"the similarity matrix has no rows for {missing}: rebuild similarity_matrix")
    wide = matrix.pivot(index="deg_a", columns="deg_b", values=value)
    return wide.loc[order, order].rename_axis(index=None, columns=None)


def group_distance(wide: pd.DataFrame, members: list[str]) -> float:
    """Mean distance over the pairs of ``members`` in the square matrix ``wide`` (0 for a
    singleton): how close a group's degradations are."""
    missing = sorted(set(members) - set(wide.index))
    if missing:
        raise ValueError(f"the similarity matrix has no rows for {missing}: rebuild similarity_matrix")
    pairs = [wide.at[a, b] for i, a in enumerate(members) for b in members[i + 1 :]]
    return float(np.mean(pairs)) if pairs else 0.0


def cluster_order(wide: pd.DataFrame) -> list[str]:
    """Row order from average-linkage hierarchical clustering of the symmetric distances."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if len(wide) < 3:
        return list(wide.index)
    d = wide.to_numpy(dtype=np.float64).copy()
    np.fill_diagonal(d, 0)
    return [wide.index[i] for i in leaves_list(linkage(squareform(np.maximum(d, 0), checks=False), "average"))]


def plot_heatmap(
    matrix: pd.DataFrame, png: str | Path, svg: str | Path, title: str = "", label: str = "log-KL distance"
) -> None:
    """Annotated heatmap of ``distance_sym``, rows/columns ordered by hierarchical clustering.

    The figure grows with the number of sets, from a minimum that leaves room for the title (wrapped
    when wider than the figure) and the colour bar's label; constrained layout keeps the tick labels,
    title and colour bar inside it."""
    plt = io.pyplot()
    wide = wide_matrix(matrix)
    order = cluster_order(wide)
    wide = wide.loc[order, order]
    n = len(wide)
    longest = max(len(name) for name in order)  # the rotated tick labels' extent, in characters
    margin = 0.6 + 0.06 * longest
    fig, ax = plt.subplots(
        figsize=(max(5.6, 1.4 + margin + 0.6 * n), max(4.6, 1.0 + margin + 0.55 * n)), layout="constrained"
    )
    # aspect "auto": the cells fill the axes that constrained layout leaves (a fixed aspect would
    # shrink the axes after the layout, leaving the colour bar taller than the map); the figure's
    # size keeps them about square
    im = ax.imshow(wide.to_numpy(), cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(n), order, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), order)
    values = wide.to_numpy()
    threshold = np.nanmean(values)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{values[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if values[i, j] > threshold else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=f"{label} (symmetrised)")
    fit_width(ax.set_title(title or "Degradation similarity (smaller = more similar)"))
    io.save_figure(fig, png, svg, dpi=150)


def build_matrix(
    ggd_files: list[str],
    ggd_path: str | Path,
    matrix_path: str | Path,
    png: str | Path,
    svg: str | Path,
    distance: str = "log_kl",
) -> pd.DataFrame:
    """Combine per-set GGD rows into ``ggd_path``; write the matrix and its heatmap (PNG, SVG)."""
    ggd = io.read_parquets(ggd_files)
    matrix = similarity_table(ggd, distance)
    tables.write(ggd, "similarity_ggd", ggd_path)
    tables.write(matrix, "similarity_matrix", matrix_path)
    kind = ggd.feature_kind.iloc[0]
    label = "log-KL distance" if distance == "log_kl" else f"{distance} distance"
    title = f"Degradation similarity ({kind} features; smaller = more similar)"
    plot_heatmap(matrix, png, svg, title=title, label=label)
    return matrix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.similarity", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_set_arguments(sub.add_parser("ggd", help="GGD of one image set"))
    p = sub.add_parser("ggd-sets", help="GGDs of several image sets in one process (one start-up for all)")
    p.add_argument("--set", nargs=3, action="append", required=True, metavar=("NAME", "MANIFEST", "OUT"))
    for option, kwargs in [
        ("--descriptor", {"help": "descriptor weights (.pth); not needed for kind=sift"}),
        ("--features", {"required": True, "help": "the config's `features` section, as JSON"}),
        ("--seed", {"type": int, "required": True}),
        ("--device", {"default": "auto"}),
        ("--threads", {"type": int, "default": 0}),
    ]:
        p.add_argument(option, **kwargs)
    p = sub.add_parser("matrix", help="combine GGD rows into the similarity tables and heatmap")
    p.add_argument("--ggd", nargs="+", required=True, help="the per-set GGD rows")
    p.add_argument("--ggd-table", required=True, help="all sets' GGD rows, e.g. results/similarity/ggd.parquet")
    p.add_argument("--matrix", required=True, help="the similarity table to write")
    p.add_argument("--heatmap", required=True, help="the heatmap PNG")
    p.add_argument("--heatmap-svg", required=True, help="the heatmap SVG")
    p.add_argument("--distance", default="log_kl", choices=list(DISTANCES), help="features.distance")
    args = parser.parse_args(argv)
    if args.command in ("ggd", "ggd-sets"):
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        sets = [(args.set, args.manifest, args.out)] if args.command == "ggd" else args.set
        features = config_section("features", json.loads(args.features))  # a hand-written one may lack keys
        for name, manifest, out in sets:
            row = fit_set(
                name,
                io.read_manifest(manifest),
                args.descriptor or None,
                features,
                args.seed,
                args.device,
            )
            tables.write(row, "similarity_ggd", out)
            print(row.to_string(index=False), flush=True)
    else:
        matrix = build_matrix(args.ggd, args.ggd_table, args.matrix, args.heatmap, args.heatmap_svg, args.distance)
        print(wide_matrix(matrix).round(2).to_string())
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
