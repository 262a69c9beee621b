"""The selection report (rule ``selection_tables``, ``python -m grids.selection.report``): how well
the selector of :mod:`grids.selection.selector` chooses, and whether its divergence predicts the result.

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

The clean test images (degradation ``clean``) are a case of their own: their true group is the
identity (``identity``: nothing to restore, the input returned as it is), a candidate like the final
groups, so they count as seen.
* ``confusion.png``, ``prediction.png`` and ``summary.md``.

    python -m grids.selection.report --ggd G --groups F --references R --eval E... \
        --test-set NAME CLEAN DEGRADED... --signatures NAME FILE... \
        --descriptor W --features JSON --selection JSON --seed S \
        --divergences D --accuracy A --scores S --prediction P --ood O --unseen-table U \
        --drop-fit F --summary summary.md --confusion C.png --scatter S.png --ood-plot O.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from .. import io, tables
from ..grouping.names import CLEAN, IDENTITY, IDENTITY_GROUP
from ..plotting import category_styles
from ..stage import add_test_set_argument, test_set_manifests
from .signatures import add_signatures_argument, read_signatures
from .statistics import STATISTICS, listed

if TYPE_CHECKING:
    from ..features import Signature
    from .selector import Selector


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
    signatures: dict[tuple[str, str, str], tuple[Signature, float]],
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
    :func:`grids.stage.test_set_manifests` reads them; ``signatures``: their images' signatures
    (:func:`grids.selection.read_signatures`)."""
    divergences, accuracy, scores, seconds = select_test_images(
        selector, groups, test_sets, signatures, evaluation, unseen
    )
    drop = accuracy.psnr_single - accuracy.psnr_chosen  # against the degradation's own single-task model
    drop_fit = expected_drops(accuracy, scores, drop, selector.statistic, seed)
    return {
        "divergences": divergences,
        "accuracy": accuracy[tables.columns("selection_accuracy")],
        "scores": scores[tables.columns("selection_scores")],
        "prediction": prediction_table(accuracy, scores, drop),
        "ood": ood_table(selector, accuracy, scores, near_misses, seconds),
        "unseen": unseen_table(accuracy, scores, near_misses),
        "drop_fit": drop_fit,
    }


def trained(accuracy: pd.DataFrame) -> pd.Series:
    """The rows of trained degradations' images: seen, and not the clean case (a drop against a
    degradation's single-task model is measured and predicted on them)."""
    return accuracy.seen & (accuracy.degradation != CLEAN)


def model_of(choice: str) -> str:
    """The evaluation tables' model (``trained_on``) of a choice: the identity's (the clean case's
    "nothing to restore") is the input's own row, every other is a group model's or a degradation's."""
    return IDENTITY if choice in (IDENTITY_GROUP, CLEAN) else choice


