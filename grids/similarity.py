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
  ``distance_sym`` the mean of both directions. Smaller = more similar.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import io, tables
from .ggd import kl_divergence, log_kl_distance
from .stage import pick_device

CLEAN = "clean"


def fit_set(
    name: str, manifest: pd.DataFrame, descriptor: str | None, features: dict, seed: int, device: str = "auto"
) -> pd.DataFrame:
    """One ``ggd.parquet`` row for the image set listed in ``manifest`` (columns image_id, path)."""
    from .descriptor import load_descriptor, sha256_file
    from .features import ImageFiles, set_ggd

    device = pick_device(device)
    images = ImageFiles({row.image_id: row.path for row in manifest.itertuples()})  # decoded one at a time
    start = time.perf_counter()
    model, sha = None, ""
    if features["kind"] == "descriptor":
        model, sha = load_descriptor(descriptor, device), sha256_file(descriptor)
    fit, n_values = set_ggd(images, features, seed, model, device)
    row = [
        name,
        fit.alpha,
        fit.sigma,
        n_values,
        features["layer"] if model else "sift",
        features["n_patches"],
        features["patch_size"],
        features["pca_components"],
        features["kind"],
        sha,
        str(device),
        time.perf_counter() - start,
    ]
    return pd.DataFrame([row], columns=tables.columns("similarity_ggd"))


def similarity_table(ggd: pd.DataFrame) -> pd.DataFrame:
    """Long ``deg_a, deg_b, kl, distance, distance_sym`` over every ordered pair of sets."""
    names = ggd.degradation.tolist()
    a, s = ggd.alpha.to_numpy(), ggd.sigma.to_numpy()
    kl = np.asarray(kl_divergence(a[:, None], s[:, None], a[None, :], s[None, :]), dtype=np.float64)
    distance = np.asarray(log_kl_distance(kl), dtype=np.float64)
    symmetric = (distance + distance.T) / 2
    ia, ib = np.meshgrid(np.arange(len(names)), np.arange(len(names)), indexing="ij")
    values = [np.array(names)[ia.ravel()], np.array(names)[ib.ravel()], kl.ravel(), distance.ravel(), symmetric.ravel()]
    return pd.DataFrame(dict(zip(tables.columns("similarity_matrix"), values)))


def wide_matrix(matrix: pd.DataFrame, value: str = "distance_sym", names: list[str] | None = None) -> pd.DataFrame:
    """The square matrix of ``value`` (rows ``deg_a``, columns ``deg_b``), in ``names`` order."""
    wide = matrix.pivot(index="deg_a", columns="deg_b", values=value)
    order = names or list(dict.fromkeys(matrix.deg_a))
    return wide.loc[order, order].rename_axis(index=None, columns=None)


def cluster_order(wide: pd.DataFrame) -> list[str]:
    """Row order from average-linkage hierarchical clustering of the symmetric distances."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    if len(wide) < 3:
        return list(wide.index)
    d = wide.to_numpy(dtype=np.float64).copy()
    np.fill_diagonal(d, 0)
    return [wide.index[i] for i in leaves_list(linkage(squareform(np.maximum(d, 0), checks=False), "average"))]


def fit_width(text) -> None:
    """Re-wrap ``text`` (a matplotlib ``Text`` of a figure) at its spaces until it lies within the
    figure's width, laying the figure out (its layout engine included) before each measurement."""
    fig = text.figure
    words = " ".join(text.get_text().split())
    width = len(words)
    while True:
        fig.draw_without_rendering()
        extent = text.get_window_extent()
        if (extent.x0 >= fig.bbox.x0 and extent.x1 <= fig.bbox.x1) or width <= 12:
            return
        width = max(12, min(width - 1, int(width * fig.bbox.width / extent.width * 0.95)))
        text.set_text(textwrap.fill(words, width))


def plot_heatmap(matrix: pd.DataFrame, png: str | Path, svg: str | Path, title: str = "") -> None:
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
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="log-KL distance (symmetrised)")
    fit_width(ax.set_title(title or "Degradation similarity (smaller = more similar)"))
    io.save_figure(fig, png, svg, dpi=150)


def build_matrix(
    ggd_files: list[str], ggd_path: str | Path, matrix_path: str | Path, png: str | Path, svg: str | Path
) -> pd.DataFrame:
    """Combine per-set GGD rows into ``ggd_path``; write the matrix and its heatmap (PNG, SVG)."""
    ggd = io.read_parquets(ggd_files)
    matrix = similarity_table(ggd)
    tables.write(ggd, "similarity_ggd", ggd_path)
    tables.write(matrix, "similarity_matrix", matrix_path)
    kind = ggd.feature_kind.iloc[0]
    plot_heatmap(matrix, png, svg, title=f"Degradation similarity ({kind} features; smaller = more similar)")
    return matrix


def add_set_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of a stage that fits GGDs on one image set (here and ``grids.selection``)."""
    p.add_argument("--set", required=True, help="set name (a degradation, or 'clean')")
    p.add_argument("--manifest", required=True, help="the set's manifest.parquet")
    p.add_argument("--descriptor", help="descriptor weights (.pth); not needed for kind=sift")
    p.add_argument("--features", required=True, help="the config's `features` section, as JSON")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--out", required=True)


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
    args = parser.parse_args(argv)
    if args.command in ("ggd", "ggd-sets"):
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        sets = [(args.set, args.manifest, args.out)] if args.command == "ggd" else args.set
        for name, manifest, out in sets:
            row = fit_set(
                name,
                io.read_manifest(manifest),
                args.descriptor or None,
                json.loads(args.features),
                args.seed,
                args.device,
            )
            tables.write(row, "similarity_ggd", out)
            print(row.to_string(index=False), flush=True)
    else:
        matrix = build_matrix(args.ggd, args.ggd_table, args.matrix, args.heatmap, args.heatmap_svg)
        print(wide_matrix(matrix).round(2).to_string())
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
