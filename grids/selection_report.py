"""The selection report (rule ``selection_report``, ``python -m grids.selection report``): how well
the selector of :mod:`grids.selection` chooses, and whether its divergence predicts the result.

Kept apart from the selector, which ``grids select`` and ``grids restore`` use at run time: the
report needs the whole evaluation (every model on every test image) and draws figures, the
selector needs neither.

It selects a group for every degraded test image and writes (columns: the ``selection_*``
tables of :mod:`grids.tables`):

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

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from . import io, tables

if TYPE_CHECKING:
    from .selection import Selector


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(rho, p)``; NaN for fewer than 3 points or a constant side, where no rank correlation exists."""
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    result = spearmanr(x, y)
    return float(result.statistic), float(result.pvalue)


def selection_tables(
    selector: Selector,
    groups: pd.DataFrame,
    test_sets: dict[str, tuple[str, dict[str, str]]],
    evaluation: pd.DataFrame,
    unseen: list[str] = (),
    seed: int = 0,
    near_misses: list[str] = (),
) -> dict[str, pd.DataFrame]:
    """Select a group for every degraded test image; score the choice against the true group, and
    every out-of-distribution statistic of the selector against the PSNR the chosen model obtained
    (read from ``evaluation``: no model is run). ``unseen`` degradations (no model trained on
    them) have no true group: they measure whether a statistic calls them out of distribution,
    except the ``near_misses`` among them, which should be judged in distribution.
    ``test_sets``: name -> (clean manifest, {degradation: degraded manifest}), as
    :func:`grids.stage.test_set_manifests` reads them."""
    import time

    from tqdm import tqdm

    true_group = dict(zip(groups.degradation, groups.group))
    psnr = evaluation.set_index(["trained_on", "test_set", "degradation", "image"]).psnr
    nan = float("nan")
    div_rows, rows, score_rows, seconds = [], [], [], []
    for set_name, (_, degraded) in test_sets.items():
        for name in [*groups.degradation, *unseen]:
            if name not in degraded:
                raise ValueError(f"test set {set_name!r}: no degraded manifest given for {name}")
            manifest = io.read_manifest(degraded[name])
            for row in tqdm(manifest.itertuples(), total=len(manifest), desc=f"{set_name}/{name}", unit="img"):
                start = time.perf_counter()
                signature = selector.signature(io.load_png(row.path))
                seconds.append(time.perf_counter() - start)
                table, _ = selector.choose(signature)
                chosen = str(table.group.iloc[0])
                for d in table.itertuples():
                    div_rows.append([set_name, name, row.image_id, d.group, d.kl, d.distance])
                seen = name in true_group
                for statistic, score in selector.judge(signature, chosen).items():
                    limit = selector.statistics[statistic].threshold
                    score_rows.append([set_name, name, row.image_id, seen, statistic, score, score <= limit])
                key = (set_name, name, row.image_id)
                rows.append(
                    [
                        set_name,
                        name,
                        row.image_id,
                        seen,
                        true_group.get(name, ""),
                        chosen,
                        seen and chosen == true_group[name],
                        float(table.distance.iloc[0]),
                        nan,  # score, in_distribution and expected_drop: filled below
                        False,
                        nan,
                        psnr[(chosen, *key)],
                        psnr[(true_group[name], *key)] if seen else nan,
                        psnr[(name, *key)] if seen else nan,
                    ]
                )
    accuracy = pd.DataFrame(rows, columns=tables.columns("selection_accuracy"))
    scores = pd.DataFrame(score_rows, columns=tables.columns("selection_scores")[:-1])  # expected_drop: below
    accuracy["drop"] = accuracy.psnr_single - accuracy.psnr_chosen
    drop_fits, expected = [], {}
    for statistic, part in scores.groupby("statistic", sort=False):
        keys = ["test_set", "degradation", "image"]
        merged = accuracy.drop(columns=["score"]).merge(part[[*keys, "score"]], on=keys)
        fit, predicted = drop_prediction(merged, seed)
        drop_fits.append(fit.assign(statistic=statistic)[["statistic", "score", "drop"]])
        expected[statistic] = predicted
    default = scores[scores.statistic == selector.statistic].reset_index(drop=True)
    accuracy["score"] = default.score.to_numpy()
    accuracy["in_distribution"] = default.in_distribution.to_numpy()
    accuracy["expected_drop"] = expected[selector.statistic]
    scores["expected_drop"] = np.nan
    for statistic, predicted in expected.items():  # each statistic's rows are in accuracy's order
        scores.loc[scores.statistic == statistic, "expected_drop"] = predicted
    prediction, ood, benchmark = [], [], []
    for (set_name, statistic), part in scores.groupby(["test_set", "statistic"], sort=False):
        outcome = accuracy[accuracy.test_set == set_name]
        limit = selector.statistics[statistic].threshold
        for target, values in (
            ("psnr", outcome.psnr_chosen.to_numpy()),
            ("drop", outcome["drop"].to_numpy()),
        ):
            keep = ~np.isnan(values)
            rho, p = spearman(part.score.to_numpy()[keep], values[keep])
            prediction.append([set_name, statistic, target, int(keep.sum()), rho, p, nan])
        keep = outcome.seen.to_numpy()
        guess, truth = part.expected_drop.to_numpy()[keep], outcome["drop"].to_numpy()[keep]
        rho, p = spearman(guess, truth)
        mae = float(np.mean(np.abs(guess - truth))) if keep.any() else nan
        prediction.append([set_name, statistic, "expected_drop", int(keep.sum()), rho, p, mae])
        seen, other = part[part.seen], part[~part.seen]
        far, near = other[~other.degradation.isin(near_misses)], other[other.degradation.isin(near_misses)]
        ood.append(
            [
                set_name,
                statistic,
                statistic == selector.statistic,
                len(seen),
                len(far),
                float(seen.in_distribution.mean()),
                float((~far.in_distribution).mean()) if len(far) else nan,
                auroc(far.score.to_numpy(), seen.score.to_numpy()),
                float(near.in_distribution.mean()) if len(near) else nan,
                limit,
                float(np.quantile(seen.score, 0.95)),
                float(outcome.correct[outcome.seen].mean()),
                float(np.mean(seconds)),
            ]
        )
        psnr_seen = float(outcome.psnr_chosen[outcome.seen].mean())
        for name, one in other.groupby("degradation", sort=False):
            obtained = outcome[outcome.degradation == name].psnr_chosen
            benchmark.append(
                [
                    set_name,
                    statistic,
                    name,
                    len(one),
                    float((~one.in_distribution).mean()),
                    auroc(one.score.to_numpy(), seen.score.to_numpy()),
                    float(one.score.mean()),
                    float(obtained.mean()),
                    psnr_seen,
                    float(one.expected_drop.mean()),
                ]
            )
    return {
        "divergences": pd.DataFrame(div_rows, columns=tables.columns("selection_divergences")),
        "accuracy": accuracy[tables.columns("selection_accuracy")],
        "scores": scores[tables.columns("selection_scores")],
        "prediction": pd.DataFrame(prediction, columns=tables.columns("selection_prediction")),
        "ood": pd.DataFrame(ood, columns=tables.columns("selection_ood")),
        "unseen": pd.DataFrame(benchmark, columns=tables.columns("selection_unseen")),
        "drop_fit": pd.concat(drop_fits, ignore_index=True)[tables.columns("selection_drop_fit")],
    }


