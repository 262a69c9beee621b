"""Stage ``similarity_validation``: does a small distance mean a small loss when degradations share
a model? The paper's Table 2, and the same question asked of every group this run trained.

**Table 2.** Each experiment (config ``validation.experiments``) is two groups of equal size, one
meant to be close and one far under the method's distance. Both are mix-trained (by the workflow's
``train`` rule, so a group the search already verified is reused, never retrained) and evaluated.
Per experiment, group and feature variant: the group's mean pairwise ``distance_sym``, the mean
and the largest member drop ``single-task PSNR - group PSNR`` (dB, on ``grouping.test_set``), and
whether the group this variant calls closer lost less on average (``correct``).

**Feature variants** (``validation.variants``): the distance computed from other features, on the
same trainings. ``method``: the configured descriptor and features (``results/similarity``);
``rb16``: the same descriptor at its last residual block; ``untrained``: an MSRResNet x4 with
seeded random weights (does training the descriptor matter?); ``sift``: OpenCV SIFT descriptors
(the paper's Table 2b ablation). Each costs GGD fits only, no training.

**Premise.** Over every group with a trained model (the search's verifications, the Table 2
groups, the mix-all baseline), per variant and target (``max_drop``, ``mean_drop``): Spearman and
Kendall correlations between the group's mean distance and its drop, with percentile bootstrap
95 % intervals (groups resampled with replacement, seeded), and the fraction of experiments
ordered correctly.

    python -m grids.validation untrained --seed 0 --out results/validation/untrained_msrresnet_x4.pth
    python -m grids.validation matrix --ggd results/validation/ggd/rb16/*.parquet \
        --out results/validation/matrices/rb16.parquet
    python -m grids.validation tables --experiments JSON --degradations D... --eval E... \
        --variant method results/similarity/matrix.parquet --variant rb16 M ... \
        --test-set heldout --bootstrap 1000 --seed 0 --table2 T.parquet --drops D.parquet \
        --table2-md T.md --table2-png T.png --premise P.parquet --premise-groups G.parquet --premise-png P.png

Tables ``table2.parquet``, ``drops.parquet``, ``premise_groups.parquet`` and ``premise.parquet``:
their columns are the ``validation_*`` tables of :mod:`grids.tables`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import io, tables
from .ggd import DISTANCES
from .grouping.names import group_members, mix_all_group
from .grouping.rounds import member_drops  # the drops the search uses, the same way
from .learning import BELOW_INPUT, model_learning
from .plotting import place_labels, wrap_group
from .runplan import runnable_experiments
from .similarity import group_distance, similarity_table, wide_matrix

TARGETS = ("max_drop", "mean_drop")


def mean_distance(matrix: pd.DataFrame, group: str) -> float:
    """Mean ``distance_sym`` over the group's pairs (0 for a singleton)."""
    return group_distance(wide_matrix(matrix), group_members(group))


def group_outcomes(drops: pd.DataFrame, min_gain: float) -> pd.DataFrame:
    """Per group of member ``drops`` (:func:`grids.grouping.rounds.member_drops`): its mean and
    largest drop, its model's smallest member gain over the input, harmed images and learning
    outcome (:func:`grids.learning.model_learning`)."""
    by = drops.groupby("group")
    table = by["drop"].agg(mean_drop="mean", max_drop="max")
    table["weakest_group_gain"] = by.gain_group.min()
    table["harmed_images"] = by.harmed_group.sum().astype("int64")
    table["learning"] = by.gain_group.apply(lambda gains: model_learning(gains, min_gain)).astype(str)
    return table


def table2(
    experiments: dict[str, list[str]], matrices: dict[str, pd.DataFrame], drops: pd.DataFrame, min_gain: float
) -> pd.DataFrame:
    """One row per (experiment, variant, group); ``experiments`` maps a name to its two group names."""
    per_group = group_outcomes(drops, min_gain)
    rows = []
    for name, sides in experiments.items():
        for variant, matrix in matrices.items():
            distances = [mean_distance(matrix, g) for g in sides]
            closer = int(np.argmin(distances))
            lost_less = int(np.argmin([per_group.loc[g, "mean_drop"] for g in sides]))
            for k, group in enumerate(sides):
                rows.append(
                    {
                        "experiment": name,
                        "variant": variant,
                        "side": "ab"[k],
                        "group": group,
                        "size": len(group_members(group)),
                        "distance": distances[k],
                        **per_group.loc[group].to_dict(),
                        "closer": k == closer,
                        "correct": closer == lost_less,
                    }
                )
    return pd.DataFrame(rows, columns=tables.columns("validation_table2"))