def select_test_images(
    selector: Selector,
    groups: pd.DataFrame,
    test_sets: dict[str, tuple[str, dict[str, str]]],
    signatures: dict[tuple[str, str, str], tuple[Signature, float]],
    evaluation: pd.DataFrame,
    unseen: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[float]]:
    """The selector on every degraded test image (its precomputed signature): ``(divergences,
    accuracy, scores, seconds)``, ``accuracy``'s score columns and ``scores``' ``expected_drop``
    still to be filled in (:func:`expected_drops`); ``seconds``: the signature time of each image."""
    from tqdm import tqdm

    true_group = dict(zip(groups.degradation, groups.group))
    true_group[CLEAN] = IDENTITY_GROUP  # a clean image's right answer: nothing to restore
    psnr = evaluation.set_index(["trained_on", "test_set", "degradation", "image"]).psnr
    nan = float("nan")
    div_rows, rows, score_rows, seconds = [], [], [], []
    for set_name, (_, degraded) in test_sets.items():
        cases = [*groups.degradation, *unseen, *([CLEAN] if CLEAN in degraded else [])]
        for name in cases:
            if name not in degraded:
                raise ValueError(f"test set {set_name!r}: no degraded manifest given for {name}")
            manifest = io.read_manifest(degraded[name])
            seen = name in true_group
            for row in tqdm(manifest.itertuples(), total=len(manifest), desc=f"{set_name}/{name}", unit="img"):
                key = (set_name, name, row.image_id)
                if key not in signatures:
                    raise ValueError(f"no signature of test image {'/'.join(key)} among --signatures")
                signature, took = signatures[key]
                seconds.append(took)
                table, _ = selector.choice.choose(signature)
                chosen = str(table.group.iloc[0])
                div_rows.extend([*key, d.group, d.kl, d.distance] for d in table.itertuples())
                for statistic, score in selector.judge.scores(signature, chosen).items():
                    limit = selector.judge.statistics[statistic].threshold
                    score_rows.append([*key, seen, statistic, score, score <= limit])
                truth = true_group.get(name, "")
                gain = (nan,) * 3 if selector.gain is None else selector.gain.predict(signature, chosen)
                rows.append(
                    [
                        *key,
                        seen,
                        truth,
                        chosen,
                        seen and chosen == truth,
                        float(table.distance.iloc[0]),
                        nan,  # score, in_distribution and expected_drop: filled by expected_drops
                        False,
                        nan,
                        psnr[(model_of(chosen), *key)],
                        psnr[(model_of(truth), *key)] if seen else nan,
                        psnr[(model_of(name), *key)] if seen else nan,  # clean's own "model": the identity
                        *gain,
                    ]
                )
    return (
        pd.DataFrame(div_rows, columns=tables.columns("selection_divergences")),
        pd.DataFrame(rows, columns=tables.columns("selection_accuracy")),
        pd.DataFrame(score_rows, columns=tables.columns("selection_scores")[:-1]),
        seconds,
    )


def expected_drops(
    accuracy: pd.DataFrame, scores: pd.DataFrame, drop: pd.Series, default: str, seed: int
) -> pd.DataFrame:
    """Per statistic, the drop predicted from its score (:func:`drop_prediction`) into ``scores``;
    the ``default`` statistic's score, verdict and prediction into ``accuracy`` (both in place,
    every statistic's rows being in ``accuracy``'s order). Returns the fits' knots."""
    keys = ["test_set", "degradation", "image"]
    outcome = accuracy[keys].assign(seen=trained(accuracy), drop=drop)
    drop_fits, expected = [], {}
    for statistic, part in scores.groupby("statistic", sort=False):
        fit, expected[statistic] = drop_prediction(outcome.merge(part[[*keys, "score"]], on=keys), seed)
        drop_fits.append(fit.assign(statistic=statistic)[["statistic", "score", "drop"]])
    chosen = scores[scores.statistic == default]
    accuracy["score"] = chosen.score.to_numpy()
    accuracy["in_distribution"] = chosen.in_distribution.to_numpy()
    accuracy["expected_drop"] = expected[default]
    scores["expected_drop"] = np.nan
    for statistic, predicted in expected.items():
        scores.loc[scores.statistic == statistic, "expected_drop"] = predicted
    return pd.concat(drop_fits, ignore_index=True)[tables.columns("selection_drop_fit")]


def prediction_table(accuracy: pd.DataFrame, scores: pd.DataFrame, drop: pd.Series) -> pd.DataFrame:
    """Per test set and statistic: the score's rank correlation with the PSNR obtained and with the
    drop, and how well the expected drop predicts the drop."""
    nan, rows = float("nan"), []
    for (set_name, statistic), part in scores.groupby(["test_set", "statistic"], sort=False):
        here = (accuracy.test_set == set_name).to_numpy()
        for target, values in (("psnr", accuracy.psnr_chosen.to_numpy()[here]), ("drop", drop.to_numpy()[here])):
            keep = ~np.isnan(values)
            rho, p = spearman(part.score.to_numpy()[keep], values[keep])
            rows.append([set_name, statistic, target, int(keep.sum()), rho, p, nan])
        keep = trained(accuracy).to_numpy()[here]
        guess, truth = part.expected_drop.to_numpy()[keep], drop.to_numpy()[here][keep]
        rho, p = spearman(guess, truth)
        mae = float(np.mean(np.abs(guess - truth))) if keep.any() else nan
        rows.append([set_name, statistic, "expected_drop", int(keep.sum()), rho, p, mae])
    return pd.DataFrame(rows, columns=tables.columns("selection_prediction"))