def drop_prediction(rows: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The drop predicted from the score, per row of ``rows`` (``seen, image, score, drop``): for a
    seen image the out-of-fold prediction (:func:`grids.ood.cross_fitted_drops`, the fit never saw
    that image), for an unseen one the fit on every seen image; also returns that fit's knots."""
    from .ood import cross_fitted_drops, fit_drop, predict_drop

    seen = rows.seen.to_numpy()
    predicted = np.full(len(rows), np.nan)
    if not seen.any():
        return pd.DataFrame({"score": [], "drop": []}, dtype=np.float64), predicted
    x, y = rows.score.to_numpy()[seen], rows["drop"].to_numpy()[seen]
    fit = fit_drop(x, y)
    predicted[seen] = cross_fitted_drops(rows.image.to_numpy()[seen], x, y, seed)
    predicted[~seen] = predict_drop(fit, rows.score.to_numpy()[~seen])
    return fit, predicted


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random ``positive`` scores above a random ``negative`` (ties count 1/2):
    how well the distance separates unseen from seen degradations, whatever the threshold."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    # The Mann-Whitney U of the positives counts exactly those pairs (a tie as 1/2); the p-value,
    # not used, is the cheap asymptotic one.
    u = mannwhitneyu(positive, negative, method="asymptotic").statistic
    return float(u / (len(positive) * len(negative)))


def plot_confusion(accuracy: pd.DataFrame, groups: list[str], path: str | Path) -> None:
    """Rows: the true degradation; columns: the chosen group; the true group's cell outlined."""
    plt = io.pyplot()
    names = list(dict.fromkeys(accuracy.degradation))
    counts = pd.crosstab(accuracy.degradation, accuracy.chosen_group).reindex(index=names, columns=groups, fill_value=0)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 0.9 * len(groups)), 1.6 + 0.45 * len(names)))
    image = ax.imshow(counts.to_numpy(), cmap="Blues", aspect="auto")
    truth = dict(zip(accuracy.degradation, accuracy.true_group))
    for i, name in enumerate(names):
        for j, group in enumerate(groups):
            ink = io.ink_on(image.cmap(image.norm(counts.iloc[i, j])))
            ax.text(j, i, counts.iloc[i, j], ha="center", va="center", fontsize=10, color=ink)
            if truth[name] == group:  # unseen degradations have no true group
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:orange", lw=2))
    ax.set_xticks(range(len(groups)), [g.replace("+", "+\n") for g in groups], fontsize=8)
    unseen = set(accuracy.degradation[~accuracy.seen])
    ax.set_yticks(range(len(names)), [f"{n} (unseen)" if n in unseen else n for n in names], fontsize=9)
    ax.set_xlabel("chosen group")
    ax.set_ylabel("true degradation")
    # an unseen degradation has no true group: the accuracy is over the trained degradations' images
    seen = accuracy[accuracy.seen]
    ax.set_title(
        f"Model selection: {seen.correct.mean():.0%} of {len(seen)} images\n"
        "of trained degradations get their group\n(orange: the true group)",
        fontsize=10,
    )
    fig.tight_layout()
    io.save_figure(fig, path)


