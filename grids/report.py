"""Reports: the upper-bound table and the paper's Table 1.

    python -m grids.report upper-bounds --eval results/eval/*.parquet \
        --table results/upper_bounds/evaluation.parquet --summary results/upper_bounds/summary.md
    python -m grids.report table1 --groups results/final/groups.parquet --eval results/eval/*.parquet \
        [--baseline NAME results/baselines/NAME/eval.parquet ...] --table results/final/table1.parquet \
        --markdown results/final/table1.md --chart results/final/table1.png

``evaluation.parquet`` is every evaluation row concatenated (table ``upper_bounds_evaluation`` of
:mod:`grids.tables`); ``summary.md`` gives, per test set and degradation, the mean
PSNR/SSIM of the single-task model trained on that degradation, of the mix-all baseline, and the
baseline's drop in dB (the paper's motivation: mix-training costs up to several dB).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from . import io, tables
from .grouping import evidence
from .grouping.evidence import FAILED_TRAINING
from .grouping.names import mix_all_group
from .learning import BELOW_INPUT, DID_NOT_LEARN, HARM_DB, LEARNED, judge, model_learning

OUTCOME_TEXT = {  # a learning outcome (grids.learning), as the notes say it
    LEARNED: "learned",
    DID_NOT_LEARN: "did not learn",
    BELOW_INPUT: "below its input (a failed mixed training)",
}


def upper_bound_summary(evaluation: pd.DataFrame, min_gain: float = 0.5) -> pd.DataFrame:
    """Per (test_set, degradation): the input's mean PSNR, single-task and mix-all mean PSNR/SSIM,
    gain over the input and images made worse by more than 0.5 dB, whether the mix-all model
    learned the degradation (:mod:`grids.learning`), and the mix-all model's drop."""
    columns = ["psnr", "ssim", "psnr_input", "gain"]
    means = evaluation.groupby(["trained_on", "test_set", "degradation"], as_index=False)[columns].mean()
    means = means.merge(judge(evaluation, min_gain)[["harmed", "learning"]].reset_index())
    single = means[means.trained_on == means.degradation].drop(columns=["trained_on", "learning"])
    names = sorted(single.degradation.unique())
    mix_all = mix_all_group(names) or names[0]  # one degradation: its own model is the mix of all
    mix = means[means.trained_on == mix_all].drop(columns=["trained_on", "psnr_input"])
    table = single.merge(mix, on=["test_set", "degradation"], suffixes=("_single", "_mixall"), how="left")
    table = table.rename(columns={"learning": "learning_mixall"})
    table["drop_db"] = table.psnr_single - table.psnr_mixall
    first = ["test_set", "degradation", "psnr_input"]
    return table[first + [c for c in table.columns if c not in first]]


def not_learned_note(table: pd.DataFrame, min_gain: float) -> str:
    """A Markdown note naming the single-task models that gained less than ``min_gain`` dB over
    their input (``table``: Table 1 rows)."""
    rows = table[(table.degradation != "average") & (table.learning_upper != LEARNED)]
    if rows.empty:
        return f"Every single-task model gains at least grouping.min_learned_gain = {min_gain:g} dB over its input.\n"
    named = ", ".join(f"{r.degradation} ({r.gain_upper:+.2f} dB on {r.test_set})" for r in rows.itertuples())
    return (
        f"**Did not learn** (single-task gain over the input below grouping.min_learned_gain = {min_gain:g} dB): "
        f"{named}. "
        "Their rows compare models that barely restore anything, and every grouping verdict involving them is "
        "uninformative: train longer or with another recipe (bench/bench_recipe.py).\n"
    )


def mixall_lines(table: pd.DataFrame) -> list[str]:
    """Per test set, one sentence: did the mix-all baseline learn (Table 1's ``average`` row), and
    on which degradations it ends below its input or did not learn (``table``: Table 1 rows)."""
    lines = []
    for test_set, rows in table.groupby("test_set", sort=False):
        overall = rows[rows.degradation == "average"].iloc[0]
        rows = rows[rows.degradation != "average"]
        line = f"the mix-all baseline on {test_set}: {OUTCOME_TEXT[overall.learning_mixall]}, mean gain "
        line += f"{overall.gain_mixall:+.2f} dB over {len(rows)} degradation(s)"
        for outcome in (BELOW_INPUT, DID_NOT_LEARN):
            chosen = rows[rows.learning_mixall == outcome]
            named = [f"{r.degradation} {r.gain_mixall:+.2f} dB" for r in chosen.itertuples()]
            line += f"; {OUTCOME_TEXT[outcome]} on {', '.join(named)}" if named else ""
        lines.append(line)
    return lines


