"""The failure benchmark (grids.selection.failure): outcomes from evaluation tables, and its metrics against
hand computations on small tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grids import tables
from grids.selection.failure import (
    aurc,
    failure_metrics,
    fallback_effect,
    fpr_at_tpr,
    gain_metrics,
    image_outcomes,
    optimal_aurc,
    risk_coverage,
    subset_of,
    subsets,
)
from grids.selection.fallback import Fallback

GROUPS = ["jpeg", "noise"]


def eval_rows(model: str, psnr: dict[tuple[str, str], float]) -> list[dict]:
    return [
        {"trained_on": model, "test_set": "t", "degradation": d, "image": i, "psnr": p} for (d, i), p in psnr.items()
    ]


def small_case() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two groups, three images: jpeg/a helped by its group, jpeg/b not, haze/c (unseen) helped
    only by the other group (the oracle)."""
    accuracy = pd.DataFrame(
        {
            "test_set": "t",
            "degradation": ["jpeg", "jpeg", "haze"],
            "image": ["a", "b", "c"],
            "seen": [True, True, False],
            "chosen_group": ["jpeg", "jpeg", "jpeg"],
            # the selector's flag and expected gain: b (expected 0.3 < 0.5) and c (out of distribution) flagged
            "in_distribution": [True, True, False],
            "expected_gain": [1.5, 0.3, 1.0],
            "gain_low": [0.5, -0.5, 0.0],
            "gain_high": [2.5, 1.1, 2.0],
        }
    )
    evaluation = pd.DataFrame(
        eval_rows("input", {("jpeg", "a"): 20.0, ("jpeg", "b"): 30.0, ("haze", "c"): 15.0})
        + eval_rows("jpeg", {("jpeg", "a"): 22.0, ("jpeg", "b"): 30.2, ("haze", "c"): 14.0})
        + eval_rows("jpeg", {("jpeg", "a"): 22.0})  # the same model's row again (its members' table)
        + eval_rows("noise", {("jpeg", "a"): 21.0, ("jpeg", "b"): 30.1, ("haze", "c"): 16.5})
        + eval_rows("jpeg+noise", {("jpeg", "a"): 21.5, ("jpeg", "b"): 29.0, ("haze", "c"): 16.0})  # mix-all
    )
    return accuracy, evaluation


def test_outcomes_are_the_chosen_and_the_oracle_gain_over_the_input():
    accuracy, evaluation = small_case()
    rows = image_outcomes(accuracy, evaluation, GROUPS, min_gain=0.5)
    assert list(rows.columns) == tables.columns("selection_failure_images")
    assert rows.gain.round(6).tolist() == [2.0, 0.2, -1.0]
    assert rows.oracle_gain.round(6).tolist() == [2.0, 0.2, 1.5]
    assert rows.oracle_group.tolist() == ["jpeg", "jpeg", "noise"]
    assert rows.fails.tolist() == [False, True, True]
    assert rows.covered.tolist() == [True, True, False]  # -1.0 lies below c's interval [0, 2]
    assert rows.flagged.tolist() == [False, True, True]
    assert np.isnan(rows.psnr_mixall).all()  # no mix-all model named
    tables.check(rows, "selection_failure_images")
    with_mix = image_outcomes(accuracy, evaluation, GROUPS, min_gain=0.5, mix_all="jpeg+noise")
    assert with_mix.psnr_mixall.tolist() == [21.5, 29.0, 16.0]


def test_gain_metrics_by_hand():
    accuracy, evaluation = small_case()
    outcomes = image_outcomes(accuracy, evaluation, GROUPS, 0.5)
    table = gain_metrics(outcomes, alpha=0.1)
    tables.check(table, "selection_gain")
    metrics = table.set_index("subset")
    assert list(metrics.index) == ["all", "seen", "unseen"]
    # errors expected - realised: 1.5 - 2.0, 0.3 - 0.2, 1.0 - (-1.0)
    assert metrics.mae["all"] == pytest.approx((0.5 + 0.1 + 2.0) / 3)
    assert metrics.bias["seen"] == pytest.approx((-0.5 + 0.1) / 2)
    assert metrics.coverage.to_dict() == pytest.approx({"all": 2 / 3, "seen": 1.0, "unseen": 0.0})
    assert metrics.nominal.tolist() == pytest.approx([0.9] * 3)
    assert metrics.mean_width["all"] == pytest.approx((2.0 + 1.6 + 2.0) / 3)