SEEN_MARKERS = ("o", "s", "^", "D", "v", "<")
UNSEEN_MARKERS = ("x", "+", "X", "P", "*", "1")


def category_styles(unseen: list[bool]) -> list[tuple[tuple[float, ...], str]]:
    """A ``(colour, marker)`` per category, no two alike (for up to 60 categories): the 20 colours
    of tab20 (its 10 dark ones first, so that up to 10 categories get matplotlib's default colours),
    the marker changing with every 10 (so a light colour is also told from its dark twin by its
    shape); a category in ``unseen`` gets a cross-like marker instead of a filled one."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    palette = [*tab20[0::2], *tab20[1::2]]
    return [
        (palette[k % len(palette)], (UNSEEN_MARKERS if u else SEEN_MARKERS)[(k // 10) % len(SEEN_MARKERS)])
        for k, u in enumerate(unseen)
    ]


def plot_prediction(accuracy: pd.DataFrame, statistic: str, threshold: float, path: str | Path) -> None:
    """The default statistic's score of each test image vs the PSNR its chosen model obtained, one
    colour and marker per degradation (crosses: unseen), the legend beside the axes."""
    from scipy.stats import spearmanr

    plt = io.pyplot()
    parts = list(accuracy.groupby("degradation", sort=False))
    styles = category_styles([not part.seen.iloc[0] for _, part in parts])
    ncols = 1 if len(parts) <= 16 else 2
    fig, ax = plt.subplots(figsize=(7 + 1.9 * ncols, 4.6), layout="constrained")
    for (name, part), (colour, marker) in zip(parts, styles):
        unseen = not part.seen.iloc[0]
        ax.scatter(
            part.score,
            part.psnr_chosen,
            s=36 if unseen else 18,
            color=colour,
            marker=marker,
            linewidths=1.6 if unseen else None,  # the crosses are lines: thick enough for the light colours
            label=f"{name} (unseen)" if unseen else name,
            alpha=0.9 if unseen else 0.8,
        )
    ax.axvline(threshold, color="grey", linestyle="--", label=f"out of distribution > {threshold:.3g}")
    rho = spearmanr(accuracy.score, accuracy.psnr_chosen).statistic if len(accuracy) > 2 else float("nan")
    ax.set_title(f"Prediction without inference ({statistic}): Spearman rho = {rho:.2f}")
    ax.set_xlabel(f"{statistic} score against the chosen group")
    ax.set_ylabel("PSNR of the chosen model (dB)")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, ncols=ncols)
    io.save_figure(fig, path)


def plot_ood(scores: pd.DataFrame, ood: pd.DataFrame, path: str | Path) -> None:
    """One panel per statistic: every test image's score, seen degradations pooled (grey) and
    each unseen one on its own row, with the statistic's threshold and AUROC."""
    plt = io.pyplot()
    statistics = list(dict.fromkeys(scores.statistic))
    names = ["seen", *dict.fromkeys(scores.degradation[~scores.seen])]
    fig, axes = plt.subplots(
        1, len(statistics), figsize=(3.2 * len(statistics), 1.6 + 0.45 * len(names)), squeeze=False
    )
    for ax, statistic in zip(axes[0], statistics):
        part = scores[scores.statistic == statistic]
        row = ood[ood.statistic == statistic].iloc[0]
        for i, name in enumerate(names):
            values = part.score[part.seen] if name == "seen" else part.score[part.degradation == name]
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(values, i + jitter, s=12, color="grey" if name == "seen" else f"C{i % 10}", alpha=0.7)
        ax.axvline(row.threshold, color="black", linestyle="--", lw=1)
        default = " (default)" if row.default else ""
        ax.set_title(f"{statistic}{default}\nAUROC {row.auroc:.2f}, seen in {row.seen_in_distribution:.0%}", fontsize=9)
        ax.set_yticks(range(len(names)), names if ax is axes[0][0] else [""] * len(names), fontsize=8)
        ax.set_xlabel("score (dashed: threshold)", fontsize=8)
        ax.invert_yaxis()
    fig.suptitle("Out-of-distribution statistics on the test sets: unseen degradations should lie right of the line")
    fig.tight_layout()
    io.save_figure(fig, path)