def mixall_scale_note(table: pd.DataFrame) -> str:
    """A Markdown note per test set naming the degradations the mix-all baseline did not learn
    although their single-task models did (``table``: Table 1 rows): there its drop measures a mixed
    model too small or trained too briefly to share, as much as a conflict."""
    rows = table[
        (table.degradation != "average") & (table.learning_upper == LEARNED) & (table.learning_mixall != LEARNED)
    ]
    notes = []
    for test_set, chosen in rows.groupby("test_set", sort=False):
        named = ", ".join(
            f"{r.degradation} ({r.gain_upper:+.2f} -> {r.gain_mixall:+.2f} dB)" for r in chosen.itertuples()
        )
        notes.append(
            f"**At this scale** the mix-all baseline does not learn, on {test_set}, what the single-task models "
            f"learn: {named} (single-task -> mix-all gain over the input). There its drop measures a mixed model too "
            "small or trained too briefly to share, as much as a conflict: the paper's mix-all, after 600k steps, "
            "loses 1.32 dB on average against its single-task models; bench/bench_mixed.py measures what longer "
            "budgets give here.\n"
        )
    return "".join(notes)


def failed_trainings_note(verified: pd.DataFrame | None, table: pd.DataFrame) -> str:
    """A Markdown note naming the search's failed mixed trainings (table ``grouping_verified``):
    the groups it split because their model ends below the input on a member; and which of those
    members no single-task model learned either (``table``: Table 1 rows), where the failure is
    the scale's, not the mix's."""
    if verified is None:
        return ""
    failed = verified[verified.verdict == FAILED_TRAINING]
    if failed.empty:
        return "No group the search trained ends below its degraded input on any member.\n"
    named = "; ".join(
        f"{r.group} (below its input on {r.below_input.replace(',', ', ')}; worst member gain "
        f"{r.weakest_group_gain:+.2f} dB; {r.harmed_images} test image(s) harmed)"
        for r in failed.itertuples()
    )
    note = (
        f"**Failed mixed trainings**: {named}. The search treated each as infeasible and split its members: "
        "these splits reflect the training recipe, not a measured conflict between the degradations."
    )
    below = {name for names in failed.below_input for name in names.split(",")}
    rows = table[table.degradation != "average"]
    unlearned = sorted(below & set(rows.degradation[rows.learning_upper != LEARNED]))
    if unlearned:
        note += (
            f" {', '.join(unlearned)}: no single-task model learns {'it' if len(unlearned) == 1 else 'them'} "
            "at this scale either, and a mixed model applies to such inputs what it learned for its other "
            "members; bench/bench_mixed.py measures what a deeper network and longer training would need."
        )
    return note + "\n"


def mixall_warnings(summary: pd.DataFrame) -> list[str]:
    """One line per test set on which the mix-all model ends below its input on a degradation
    (``summary``: :func:`upper_bound_summary`): a failed mixed training."""
    lines = []
    for test_set, rows in summary[summary.learning_mixall == BELOW_INPUT].groupby("test_set", sort=False):
        named = ", ".join(f"{r.degradation} ({r.gain_mixall:+.2f} dB)" for r in rows.itertuples())
        lines.append(f"the mix-all model ends below its degraded input on {test_set}: {named}: a failed mixed training")
    return lines


def upper_bounds(
    eval_files: list[str], table_path: str | Path, summary_path: str | Path, min_gain: float = 0.5
) -> pd.DataFrame:
    """Concatenate the evaluations into ``table_path``; the drop of the mix-all model, and whether
    it learned, into ``summary_path`` (a failed mixed training is also named on stderr)."""
    evaluation = io.read_parquets(eval_files)
    tables.write(evaluation, "upper_bounds_evaluation", table_path)
    table = upper_bound_summary(evaluation, min_gain)
    markdown = "# Upper bounds: single-task models vs the mix-all baseline\n\n"
    markdown += (
        "Mean PSNR (dB) / SSIM on each test set; `psnr_input` is the degraded input itself, `gain_*` what each "
        f"model adds over it, `harmed_*` the test images it makes worse than their input by more than {HARM_DB:g} "
        "dB, `learning_mixall` whether the mix-all model learned the degradation (`below_input`: a failed mixed "
        "training); drop = single-task PSNR - mix-all PSNR.\n\n"
    )
    markdown += table.round(3).to_markdown(index=False) + "\n"
    for line in mixall_warnings(table):
        markdown += f"\n**Warning**: {line}\n"
        print(f"warning: {line}", file=sys.stderr)
    with io.atomic_path(summary_path) as tmp:
        tmp.write_text(markdown)
    return table


