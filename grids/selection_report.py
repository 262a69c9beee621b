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
) -> dict[str, pd.DataFrame]:
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
                rows.append(
                    [
                        set_name,
                        name,
                        row.image_id,
                        seen,
                        true_group.get(name, ""),
                        choice.group,
                        seen and choice.group == true_group[name],
                        choice.distance,
                        choice.in_distribution,
                        psnr[(choice.group, *key)],
                        psnr[(true_group[name], *key)] if seen else nan,
                        psnr[(name, *key)] if seen else nan,
                    ]
                )
    accuracy = pd.DataFrame(rows, columns=tables.columns("selection_accuracy"))
    prediction, ood = [], []
    for set_name, part in accuracy.groupby("test_set", sort=False):
        for target, values in (("psnr", part.psnr_chosen), ("drop", part.psnr_single - part.psnr_chosen)):
            keep = values.notna().to_numpy()
            rho, p = spearman(part.distance.to_numpy()[keep], values.to_numpy()[keep])
            prediction.append([set_name, target, int(keep.sum()), rho, p])
        seen, other = part[part.seen], part[~part.seen]
        ood.append(
            [
                set_name,
                len(seen),
                len(other),
                float(seen.in_distribution.mean()),
                float((~other.in_distribution).mean()) if len(other) else nan,
                auroc(other.distance.to_numpy(), seen.distance.to_numpy()),
                selector.threshold,
                float(np.quantile(seen.distance, 0.95)),
            ]
        )
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
        ax.scatter(
            part.distance,
            part.psnr_chosen,
            s=30 if unseen else 18,
            marker="x" if unseen else "o",
            label=f"{name} (unseen)" if unseen else name,
            alpha=0.8,
        )
    ax.axvline(threshold, color="grey", linestyle="--", label=f"out of distribution > {threshold:g}")
    rho = prediction[prediction.target == "psnr"].spearman
    ax.set_title(f"Prediction without inference: Spearman rho = {', '.join(f'{r:.2f}' for r in rho)}")
    ax.set_xlabel("divergence to the chosen group (log KL)")
    ax.set_ylabel("PSNR of the chosen model (dB)")
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    io.save_figure(fig, path)


REPORT_FILES = ("divergences", "accuracy", "prediction", "ood", "summary", "confusion", "scatter")


def write_report(
    report: dict[str, pd.DataFrame], groups: pd.DataFrame, threshold: float, paths: dict[str, str | Path]
) -> None:
    """Write the :func:`selection_tables` (``selection_{name}`` tables), the summary and the two
    figures to ``paths`` (keyed by :data:`REPORT_FILES`: a table's name, ``summary``,
    ``confusion`` and ``scatter``)."""
    for name, table in report.items():
        tables.write(table, f"selection_{name}", paths[name])
    accuracy, prediction = report["accuracy"], report["prediction"]
    plot_confusion(accuracy, list(dict.fromkeys(groups.group)), paths["confusion"])
    plot_prediction(accuracy, prediction, threshold, paths["scatter"])
    per = (
        accuracy.groupby(["test_set", "degradation"], sort=False)
        .agg(
            seen=("seen", "first"),
            images=("correct", "size"),
            accuracy=("correct", "mean"),
            distance=("distance", "mean"),
            in_distribution=("in_distribution", "mean"),
            psnr_chosen=("psnr_chosen", "mean"),
            psnr_true=("psnr_true", "mean"),
        )
        .reset_index()
    )
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
    text += (
        "Unseen degradations (`selection.unseen`, no model trained on them) should be flagged: `unseen_flagged` "
        "is the fraction above the threshold, `seen_in_distribution` the fraction of trained ones below it, "
        "`auroc` how well the distance separates the two whatever the threshold, `seen_p95` the 95th "
        "percentile of the trained degradations' distances (a data-driven threshold).\n\n"
    )
    text += report["ood"].round(3).to_markdown(index=False) + "\n"
    with io.atomic_path(paths["summary"]) as tmp:
        tmp.write_text(text)