def ood_table(
    selector: Selector, accuracy: pd.DataFrame, scores: pd.DataFrame, near_misses: list[str], seconds: list[float]
) -> pd.DataFrame:
    """Per test set and statistic: how it separates the unseen degradations (near misses apart)
    from the seen ones, at its threshold and whatever the threshold."""
    nan, rows = float("nan"), []
    for (set_name, statistic), part in scores.groupby(["test_set", "statistic"], sort=False):
        outcome = accuracy[accuracy.test_set == set_name]
        seen, other = part[part.seen], part[~part.seen]
        far, near = other[~other.degradation.isin(near_misses)], other[other.degradation.isin(near_misses)]
        rows.append(
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
                selector.judge.statistics[statistic].threshold,
                float(np.quantile(seen.score, 0.95)),
                float(outcome.correct[outcome.seen].mean()),
                float(np.mean(seconds)),
            ]
        )
    return pd.DataFrame(rows, columns=tables.columns("selection_ood"))


def unseen_table(accuracy: pd.DataFrame, scores: pd.DataFrame, near_misses: list[str]) -> pd.DataFrame:
    """Per test set, statistic and unseen degradation: how often it is flagged, and the PSNR its
    chosen models obtained against that of the seen images."""
    rows = []
    for (set_name, statistic), part in scores.groupby(["test_set", "statistic"], sort=False):
        outcome = accuracy[accuracy.test_set == set_name]
        seen, other = part[part.seen], part[~part.seen]
        psnr_seen = float(outcome.psnr_chosen[trained(outcome)].mean())  # the trained degradations: not clean
        for name, one in other.groupby("degradation", sort=False):
            obtained = outcome[outcome.degradation == name].psnr_chosen
            rows.append(
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
    return pd.DataFrame(rows, columns=tables.columns("selection_unseen"))


def drop_prediction(rows: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The drop predicted from the score, per row of ``rows`` (``seen, image, score, drop``): for a
    seen image the out-of-fold prediction (:func:`grids.selection.statistics.cross_fitted_drops`, the fit never saw
    that image), for an unseen one the fit on every seen image; also returns that fit's knots."""
    from .statistics import cross_fitted_drops, fit_drop, predict_drop

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


def plot_prediction(accuracy: pd.DataFrame, statistic: str, threshold: float, path: str | Path) -> None:
    """The default statistic's score of each test image vs the PSNR its chosen model obtained: the
    trained degradations in one panel, the unseen ones in another (so no colour repeats within a
    panel), one colour and marker per degradation, each panel's legend beneath it. The ``gain``
    statistic is drawn as the expected gain (minus its score), in dB, the way it is read."""
    from scipy.stats import spearmanr

    plt = io.pyplot()
    gain = statistic == "gain"
    x = -accuracy.score if gain else accuracy.score
    kinds = [
        (title, part) for title, part in (("trained", accuracy[accuracy.seen]), ("unseen", accuracy[~accuracy.seen]))
    ]
    kinds = [(title, part) for title, part in kinds if len(part)]
    rows = max(part.degradation.nunique() for _, part in kinds)
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(4.6 * len(kinds), 4.2 + 0.09 * rows), sharey=True, squeeze=False, layout="constrained"
    )
    for ax, (title, part) in zip(axes[0], kinds):
        groups = list(part.groupby("degradation", sort=False))
        for (name, frame), (colour, marker) in zip(groups, category_styles([title == "unseen"] * len(groups))):
            unseen = title == "unseen"
            ax.scatter(
                x[frame.index],
                frame.psnr_chosen,
                s=36 if unseen else 18,
                color=colour,
                marker=marker,
                linewidths=1.6 if unseen else None,  # the crosses are lines: thick enough to see
                label=f"{name} (unseen)" if unseen else name,
                alpha=0.85,
            )
        line = -threshold if gain else threshold
        ax.axvline(line, color="grey", linestyle="--", lw=1)
        ax.set_title(f"{title} degradations (dashed: flagged {'below' if gain else 'above'} {line:.3g})", fontsize=9)
        ax.set_xlabel("expected gain of the chosen model (dB)" if gain else f"{statistic} score (larger: further)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncols=2)
    axes[0][0].set_ylabel("PSNR of the chosen model (dB)")
    rho = spearmanr(x, accuracy.psnr_chosen).statistic if len(accuracy) > 2 else float("nan")
    fig.suptitle(f"Prediction without inference ({statistic}): Spearman rho = {rho:.2f}", fontsize=11)
    io.save_figure(fig, path)


def plot_ood(scores: pd.DataFrame, ood: pd.DataFrame, path: str | Path) -> None:
    """One panel per statistic: every test image's score, seen degradations pooled (grey) and
    each unseen one on its own row, with the statistic's threshold and AUROC."""
    plt = io.pyplot()
    statistics = list(dict.fromkeys(scores.statistic))
    names = ["seen", *dict.fromkeys(scores.degradation[~scores.seen])]
    colours = ["grey", *(f"C{k}" for k in (0, 1, 2, 3, 4, 5, 6, 8, 9) * len(names))]  # C7 is grey: the seen's
    fig, axes = plt.subplots(
        1, len(statistics), figsize=(3.2 * len(statistics), 1.6 + 0.45 * len(names)), squeeze=False
    )
    for ax, statistic in zip(axes[0], statistics):
        part = scores[scores.statistic == statistic]
        row = ood[ood.statistic == statistic].iloc[0]
        for i, name in enumerate(names):
            values = part.score[part.seen] if name == "seen" else part.score[part.degradation == name]
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(values, i + jitter, s=12, color=colours[i], alpha=0.7)
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
    by_group = listed([n for n, cls in STATISTICS.items() if cls.against_group], "and")
    by_all = listed([n for n, cls in STATISTICS.items() if not cls.against_group], "and")
    text += (
        f"Every statistic scores each test image ({by_group} against the group chosen for it, {by_all} "
        "against every trained degradation; the choice itself is the same for all). "
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


def report_flag(name: str) -> str:
    """The report's option for one of its files (``--unseen`` already names the degradations)."""
    return "unseen-table" if name == "unseen" else name.replace("_", "-")


def parser() -> argparse.ArgumentParser:
    from .selector import add_selector_arguments

    p = argparse.ArgumentParser(prog="python -m grids.selection.report", description=__doc__.split("\n")[0])
    add_selector_arguments(p)
    p.add_argument("--eval", nargs="+", required=True, help="evaluation tables of every single-task and final model")
    add_test_set_argument(p)
    add_signatures_argument(p)
    p.add_argument("--device", default="auto")
    p.add_argument("--unseen", action="append", default=[], help="a test degradation no model was trained on")
    what = {
        "summary": "summary.md",
        "summary_html": "summary.md as a page (Snakemake report)",
        "confusion": "confusion.png",
        "scatter": "prediction.png",
    }
    for name in REPORT_FILES:
        help_text = f"{what.get(name) or name + ' table'} to write"
        p.add_argument(f"--{report_flag(name)}", dest=f"file_{name}", required=True, help=help_text)
    return p


def main(argv: list[str] | None = None) -> int:
    from .selector import selector_from_arguments

    args = parser().parse_args(argv)
    selector, _, selection, groups, _ = selector_from_arguments(args, every_statistic=True)
    evaluation = io.read_parquets(args.eval)
    test_sets = test_set_manifests(args.test_set)
    signatures = read_signatures(args.signatures)
    near = selection["near_misses"]
    report = selection_tables(selector, groups, test_sets, signatures, evaluation, args.unseen, args.seed, near)
    write_report(report, groups, selector, {name: getattr(args, f"file_{name}") for name in REPORT_FILES})
    print(Path(args.file_summary).read_text())
    return 0


if __name__ == "__main__":
    from ..stage import run_stage

    sys.exit(run_stage(main))