def bootstrap_interval(x: np.ndarray, y: np.ndarray, statistic, n: int, seed: int) -> tuple[float, float]:
    """Percentile 95 % interval of ``statistic(x, y)`` over ``n`` resamples of the pairs (seeded);
    resamples where the statistic is undefined (a constant resample) are left out."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        index = rng.integers(len(x), size=len(x))
        value = statistic(x[index], y[index])
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _spearman(x, y) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def _kendall(x, y) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def premise(groups: pd.DataFrame, table: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Correlations of distance with drop per variant and target (``groups``: premise_groups rows)."""
    rows = []
    for variant, target in itertools.product(dict.fromkeys(groups.variant), TARGETS):
        part = groups[groups.variant == variant]
        x, y = part.distance.to_numpy(float), part[target].to_numpy(float)
        ordered = table[(table.variant == variant) & (table.side == "a")]
        row = {"variant": variant, "target": target, "n_groups": len(part)}
        for label, fn, test in (("spearman", _spearman, stats.spearmanr), ("kendall", _kendall, stats.kendalltau)):
            defined = len(part) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0
            row[label] = fn(x, y) if defined else float("nan")
            row[f"{label}_low"], row[f"{label}_high"] = (
                bootstrap_interval(x, y, fn, n_bootstrap, seed) if defined else (float("nan"), float("nan"))
            )
            row[f"{label}_p"] = float(test(x, y).pvalue) if defined else float("nan")
        row["experiments_correct"] = float(ordered.correct.mean()) if len(ordered) else float("nan")
        row["n_experiments"] = len(ordered)
        rows.append(row)
    return pd.DataFrame(rows, columns=tables.columns("validation_premise"))


def premise_groups(
    evaluation: pd.DataFrame,
    test_set: str,
    sources: dict[str, str],
    matrices: dict[str, pd.DataFrame],
    min_gain: float,
) -> pd.DataFrame:
    """Every trained group (``sources``: group -> where it comes from) with its drops, how its
    model fares against the input, and its mean distance under each variant."""
    groups = [g for g in sources if len(group_members(g)) > 1]
    summary = group_outcomes(member_drops(evaluation, test_set, groups, min_gain), min_gain)
    rows = []
    for variant, matrix in matrices.items():
        for group in groups:
            rows.append(
                {
                    "group": group,
                    "size": len(group_members(group)),
                    "source": sources[group],
                    **summary.loc[group].to_dict(),
                    "variant": variant,
                    "distance": mean_distance(matrix, group),
                }
            )
    return pd.DataFrame(rows, columns=tables.columns("validation_premise_groups"))


def plot_table2(table: pd.DataFrame, path: str | Path) -> None:
    """Per experiment, its two groups by name (horizontal bars, so long names stay readable) with
    their mean drop, each labelled by the method's distance; ``*`` marks the group called closer."""
    plt = io.pyplot()
    method = table[table.variant == table.variant.iloc[0]]
    experiments = list(dict.fromkeys(method.experiment))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.42 * len(method)), layout="constrained")
    positions, names = [], []
    for k, side in enumerate("ab"):
        rows = method[method.side == side].set_index("experiment").loc[experiments]
        y = np.arange(len(experiments)) * 2.6 + k  # a gap between experiments
        bars = ax.barh(y, rows.mean_drop, 0.8, label=f"group {side}", color=("tab:blue", "tab:orange")[k])
        for bar, distance, closer, drop in zip(bars, rows.distance, rows.closer, rows.mean_drop):
            ax.annotate(
                f"d={distance:.2f}{' *' if closer else ''}",
                (drop, bar.get_y() + bar.get_height() / 2),
                ha="left" if drop >= 0 else "right",
                va="center",
                fontsize=7,
                xytext=(3 if drop >= 0 else -3, 0),
                textcoords="offset points",
            )
        positions += list(y)
        names += [f"{e} {side}: {g}" for e, g in zip(experiments, rows.group)]
    ax.set_yticks(positions, names, fontsize=7)
    ax.invert_yaxis()  # e1 on top
    ax.axvline(0, color="black", lw=0.8)
    ax.margins(x=0.2)  # room for the distance labels
    note = ""
    if (method.mean_drop < 0).any():  # a "drop" below 0 is a gain: say why, where it shows
        note = "\nbelow 0: the group's model beats the single-task one (often an undertrained one)"
    ax.set_xlabel("mean drop vs single-task (dB)" + note, fontsize=8)
    ax.set_title(
        f"Table 2: mean drop of each experiment's groups\n(d = {method.variant.iloc[0]} distance, * = called closer)",
        fontsize=9,
    )
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncols=2)
    io.save_figure(fig, path)