def test_the_fallback_routes_exactly_the_flagged_images():
    accuracy, evaluation = small_case()
    outcomes = image_outcomes(accuracy, evaluation, GROUPS, 0.5, mix_all="jpeg+noise")
    assert Fallback("none", 0.5).psnr(outcomes).tolist() == [22.0, 30.2, 14.0]
    assert Fallback("mixall", 0.5).psnr(outcomes).tolist() == [22.0, 29.0, 16.0]  # b and c: the mix-all model's
    assert Fallback("identity", 0.5).psnr(outcomes).tolist() == [22.0, 30.0, 15.0]  # b and c: the input
    effect = fallback_effect(outcomes, 0.5, seed=0)
    tables.check(effect, "selection_fallback")
    row = effect.set_index(["subset", "fallback"])
    assert row.loc[("all", "mixall"), "change"] == pytest.approx((0 - 1.2 + 2.0) / 3)
    assert row.loc[("unseen", "identity"), "change"] == pytest.approx(1.0)  # one image: no spread
    assert row.loc[("unseen", "identity"), ["change_low", "change_high"]].tolist() == pytest.approx([1.0, 1.0])
    assert row.loc[("seen", "mixall"), "n_routed"] == 1 and row.loc[("seen", "none"), "n_routed"] == 0
    low, high = row.loc[("all", "mixall"), ["change_low", "change_high"]]
    assert low <= row.loc[("all", "mixall"), "change"] <= high
    assert effect.equals(fallback_effect(outcomes, 0.5, seed=0))  # seeded
    without = fallback_effect(image_outcomes(accuracy, evaluation, GROUPS, 0.5), 0.5, seed=0)
    assert "mixall" not in set(without.fallback)  # no mix-all model: that row is left out


def test_an_image_without_the_chosen_model_s_evaluation_is_named():
    accuracy, evaluation = small_case()
    evaluation = evaluation[~((evaluation.trained_on == "jpeg") & (evaluation.degradation == "haze"))]
    with pytest.raises(ValueError, match=r"no evaluation of 'jpeg' or of the input on t/haze/c \(1 images\)"):
        image_outcomes(accuracy, evaluation, GROUPS, 0.5)


def test_risk_coverage_and_aurc_by_hand():
    """Accepted in order of increasing score: risks 0/1, 1/2, 1/3, 2/4; AURC their mean. A tie is
    accepted whole, whatever its order; a perfect ranking (failures last) gives the optimum."""
    score, fails = np.array([0.3, 0.1, 0.4, 0.2]), np.array([False, False, True, True])
    coverage, risk = risk_coverage(score, fails)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([0 / 1, 1 / 2, 1 / 3, 2 / 4])
    assert aurc(score, fails) == pytest.approx((0 + 1 / 2 + 1 / 3 + 2 / 4) / 4)
    assert optimal_aurc(fails) == pytest.approx((0 + 0 + 1 / 3 + 2 / 4) / 4)
    tied = np.array([1.0, 1.0, 2.0])  # the first two tie: both positions get the pair's risk 1/2
    assert risk_coverage(tied, np.array([True, False, False]))[1].tolist() == pytest.approx([0.5, 0.5, 1 / 3])
    assert risk_coverage(tied, np.array([False, True, False]))[1].tolist() == pytest.approx([0.5, 0.5, 1 / 3])
    assert np.isnan(aurc(np.array([]), np.array([], bool)))


def test_fpr_at_95_tpr_by_hand():
    # Failures score 5, 4, 3, 1; helped images 4.5, 2, 0. Catching 95 % of 4 failures means all 4:
    # threshold 1, which also flags 4.5 and 2 of the 3 helped images.
    score = np.array([5, 4, 3, 1, 4.5, 2, 0])
    fails = np.array([1, 1, 1, 1, 0, 0, 0], bool)
    assert fpr_at_tpr(score, fails) == pytest.approx(2 / 3)
    assert fpr_at_tpr(score, fails, tpr=0.5) == pytest.approx(1 / 3)  # threshold 4: flags 4.5
    assert np.isnan(fpr_at_tpr(score, np.ones(7, bool)))
    separated = np.array([9, 8, 1, 0])
    assert fpr_at_tpr(separated, np.array([1, 1, 0, 0], bool)) == 0.0


