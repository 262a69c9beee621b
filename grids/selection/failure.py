"""Stage ``selection_failure``: can a training-free score say, before restoring, that the chosen
model will not help this image?

"Unseen versus seen" is the wrong question for a user: an unseen rain image restored as well as a
seen one is no failure, and a seen JPEG image the model barely improves is one. So every degraded
test image (seen and unseen degradations alike) gets an outcome, and every out-of-distribution
statistic is scored on predicting it:

* ``gain``: the chosen group model's PSNR over the degraded input (the identity baseline);
* ``oracle_gain``: the best gain of any final group model, or of the identity (0: nothing
  restored), on that image;
* ``fails``: ``gain < min_gain`` (``selection.min_helpful_gain``, 0.5 dB by default); where the
  selector chose the identity, ``oracle_gain >= min_gain`` (a restoration missed).

The clean test images are a subset of their own (``clean``), beside ``seen`` (trained degradations)
and ``unseen``: a model's output of a clean image is scored against the image itself, so the
identity scores the PSNR ceiling (60 dB) and every change costs.

Per statistic (a larger score means further from the training degradations, so more likely to
fail): the AUROC of the score for ``fails``, the false-positive rate at 95 % true-positive rate
(how many good restorations a flag that catches 95 % of the failures also stops), and Spearman's
rho of the score with the realised gain. Nothing is run: the gains come from the evaluation
tables, the choices and scores from the selection report.

    python -m grids.selection.failure --accuracy results/selection/accuracy.parquet \
        --scores results/selection/scores.parquet --groups results/final/groups.parquet \
        --eval results/eval/input.parquet \
        results/eval/G.parquet results/eval/others/G.parquet ... --min-gain 0.5 --alpha 0.05 \
        --mix-all M --images results/selection/failure_images.parquet --out results/selection/failure.parquet \
        --figure results/selection/failure.png --gain results/selection/gain.parquet \
        --fallback results/selection/fallback.parquet

Two more answers come from the same rows:

* the **expected gain** (:mod:`grids.selection.gain`), predicted before restoring: its error and how often
  the realised gain falls in its interval (table ``selection_gain``), seen and unseen apart;
* the **fallback** (``selection.fallback``): ``grids restore`` sends a flagged image (out of
  distribution by the default statistic, or expected to gain less than ``min_gain``) to the
  mix-all model or returns it unchanged (``identity``). Table ``selection_fallback`` gives the
  mean PSNR with each, and its change against no fallback with a bootstrap interval over images,
  on seen degradations (which a fallback must not hurt) and unseen ones.

Columns: tables ``selection_failure_images``, ``selection_failure``, ``selection_gain`` and
``selection_fallback`` of :mod:`grids.tables`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io, tables
from ..grouping.names import CLEAN, IDENTITY, IDENTITY_GROUP
from ..seeds import rng_for
from ..stage import finite_float
from .fallback import FALLBACKS, Fallback
from .report import auroc, model_of, spearman

KEYS = ["test_set", "degradation", "image"]
TPR = 0.95  # the share of failures a flag must catch in the FPR column


def image_outcomes(
    accuracy: pd.DataFrame, evaluation: pd.DataFrame, groups: list[str], min_gain: float, mix_all: str | None = None
) -> pd.DataFrame:
    """One row per selected test image: the chosen and the oracle's gain over the input, ``fails``,
    the gain predicted before restoring, and whether the selector flagged the image.

    ``evaluation``: eval rows of the identity (``trained_on == 'input'``) and of every final group
    model (``groups``) on every test image, as the ``evaluate``/``evaluate_others``/``evaluate_input``
    rules write; the oracle is the best of ``groups`` per image. ``mix_all``: the mix-all model's
    name, whose rows give ``psnr_mixall`` (the fallback's; NaN without it).
    """
    rows = accuracy[[*KEYS, "seen", "chosen_group"]].reset_index(drop=True)
    rows = pd.concat([rows, model_psnrs(rows, evaluation, groups)], axis=1)
    rows["gain"] = rows.psnr_chosen - rows.psnr_input
    rows["oracle_gain"] = rows.psnr_oracle - rows.psnr_input
    rows["fails"] = failed(rows.chosen_group, rows.gain, rows.oracle_gain, min_gain)
    for column in ("expected_gain", "gain_low", "gain_high"):
        rows[column] = accuracy[column].to_numpy()
    rows["covered"] = (rows.gain >= rows.gain_low) & (rows.gain <= rows.gain_high)
    rows["flagged"] = Fallback("none", min_gain).flags(
        accuracy.in_distribution.to_numpy(bool), rows.expected_gain.to_numpy(), rows.chosen_group.to_numpy()
    )
    mixall = evaluation[evaluation.trained_on == mix_all].drop_duplicates(KEYS).set_index(KEYS).psnr
    rows["psnr_mixall"] = mixall.reindex(pd.MultiIndex.from_frame(rows[KEYS])).to_numpy(np.float64)
    return rows[tables.columns("selection_failure_images")].reset_index(drop=True)


def failed(chosen, gain, oracle_gain, min_gain: float) -> np.ndarray:
    """Whether each image's restoration fails: a chosen model gains less than ``min_gain`` over the
    input; the identity (nothing restored) fails only where a model would have gained ``min_gain``."""
    chosen, gain, oracle_gain = (np.asarray(values) for values in (chosen, gain, oracle_gain))
    return np.where(chosen == IDENTITY_GROUP, oracle_gain >= min_gain, gain < min_gain)


def model_psnrs(choices: pd.DataFrame, evaluation: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """``psnr_input, psnr_chosen, oracle_group, psnr_oracle`` for every row of ``choices``
    (``test_set, degradation, image, chosen_group``), from the eval rows of the identity and of the
    final ``groups``' models (the oracle: the best of them on the image); a missing one is named."""
    inputs = evaluation[evaluation.trained_on == IDENTITY].drop_duplicates(KEYS).set_index(KEYS).psnr
    models = evaluation[evaluation.trained_on.isin({*groups, IDENTITY})]  # the identity is a candidate
    models = models.drop_duplicates([*KEYS, "trained_on"]).reset_index(drop=True)  # a member's own and others' table
    # the first best: a model that ties with the identity (a clean image at the ceiling) does not beat it
    models = models.sort_values("trained_on", key=lambda on: on != IDENTITY, kind="stable")
    best = models.loc[models.groupby(KEYS).psnr.idxmax()].set_index(KEYS)
    keys = pd.MultiIndex.from_frame(choices[KEYS])
    chosen = pd.MultiIndex.from_frame(choices[KEYS].assign(model=choices.chosen_group.map(model_of)))
    oracle = best.trained_on.reindex(keys)
    rows = pd.DataFrame(
        {
            "psnr_input": inputs.reindex(keys).to_numpy(np.float64),
            "psnr_chosen": models.set_index([*KEYS, "trained_on"]).psnr.reindex(chosen).to_numpy(np.float64),
            "oracle_group": oracle.where(oracle != IDENTITY, IDENTITY_GROUP).to_numpy(),
            "psnr_oracle": best.psnr.reindex(keys).to_numpy(np.float64),
        }
    )
    missing = rows[["psnr_input", "psnr_chosen", "psnr_oracle"]].isna().any(axis=1).to_numpy()
    if missing.any():
        first = choices[missing].iloc[0]
        images = len(choices[missing][KEYS].drop_duplicates())
        raise ValueError(
            f"no evaluation of {first.chosen_group!r} or of the input on {first.test_set}/{first.degradation}/"
            f"{first.image} ({images} images): pass every final group's eval and others table and the input's"
        )
    return rows


def fpr_at_tpr(score: np.ndarray, positive: np.ndarray, tpr: float = TPR) -> float:
    """False-positive rate of the flag ``score >= t`` at the largest ``t`` that still flags at
    least ``tpr`` of the positives (NaN without positives or negatives)."""
    score, positive = np.asarray(score, float), np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return float("nan")
    ranked = np.sort(score[positive])[::-1]
    threshold = ranked[int(np.ceil(tpr * len(ranked))) - 1]  # that many positives score >= it
    return float((score[~positive] >= threshold).mean())


def risk_coverage(score: np.ndarray, fails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The risk–coverage curve of selective restoration: images accepted in order of increasing
    score (the most trusted first); at each coverage ``k / n`` the risk is the share of failures
    among the ``k`` accepted. Images of one score are accepted together (each position of a tie
    gets the risk of accepting the whole tie), so the curve does not depend on their order."""
    score, fails = np.asarray(score, float), np.asarray(fails, bool)
    order = np.argsort(score, kind="stable")
    score, fails = score[order], fails[order]
    failed = np.cumsum(fails)
    last_of_tie = np.searchsorted(score, score, side="right") - 1  # index of each tie's last image
    accepted = last_of_tie + 1
    return np.arange(1, len(score) + 1) / len(score), failed[last_of_tie] / accepted


def aurc(score: np.ndarray, fails: np.ndarray) -> float:
    """Area under the risk–coverage curve (:func:`risk_coverage`): the mean risk over the coverages
    (smaller is better; the failure rate for an uninformative score). NaN without images."""
    if len(score) == 0:
        return float("nan")
    return float(risk_coverage(score, fails)[1].mean())


def optimal_aurc(fails: np.ndarray) -> float:
    """The AURC of a perfect ranking, every failure accepted last: risk ``max(0, k - helped) / k``."""
    fails = np.asarray(fails, bool)
    if len(fails) == 0:
        return float("nan")
    accepted = np.arange(1, len(fails) + 1)
    return float((np.maximum(0, accepted - (~fails).sum()) / accepted).mean())


def failure_metrics(outcomes: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per test set, statistic and subset (:data:`SUBSETS`): how well its score predicts ``fails``
    and the gain."""
    rows = []
    joined = scores[[*KEYS, "statistic", "score"]].merge(outcomes, on=KEYS, validate="many_to_one")
    for statistic, part in joined.groupby("statistic", sort=False):
        for test_set, subset, group in subsets(part):
            rows.append([test_set, statistic, subset, *_failure_row(group)])
    return pd.DataFrame(rows, columns=tables.columns("selection_failure"))


def _failure_row(group: pd.DataFrame) -> list:
    fails = group.fails.to_numpy()
    score = group.score.to_numpy()
    return [
        len(group),
        int(fails.sum()),
        auroc(score[fails], score[~fails]),
        fpr_at_tpr(score, fails),
        spearman(score, group.gain.to_numpy())[0],
        aurc(score, fails),
        optimal_aurc(fails),
        float(group.gain.mean()),
        float(group.oracle_gain.mean()),
    ]


SUBSETS = ("all", "seen", "unseen", "clean")  # seen: the trained degradations; clean: nothing to restore


def subset_of(outcomes: pd.DataFrame) -> pd.Series:
    """Each image's subset: ``clean``, ``seen`` (a trained degradation) or ``unseen``."""
    return pd.Series(np.where(outcomes.seen, "seen", "unseen"), index=outcomes.index).mask(
        outcomes.degradation == CLEAN, "clean"
    )


def subsets(outcomes: pd.DataFrame):
    """``(test_set, subset, rows)`` for every test set and subset of :data:`SUBSETS` (non-empty)."""
    for test_set, part in outcomes.groupby("test_set", sort=False):
        which = subset_of(part)
        for subset in SUBSETS:
            rows = part if subset == "all" else part[which == subset]
            if len(rows):
                yield test_set, subset, rows


def gain_metrics(outcomes: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Per test set and subset: the error of the expected gain and its interval's coverage."""
    rows = []
    for test_set, subset, part in subsets(outcomes):
        error = part.expected_gain - part.gain
        rows.append(
            [
                test_set,
                subset,
                len(part),
                float(error.abs().mean()),
                float(error.mean()),
                spearman(part.expected_gain.to_numpy(), part.gain.to_numpy())[0],
                float(part.covered.mean()),
                1 - alpha,
                float((part.gain_high - part.gain_low).mean()),
            ]
        )
    return pd.DataFrame(rows, columns=tables.columns("selection_gain"))


BOOTSTRAP = 1000  # image resamples of a fallback's PSNR change


def fallback_effect(outcomes: pd.DataFrame, min_gain: float, seed: int = 0) -> pd.DataFrame:
    """Per test set, subset and fallback: mean PSNR, and its change against no fallback with a 95 %
    bootstrap interval over the test images (seeded; ``outcomes.flagged`` under ``min_gain``)."""
    rows = []
    for test_set, subset, part in subsets(outcomes):
        base = part.psnr_chosen.to_numpy()
        for fallback in FALLBACKS:
            rule = Fallback(fallback, min_gain)
            if not rule.measured(part):
                continue  # no mix-all model (one degradation) or no evaluation of it
            change = rule.psnr(part) - base
            rng = rng_for(seed, "fallback", test_set, subset, fallback)
            means = change[rng.integers(0, len(change), (BOOTSTRAP, len(change)))].mean(axis=1)
            low, high = np.percentile(means, [2.5, 97.5])
            psnr = base + change
            n_routed = rule.routed(part)
            rows.append(
                [test_set, subset, fallback, len(part), n_routed, float(psnr.mean()), float(change.mean()), low, high]
            )
    return pd.DataFrame(rows, columns=tables.columns("selection_fallback"))


def plot_failure(outcomes: pd.DataFrame, scores: pd.DataFrame, min_gain: float, path: str | Path) -> None:
    """Score against realised gain, one panel per statistic (failures and unseen degradations
    marked), then every statistic's risk–coverage curve in one panel."""
    plt = io.pyplot()
    joined = scores[[*KEYS, "statistic", "score"]].merge(outcomes, on=KEYS)
    statistics = list(dict.fromkeys(joined.statistic))
    ncols = min(3, len(statistics) + 1)  # a grid, so that the figure stays readable at a page's width
    nrows = -(-(len(statistics) + 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 0.6 + 3.0 * nrows), squeeze=False)
    for ax, statistic in zip(axes.flat, statistics):
        part = joined[joined.statistic == statistic]
        for seen, marker, label in ((True, "o", "seen"), (False, "^", "unseen")):
            for fails, colour in ((False, "tab:blue"), (True, "tab:red")):
                dots = part[(part.seen == seen) & (part.fails == fails)]
                name = f"{label}, {'fails' if fails else 'helps'}"
                ax.scatter(dots.score, dots.gain, s=14, marker=marker, color=colour, alpha=0.7, label=name)
        ax.axhline(min_gain, color="grey", lw=0.8, ls="--")
        fails = part.fails.to_numpy()
        ax.set_title(f"{statistic}: AUROC {auroc(part.score[fails], part.score[~fails]):.2f}", fontsize=10)
        ax.set_xlabel("score (larger: further from training)", fontsize=8)
    for row in axes:
        row[0].set_ylabel("gain over the input (dB)", fontsize=8)
    plot_risk_coverage(axes.flat[len(statistics)], joined, statistics)
    spare = list(axes.flat[len(statistics) + 1 :])
    for ax in spare:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if spare:
        spare[0].legend(handles, labels, loc="center", fontsize=9, title=f"dashed line: {min_gain:g} dB")
    else:  # the last statistic's panel carries the markers' legend
        axes.flat[len(statistics) - 1].legend(
            fontsize=6, loc="best", title=f"dashed: {min_gain:g} dB", title_fontsize=6
        )
    fig.suptitle(f"Does the score predict a restoration that gains < {min_gain:g} dB?", fontsize=11)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_risk_coverage(ax, joined: pd.DataFrame, statistics: list[str]) -> None:
    """Each statistic's risk–coverage curve (:func:`risk_coverage`) and its AURC, over all images."""
    for statistic in statistics:
        part = joined[joined.statistic == statistic]
        coverage, risk = risk_coverage(part.score.to_numpy(), part.fails.to_numpy())
        ax.plot(coverage, risk, lw=1.2, label=f"{statistic} (AURC {risk.mean():.3f})")
    ax.axhline(float(joined.drop_duplicates(KEYS).fails.mean()), color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("coverage (share of images restored)", fontsize=8)
    ax.set_ylabel("risk (share of those that fail)", fontsize=8)
    ax.set_title("restore the lowest scores first", fontsize=10)
    ax.legend(fontsize=6, loc="best")


def add_outcome_arguments(parser) -> None:
    """What an image's outcome is read from (the routers' benchmark reads them alike)."""
    parser.add_argument("--eval", nargs="+", required=True, help="eval tables: the input's and every final group's")
    help_text = "selection.min_helpful_gain: a gain below it fails (dB)"
    parser.add_argument("--min-gain", type=finite_float, required=True, help=help_text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.selection.failure", description=__doc__.split("\n")[0])
    parser.add_argument("--accuracy", required=True, help="the selection report's accuracy.parquet")
    parser.add_argument("--scores", required=True, help="the selection report's scores.parquet")
    parser.add_argument("--groups", required=True, help="results/final/groups.parquet (the final groups)")
    add_outcome_arguments(parser)
    parser.add_argument("--alpha", type=float, required=True, help="selection.alpha: the gain interval's level")
    parser.add_argument("--mix-all", default=None, help="the mix-all model's name (its eval tables among --eval)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    parser.add_argument("--images", required=True, help="per-image outcomes (.parquet) to write")
    parser.add_argument("--out", required=True, help="per-statistic metrics (.parquet) to write")
    parser.add_argument("--figure", required=True, help="score against gain (.png) to write")
    parser.add_argument("--gain", required=True, help="the expected gain's errors and coverage (.parquet) to write")
    parser.add_argument("--fallback", required=True, help="the fallbacks' effect (.parquet) to write")
    args = parser.parse_args(argv)
    groups = sorted(set(pd.read_parquet(args.groups).group))
    evaluation = io.read_parquets(args.eval)
    outcomes = image_outcomes(pd.read_parquet(args.accuracy), evaluation, groups, args.min_gain, args.mix_all)
    scores = pd.read_parquet(args.scores)
    metrics = failure_metrics(outcomes, scores)
    gain, fallback = gain_metrics(outcomes, args.alpha), fallback_effect(outcomes, args.min_gain, args.seed)
    tables.write(outcomes, "selection_failure_images", args.images)
    tables.write(metrics, "selection_failure", args.out)
    tables.write(gain, "selection_gain", args.gain)
    tables.write(fallback, "selection_fallback", args.fallback)
    plot_failure(outcomes, scores, args.min_gain, args.figure)
    print(f"{int(outcomes.fails.sum())} of {len(outcomes)} images fail (gain < {args.min_gain:g} dB)")
    for table in (metrics, gain, fallback):
        print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    from ..stage import run_stage

    sys.exit(run_stage(main))