MODELS = ("upper", "mixall", "grids")  # Table 1's own models, judged against the input


def table1(
    groups: pd.DataFrame,
    evaluation: pd.DataFrame,
    baselines: dict[str, pd.DataFrame] | None = None,
    min_gain: float = 0.5,
) -> pd.DataFrame:
    """The paper's Table 1: per test set and degradation, mean PSNR of the single-task upper bound,
    the mix-all baseline, any extra baselines and the GRIDS group model; the GRIDS model's
    difference to the upper bound and to the mix-all baseline (dB, negative = worse); every
    model's gain over the input, harmed images and learning outcome (:mod:`grids.learning`); and
    one ``average`` row per test set (:func:`average_rows`)."""
    baselines = baselines or {}
    means = evaluation.groupby(["trained_on", "test_set", "degradation"]).psnr.mean()
    inputs = evaluation.groupby(["test_set", "degradation"]).psnr_input.mean()
    judged = judge(evaluation, min_gain)
    extra = {b: judge(t.assign(trained_on=b), min_gain) for b, t in baselines.items()}
    mix_all = mix_all_group(groups.degradation)
    rows = []
    for test_set in sorted(set(evaluation.test_set)):
        for name, group in zip(groups.degradation, groups.group):
            models = {"upper": name, "mixall": mix_all or name, "grids": group}
            row = {"test_set": test_set, "degradation": name, "group": group, "psnr_input": inputs[(test_set, name)]}
            row |= {f"psnr_{m}": means[(trained_on, test_set, name)] for m, trained_on in models.items()}
            for b, table in baselines.items():
                row[f"psnr_{b}"] = table[(table.test_set == test_set) & (table.degradation == name)].psnr.mean()
            for m, trained_on in models.items():
                found = judged.loc[(trained_on, test_set, name)]
                row |= {f"gain_{m}": found.gain, f"harmed_{m}": int(found.harmed), f"learning_{m}": found.learning}
            for b, found in extra.items():
                known = (b, test_set, name) in found.index
                row[f"gain_{b}"] = found.gain[(b, test_set, name)] if known else float("nan")
                row[f"harmed_{b}"] = int(found.harmed[(b, test_set, name)]) if known else 0
            rows.append(row)
    table = pd.DataFrame(rows)
    table["vs_upper"] = table.psnr_grids - table.psnr_upper
    table["vs_mixall"] = table.psnr_grids - table.psnr_mixall
    table = pd.concat([table, average_rows(table, min_gain)], ignore_index=True).sort_values("test_set", kind="stable")
    return table.reset_index(drop=True)[tables.columns("table1", baseline=list(baselines))]


def average_rows(table: pd.DataFrame, min_gain: float) -> pd.DataFrame:
    """One ``average`` row per test set of Table 1's degradation rows: PSNRs, differences and gains
    averaged, harmed images summed, and each model's learning outcome over the degradations
    (:func:`grids.learning.model_learning`)."""
    by = table.groupby("test_set", sort=False)
    numeric = [c for c in table.columns if c.startswith(("psnr_", "vs_", "gain_"))]
    averages = by[numeric].mean()
    averages = averages.join(by[[c for c in table.columns if c.startswith("harmed_")]].sum())
    for m in MODELS:
        averages[f"learning_{m}"] = by[f"gain_{m}"].apply(lambda gains: model_learning(gains, min_gain)).astype(str)
    averages = averages.reset_index()
    averages["degradation"], averages["group"] = "average", ""
    return averages[table.columns]


PUBLISHED_MARK = "†"
PUBLISHED_NOTE = (
    f"{PUBLISHED_MARK} published weights, evaluated as released, not retrained here; a x2/x4 network sees the "
    "degraded image downscaled by its scale (bicubic, antialiased) and returns the input's size."
)