def premise_key(names: list[str], width: int = 44) -> list[str]:
    """The premise figure's key, "number  name" per group (numbered from 1 in order), a long name
    wrapped at its "+" with the lines after the first indented, in two columns of about equal
    length: the two columns' texts."""
    entries = [f"{k:>2}  " + wrap_group(name, width).replace("\n", "\n    ") for k, name in enumerate(names, 1)]
    heights = [entry.count("\n") + 1 for entry in entries]
    split = next((k for k in range(len(entries)) if sum(heights[:k]) >= sum(heights) / 2), len(entries))
    return ["\n".join(entries[:split]), "\n".join(entries[split:])]


def plot_premise(groups: pd.DataFrame, summary: pd.DataFrame, path: str | Path) -> None:
    """Max drop against mean distance, one panel per variant (two per row). Each point carries its
    group's number, placed clear of the other labels and markers; the key below names the groups
    (one number per group in every panel): some thirty full names cannot share a panel legibly."""
    plt = io.pyplot()
    variants = list(dict.fromkeys(groups.variant))
    names = list(dict.fromkeys(groups.group))
    number = {name: k + 1 for k, name in enumerate(names)}
    cols = min(2, len(variants))
    rows = -(-len(variants) // cols)
    columns = premise_key(names)
    key_in = 0.2 + 0.14 * max(text.count("\n") + 1 for text in columns)
    fig = plt.figure(figsize=(4.6 * cols + 0.4, 3.6 * rows + key_in), layout="constrained")
    panels, key = fig.subfigures(2, 1, height_ratios=[3.6 * rows, key_in])
    axes = panels.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(variants) :]:
        ax.set_axis_off()
    for ax, variant in zip(axes, variants):
        part = groups[groups.variant == variant]
        ax.scatter(part.distance, part.max_drop, s=14 + 8 * part["size"], alpha=0.8)
        stat = summary[(summary.variant == variant) & (summary.target == "max_drop")].iloc[0]
        ax.set_title(
            f"{variant}: Spearman {stat.spearman:.2f} [{stat.spearman_low:.2f}, {stat.spearman_high:.2f}]", fontsize=9
        )
        ax.set_xlabel("mean pairwise distance of the group", fontsize=8)
        ax.set_ylabel("max drop vs single-task (dB)", fontsize=8)
        ax.margins(0.1)
    for k, text in enumerate(columns):
        key.text(0.02 + 0.5 * k, 1.0, text, va="top", fontsize=7, family="monospace")
    fig.draw_without_rendering()  # the layout and the limits, fixed before the labels are placed
    for ax in axes[: len(variants)]:
        ax.set_xlim(ax.get_xlim())
        ax.set_ylim(ax.get_ylim())
    fig.set_layout_engine("none")
    for ax, variant in zip(axes, variants):
        part = groups[groups.variant == variant]
        xy = part[["distance", "max_drop"]].to_numpy(dtype=float)
        radii = [float(np.sqrt(14 + 8 * k) / 2) for k in part["size"]]
        place_labels(ax, xy, [str(number[g]) for g in part.group], radii, fontsize=6.5)
    io.save_figure(fig, path)


def failed_lines(groups: pd.DataFrame) -> list[str]:
    """One line per trained group (``groups``: table ``validation_premise_groups``) whose model ends
    below its input on a member: a failed mixed training, whose drops measure the recipe."""
    failed = groups[groups.learning == BELOW_INPUT].drop_duplicates("group")
    return [
        f"the mixed training of {r.group} ({r.source}) failed: its model ends below its degraded input on a member "
        f"(worst {r.weakest_group_gain:+.2f} dB); its drops measure the training recipe, not a conflict"
        for r in failed.itertuples()
    ]


def write_markdown(
    table: pd.DataFrame,
    drops: pd.DataFrame,
    summary: pd.DataFrame,
    skipped: list[str],
    test_set: str,
    path: str | Path,
    html_path: str | Path | None = None,
    groups: pd.DataFrame | None = None,
) -> None:
    text = "# Table 2: does the distance predict the drop?\n\n"
    text += (
        f"Drops are single-task PSNR - group PSNR on `{test_set}` (dB). Per experiment and variant, "
        "`correct` says whether the group the variant calls closer lost less on average. Each group's model "
        "is judged against the degraded input first: `weakest_group_gain` is its smallest member gain over the "
        "input (dB), `harmed_images` the test images it makes worse than their input by more than 0.5 dB, "
        "`learning` whether it learned (`below_input`: a failed mixed training).\n\n"
    )
    text += "".join(f"- {line}\n" for line in skipped) + ("\n" if skipped else "")
    failed = failed_lines(groups) if groups is not None else []
    text += "".join(f"- **{line[0].upper() + line[1:]}.**\n" for line in failed) + ("\n" if failed else "")
    index = ["experiment", "side", "group", "mean_drop", "max_drop", "weakest_group_gain", "harmed_images", "learning"]
    wide = table.pivot_table(index=index, columns="variant", values="distance", sort=False).reset_index()
    text += wide.round(3).to_markdown(index=False) + "\n\n## Ordered correctly, per variant\n\n"
    verdict = table[table.side == "a"].pivot_table(
        index="experiment", columns="variant", values="correct", sort=False, aggfunc="first"
    )
    text += verdict.to_markdown() + "\n\n## Member drops\n\n" + drops.round(3).to_markdown(index=False) + "\n"
    text += "\n## The premise over every trained group\n\n" + summary.round(3).to_markdown(index=False) + "\n"
    io.write_markdown(path, text, html_path)