def test_the_identity_is_a_candidate_and_clean_images_a_subset():
    """Clean d left as it is (the identity chosen), clean e restored by jpeg's model; jpeg f, which
    every model harms, left as it is; jpeg g left as it is although jpeg's model gains 2 dB on it."""
    keys = [("clean", "d"), ("clean", "e"), ("jpeg", "f"), ("jpeg", "g")]
    accuracy = pd.DataFrame(
        {
            "test_set": "t",
            "degradation": [d for d, _ in keys],
            "image": [i for _, i in keys],
            "seen": True,
            "chosen_group": ["identity", "jpeg", "identity", "identity"],
            "in_distribution": True,
            "expected_gain": [0.0, 1.0, 0.1, 0.2],
            "gain_low": -1.0,
            "gain_high": 1.0,
        }
    )
    evaluation = pd.DataFrame(
        eval_rows("input", dict(zip(keys, [60.0, 60.0, 30.0, 25.0])))  # a clean input scores the ceiling
        + eval_rows("jpeg", dict(zip(keys, [40.0, 41.0, 29.5, 27.0])))
        + eval_rows("noise", dict(zip(keys, [38.0, 39.0, 29.0, 24.0])))
    )
    rows = image_outcomes(accuracy, evaluation, GROUPS, min_gain=0.5)
    assert rows.psnr_chosen.tolist() == [60.0, 41.0, 30.0, 25.0]  # the identity's: the input's own row
    assert rows.gain.tolist() == [0.0, -19.0, 0.0, 0.0]
    assert rows.oracle_group.tolist() == ["identity", "identity", "identity", "jpeg"]
    assert rows.oracle_gain.tolist() == [0.0, 0.0, 0.0, 2.0]
    # the identity fails only where a model would have gained min_gain (g); a model, below min_gain (e)
    assert rows.fails.tolist() == [False, True, False, True]
    assert subset_of(rows).tolist() == ["clean", "clean", "seen", "seen"]
    parts = {subset: part.image.tolist() for _, subset, part in subsets(rows)}
    assert parts == {"all": ["d", "e", "f", "g"], "seen": ["f", "g"], "clean": ["d", "e"]}
    # the identity fallback gives e back as it was: the clean subset's mean PSNR rises to the ceiling
    rows["flagged"] = [False, True, False, False]
    effect = fallback_effect(rows, 0.5).set_index(["subset", "fallback"])
    assert effect.loc[("clean", "identity"), "mean_psnr"] == 60.0
    assert effect.loc[("clean", "none"), "mean_psnr"] == 50.5


def test_metrics_by_hand():
    accuracy, evaluation = small_case()
    outcomes = image_outcomes(accuracy, evaluation, GROUPS, 0.5)
    scores = pd.DataFrame(
        {
            "test_set": "t",
            "degradation": ["jpeg", "jpeg", "haze"] * 2,
            "image": ["a", "b", "c"] * 2,
            "statistic": ["good"] * 3 + ["bad"] * 3,
            "score": [0.1, 0.8, 0.9, 0.9, 0.1, 0.5],
        }
    )
    metrics = failure_metrics(outcomes, scores)
    assert list(metrics.columns) == tables.columns("selection_failure")
    # a row per subset: all, the seen jpeg images (a, b) and the unseen haze one (c)
    assert metrics.groupby("statistic", sort=False).subset.apply(list).to_dict() == {
        "good": ["all", "seen", "unseen"],
        "bad": ["all", "seen", "unseen"],
    }
    seen = metrics[metrics.subset == "seen"].set_index("statistic")
    assert seen.n.tolist() == [2, 2] and seen.n_fails.tolist() == [1, 1]
    assert seen.auroc.to_dict() == {"good": 1.0, "bad": 0.0}  # b (fails) 0.8 > a 0.1; bad: 0.1 < 0.9
    metrics = metrics[metrics.subset == "all"].set_index("statistic")
    # good: both failures (0.8, 0.9) above the helped 0.1 -> AUROC 1; bad: both below 0.9 -> 0.
    assert metrics.auroc.to_dict() == {"good": 1.0, "bad": 0.0}
    assert metrics.fpr_at_95_tpr.to_dict() == {"good": 0.0, "bad": 1.0}
    # good restores a (helped) first, then b and c (both fail): risks 0, 1/2, 2/3; bad restores b
    # and c first: 1, 1, 2/3; a perfect ranking is good's (one helped image, then two failures)
    assert metrics.aurc.to_dict() == pytest.approx({"good": (0 + 1 / 2 + 2 / 3) / 3, "bad": (1 + 1 + 2 / 3) / 3})
    assert metrics.aurc_optimal.tolist() == pytest.approx([(0 + 1 / 2 + 2 / 3) / 3] * 2)
    assert metrics.n_fails.tolist() == [2, 2] and metrics.n.tolist() == [3, 3]
    # gains 2.0, 0.2, -1.0: good's scores rank them exactly reversed
    assert metrics.spearman_gain["good"] == pytest.approx(-1.0)
    assert metrics.mean_oracle_gain["good"] == pytest.approx((2.0 + 0.2 + 1.5) / 3)