REPORT_FILES = (
    "divergences",
    "accuracy",
    "scores",
    "prediction",
    "ood",
    "unseen",
    "drop_fit",
    "summary",
    "summary_html",
    "confusion",
    "scatter",
    "ood_plot",
)


def write_report(
    report: dict[str, pd.DataFrame], groups: pd.DataFrame, selector: Selector, paths: dict[str, str | Path]
) -> None:
    """Write the :func:`selection_tables` (``selection_{name}`` tables), the summary and the three
    figures to ``paths`` (keyed by :data:`REPORT_FILES`: a table's name, ``summary``,
    ``confusion``, ``scatter`` and ``ood_plot``)."""
    for name, table in report.items():
        tables.write(table, f"selection_{name}", paths[name])
    accuracy, prediction, ood = report["accuracy"], report["prediction"], report["ood"]
    threshold = selector.threshold
    plot_confusion(accuracy, list(dict.fromkeys(groups.group)), paths["confusion"])
    plot_prediction(accuracy, selector.statistic, threshold, paths["scatter"])
    plot_ood(report["scores"], ood, paths["ood_plot"])
    per = (
        accuracy.groupby(["test_set", "degradation"], sort=False)
        .agg(
            seen=("seen", "first"),
            images=("correct", "size"),
            accuracy=("correct", "mean"),
            distance=("distance", "mean"),
            score=("score", "mean"),
            in_distribution=("in_distribution", "mean"),
            expected_drop=("expected_drop", "mean"),
            psnr_chosen=("psnr_chosen", "mean"),
            psnr_true=("psnr_true", "mean"),
        )
        .reset_index()
    )
    per["accuracy"] = per.accuracy.where(per.seen)  # no true group for an unseen degradation
    seen = accuracy[accuracy.seen]
    text = "# Adaptive model selection\n\n"
    text += f"Overall: {seen.correct.mean():.1%} of {len(seen)} test images of trained degradations get their true "
    text += f"group's model; {seen.in_distribution.mean():.1%} of them are judged in distribution by the "
    text += f"`{selector.statistic}` statistic (score <= {threshold:.4g}).\n\n"
    text += per.round(3).to_markdown(index=False) + "\n\n## Out-of-distribution statistics\n\n"
    text += (
        "Every statistic scores each test image (`paper` and `nearest` against the group chosen for it, `knn` and "
        "`mahalanobis` against every trained degradation; the choice itself is the same for all). "
        "`seen_in_distribution`: fraction of images of trained degradations at or below the threshold; "
        "`unseen_flagged`: fraction of `selection.unseen` images above it, near misses (`selection.near_misses`) "
        "left out; `auroc`: how well the score separates those unseen images from seen ones, whatever the "
        "threshold; `near_miss_in_distribution`: fraction of near-miss images at or below it; "
        "`seen_p95`: the seen scores' 95th percentile; `seconds`: "
        "signature time per image (shared by all statistics; see bench/bench_ood.py for each one's own cost).\n\n"
    )
    text += ood.round(3).to_markdown(index=False) + "\n\n### Per unseen degradation\n\n"
    text += (
        "`flagged`: fraction above the threshold; `auroc`: against every seen image; `psnr_chosen`: the PSNR the "
        "chosen model obtained on them, against `psnr_seen`, that of the seen images: a flag is right when the "
        "chosen model does clearly worse than on seen inputs.\n\n"
    )
    text += report["unseen"].round(3).to_markdown(index=False) + "\n\n## Prediction without inference\n\n"
    text += (
        "Spearman rank correlation of each statistic's score with the PSNR the chosen model obtained (`psnr`) and "
        "with its loss against the degradation's single-task model (`drop`); `expected_drop`: the drop predicted "
        "from the score by a monotone fit, out of fold (the fit never saw the image), against the obtained drop "
        "(`mae`: mean absolute error, dB).\n\n"
    )
    text += prediction.round(4).to_markdown(index=False) + "\n"
    io.write_markdown(paths["summary"], text, paths["summary_html"])