def plot_table1(table: pd.DataFrame, path: str | Path, published: Sequence[str] = ()) -> None:
    """Grouped bars per degradation (one panel per test set): each model's PSNR gain over the
    degraded input (upper bound, mix-all, baselines, GRIDS), so the axis starts at the input's
    level, 0 dB, and the differences between models are not dwarfed by the PSNR itself; the input's
    own PSNR is under each degradation's name. ``published`` baselines are marked in the legend,
    which is one for the figure, right of the panels (clear of every bar and title)."""
    plt = io.pyplot()
    columns = [c for c in table.columns if c.startswith("psnr_") and c not in ("psnr_input", "psnr_grids")]
    columns += ["psnr_grids"]
    labels = [
        c.removeprefix("psnr_") + (PUBLISHED_MARK if c.removeprefix("psnr_") in published else "") for c in columns
    ]
    sets = list(dict.fromkeys(table.test_set))
    width_in = max(6.5, 0.2 * len(columns) * table.degradation.nunique() + 2.5)
    fig, axes = plt.subplots(
        len(sets), 1, figsize=(width_in, 0.6 + 3.4 * len(sets)), squeeze=False, layout="constrained"
    )
    width = 0.8 / len(columns)
    for ax, test_set in zip(axes[:, 0], sets):
        rows = table[table.test_set == test_set]
        x = range(len(rows))
        for k, (column, label) in enumerate(zip(columns, labels)):
            gain = rows[column] - rows.psnr_input
            ax.bar([i + (k - (len(columns) - 1) / 2) * width for i in x], gain, width, label=label)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ticks = [f"{name}\n(input {level:.1f})" for name, level in zip(rows.degradation, rows.psnr_input)]
        ax.set_xticks(list(x), ticks, rotation=30, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_ylabel("PSNR gain over the input (dB)")
        ax.set_xlabel("degradation (the degraded input's own PSNR, dB)", fontsize=9)
        ax.set_title(f"Table 1 on {test_set}: gain over the degraded input", fontsize=10)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right upper", fontsize=8)
    io.save_figure(fig, path)


def gains_markdown(rows: pd.DataFrame, baselines: Sequence[str]) -> str:
    """Table 1's gains of one test set as Markdown: per model ``gain (harmed images)``, with its
    learning outcome when it did not learn."""
    shown = rows[["degradation"]].copy()
    for m in ["upper", "mixall", *baselines, "grids"]:
        cells = [f"{g:+.2f} ({h})" for g, h in zip(rows[f"gain_{m}"], rows[f"harmed_{m}"])]
        if m in MODELS:
            cells = [c + ("" if o == LEARNED else f" {o}") for c, o in zip(cells, rows[f"learning_{m}"])]
        shown[m] = cells
    return shown.to_markdown(index=False) + "\n"


def write_table1(
    groups_file: str,
    eval_files: list[str],
    baseline_files: dict[str, str],
    table_path: str | Path,
    markdown_path: str | Path,
    chart_path: str | Path,
    published: Sequence[str] = (),
    html_path: str | Path | None = None,
    min_gain: float = 0.5,
    verified_file: str | None = None,
) -> pd.DataFrame:
    """Table 1 as Parquet (``table_path``), Markdown and a bar chart; the ``published`` baselines
    (released weights, not trained here) are marked with a dagger, as in the paper. The notes name
    every single-task model that gained less than ``min_gain`` dB over its input, say whether the
    mix-all model learned, and name the search's failed mixed trainings (``verified_file``, table
    ``grouping_verified``); a failed training is also named on stderr (the rule's log)."""
    groups = pd.read_parquet(groups_file)
    evaluation = io.read_parquets(eval_files)
    baselines = {name: pd.read_parquet(f) for name, f in baseline_files.items()}
    verified = pd.read_parquet(verified_file) if verified_file else None
    table = table1(groups, evaluation, baselines, min_gain)
    tables.write(table, "table1", table_path)
    markdown = "# Table 1: GRIDS group models vs the single-task upper bound and the mix-all baseline\n\n"
    markdown += (
        "Mean PSNR (dB) per degradation; `psnr_input` is the degraded input itself (no restoration), the "
        "baseline every model is judged against first; `vs_upper` = GRIDS - single-task, `vs_mixall` = GRIDS - "
        "mix-all (positive: GRIDS is better). Below each PSNR table: every model's mean gain over the input "
        f"(dB) and, in brackets, the test images it makes worse than their input by more than {HARM_DB:g} dB; "
        f"`did_not_learn`: gain below grouping.min_learned_gain = {min_gain:g} dB; `below_input`: gain below 0 (for a "
        "mixed model, a failed training).\n\n"
    )
    partition = groups.groupby("group", sort=False).degradation.apply(list)
    markdown += "Groups: " + "; ".join("{" + ", ".join(m) + "}" for m in partition) + "\n"
    marked = {f"psnr_{name}": f"psnr_{name}{PUBLISHED_MARK}" for name in published}
    psnr = [c for c in table.columns if c.startswith(("psnr_", "vs_"))]
    for test_set, rows in table.groupby("test_set", sort=False):
        shown = rows[["degradation", "group", *psnr]].rename(columns=marked).round(3)
        markdown += f"\n## {test_set}\n\n" + shown.to_markdown(index=False) + "\n"
        markdown += "\nGain over the input (dB) and harmed images:\n\n" + gains_markdown(rows, list(baselines))
    markdown += "\n## Notes\n\n" + not_learned_note(table, min_gain)
    markdown += "".join(f"\n{line[0].upper() + line[1:]}.\n" for line in mixall_lines(table))
    markdown += "\n" + mixall_scale_note(table) if mixall_scale_note(table) else ""
    markdown += "\n" + failed_trainings_note(verified, table) if verified is not None else ""
    if published:
        markdown += f"\n{PUBLISHED_NOTE}\n"
    io.write_markdown(markdown_path, markdown, html_path)
    plot_table1(table, chart_path, published)
    warn_failed_trainings(table, verified)
    return table


def warn_failed_trainings(table: pd.DataFrame, verified: pd.DataFrame | None) -> None:
    """On stderr (the rule's log), one line per degradation on which the mix-all model ends below
    its input (``table``: Table 1 rows), and per failed training of the search (``verified``)."""
    failed = table[(table.degradation != "average") & (table.learning_mixall == BELOW_INPUT)]
    for r in failed.itertuples():
        print(
            f"warning: the mix-all model ends below its degraded input on {r.degradation} ({r.test_set}: "
            f"{r.gain_mixall:+.2f} dB): a failed mixed training",
            file=sys.stderr,
        )
    if verified is not None:
        evidence.warn_failed_trainings(verified)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.report", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("upper-bounds")
    p.add_argument("--eval", nargs="+", required=True, help="evaluation tables of the single-task and mix-all models")
    p.add_argument("--table", required=True, help="evaluation.parquet to write")
    p.add_argument("--summary", required=True, help="summary.md to write")
    p.add_argument("--min-gain", type=float, default=0.5, help="grouping.min_learned_gain (dB): below, did not learn")
    p = sub.add_parser("table1")
    p.add_argument("--groups", required=True, help="final/groups.parquet (degradation, group)")
    p.add_argument("--eval", nargs="+", required=True, help="evaluation tables of every model in the table")
    p.add_argument("--baseline", nargs=2, action="append", default=[], metavar=("NAME", "EVAL"))
    p.add_argument("--published", action="append", default=[], help="a baseline that is published weights (marked)")
    p.add_argument("--table", required=True, help="table1.parquet to write")
    p.add_argument("--markdown", required=True, help="table1.md to write")
    p.add_argument("--chart", required=True, help="table1.png to write")
    p.add_argument("--html", help="table1.html to write (the Markdown as a page, for the Snakemake report)")
    p.add_argument("--min-gain", type=float, default=0.5, help="grouping.min_learned_gain (dB): those below are named")
    p.add_argument("--verified", help="grouping/verified.parquet: its failed mixed trainings are named")
    args = parser.parse_args(argv)
    if args.command == "upper-bounds":
        print(upper_bounds(args.eval, args.table, args.summary, args.min_gain).round(3).to_string(index=False))
    else:
        table = write_table1(
            args.groups,
            args.eval,
            dict(args.baseline),
            args.table,
            args.markdown,
            args.chart,
            args.published,
            args.html,
            args.min_gain,
            args.verified,
        )
        print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