def untrained_descriptor(seed: int, out: str | Path) -> None:
    """An MSRResNet x4 with seeded random weights (PyTorch's default initialisation)."""
    import torch

    from .archs import MSRResNet
    from .descriptor import save_descriptor
    from .seeds import derive_seed

    torch.manual_seed(derive_seed(seed, "validation", "untrained_descriptor") % 2**63)
    save_descriptor(MSRResNet(), out, {"note": "untrained: seeded random weights (similarity_validation)"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.validation", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("untrained", help="write the untrained descriptor of the `untrained` variant")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("matrix", help="one variant's similarity matrix from its per-set GGD tables")
    p.add_argument("--ggd", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--distance", default="log_kl", choices=list(DISTANCES), help="features.distance")
    p = sub.add_parser("tables", help="Table 2 and the premise report")
    p.add_argument("--experiments", required=True, help="the config's validation.experiments, JSON")
    p.add_argument("--degradations", nargs="+", required=True)
    p.add_argument("--eval", nargs="+", required=True, help="evaluation tables of every trained model")
    p.add_argument("--verified", required=True, help="grouping/verified.parquet (the search's verifications)")
    p.add_argument("--variant", nargs=2, action="append", required=True, metavar=("NAME", "MATRIX"))
    p.add_argument("--test-set", required=True, help="the test set whose PSNR defines a drop")
    p.add_argument("--bootstrap", type=int, required=True)
    p.add_argument("--min-gain", type=float, required=True, help="grouping.min_learned_gain (dB): below, did not learn")
    p.add_argument("--seed", type=int, required=True)
    for name in ("table2", "drops", "table2-md", "table2-png", "premise", "premise-groups", "premise-png"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--table2-html", help="table2.md as a page, for the Snakemake report")
    args = parser.parse_args(argv)
    if args.command == "untrained":
        untrained_descriptor(args.seed, args.out)
        return 0
    if args.command == "matrix":
        matrix = similarity_table(io.read_parquets(args.ggd), args.distance)
        tables.write(matrix, "similarity_matrix", args.out)
        return 0
    experiments, skipped = runnable_experiments(json.loads(args.experiments), args.degradations)
    for line in skipped:
        print(line)
    evaluation = io.read_parquets(args.eval)
    matrices = {name: pd.read_parquet(path) for name, path in args.variant}
    test_set = args.test_set
    all_groups = list(dict.fromkeys(g for sides in experiments.values() for g in sides))
    drops_by_group = member_drops(evaluation, test_set, all_groups, args.min_gain)
    table = table2(experiments, matrices, drops_by_group, args.min_gain)
    drops = pd.DataFrame(
        [
            [name, "ab"[k], group, *row[1:]]
            for name, sides in experiments.items()
            for k, group in enumerate(sides)
            for row in drops_by_group[drops_by_group.group == group].itertuples(index=False)
        ],
        columns=tables.columns("validation_drops"),
    )
    sources = {g: "search" for g in pd.read_parquet(args.verified).group}
    sources.update({g: "table2" for g in all_groups if g not in sources})
    mix_all = mix_all_group(args.degradations)
    if mix_all:
        sources.setdefault(mix_all, "mix-all")
    trained = set(evaluation.trained_on)
    trained_sources = {g: s for g, s in sources.items() if g in trained}
    groups = premise_groups(evaluation, test_set, trained_sources, matrices, args.min_gain)
    summary = premise(groups, table, args.bootstrap, args.seed)
    tables.write(table, "validation_table2", args.table2)
    tables.write(drops, "validation_drops", args.drops)
    tables.write(groups, "validation_premise_groups", args.premise_groups)
    tables.write(summary, "validation_premise", args.premise)
    write_markdown(table, drops, summary, skipped, test_set, args.table2_md, args.table2_html, groups)
    for line in failed_lines(groups):
        print(f"warning: {line}", file=sys.stderr)
    if len(table):
        plot_table2(table, args.table2_png)
    else:  # every experiment skipped: an empty figure that says so
        plt = io.pyplot()
        fig = plt.figure(figsize=(5, 1.5))
        fig.text(0.5, 0.5, "no runnable experiment (see table2.md)", ha="center")
        io.save_figure(fig, args.table2_png)
    plot_premise(groups, summary, args.premise_png)
    print(summary.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
