"""Table 2 and the premise report (grids.validation) on hand-made tables, against scipy."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from grids.grouping.names import group_members
from grids.validation import (
    bootstrap_interval,
    failed_lines,
    member_drops,
    premise,
    premise_groups,
    runnable_experiments,
    table2,
)

NAMES = ["a", "b", "c", "d"]
# A symmetric distance per pair: a-b close, c-d far, the rest in between.
PAIR = {("a", "b"): 1.0, ("a", "c"): 2.0, ("a", "d"): 3.0, ("b", "c"): 2.5, ("b", "d"): 3.5, ("c", "d"): 5.0}


def matrix(pair: dict, names=NAMES) -> pd.DataFrame:
    rows = []
    for x, y in itertools.product(names, names):
        d = 0.0 if x == y else pair.get((x, y), pair.get((y, x)))
        rows.append({"deg_a": x, "deg_b": y, "kl": 0.0, "distance": d, "distance_sym": d})
    return pd.DataFrame(rows)


def evaluation(drop_of: dict[str, float]) -> pd.DataFrame:
    """Two images per (model, degradation); a group model loses drop_of[group] dB on each member."""
    rows = []
    for name in NAMES:
        for image, psnr in (("i0", 30.0), ("i1", 32.0)):
            rows.append({"trained_on": name, "test_set": "t", "degradation": name, "image": image, "psnr": psnr})
    for group, drop in drop_of.items():
        for member in group_members(group):
            for image, psnr in (("i0", 30.0), ("i1", 32.0)):
                rows.append(
                    {"trained_on": group, "test_set": "t", "degradation": member, "image": image, "psnr": psnr - drop}
                )
    frame = pd.DataFrame(rows)
    frame["psnr_input"] = frame.image.map({"i0": 27.0, "i1": 29.0})  # the degraded inputs: 3 dB below
    frame["gain"] = frame.psnr - frame.psnr_input
    return frame


def test_experiments_naming_an_unconfigured_degradation_are_skipped_saying_so():
    kept, skipped = runnable_experiments({"e1": [["a", "b"], ["c", "d"]], "e2": [["a", "zz"], ["b", "c"]]}, NAMES)
    assert kept == {"e1": ["a+b", "c+d"]}
    assert skipped == ["experiment e2 skipped: zz not among the configured degradations"]


@pytest.mark.parametrize("far_loses_more", [True, False])
def test_table2_distances_drops_and_verdict(far_loses_more):
    drops = {"a+b": 0.1, "c+d": 0.9} if far_loses_more else {"a+b": 0.9, "c+d": 0.1}
    per_member = member_drops(evaluation(drops), "t", ["a+b", "c+d"], 0.5)
    assert per_member["drop"].tolist() == pytest.approx([drops["a+b"]] * 2 + [drops["c+d"]] * 2)
    # A second variant that reverses the distances (c-d close, a-b far).
    reverse = {k: 6.0 - v for k, v in PAIR.items()}
    table = table2({"e1": ["a+b", "c+d"]}, {"method": matrix(PAIR), "other": matrix(reverse)}, per_member, 0.5)
    method = table[table.variant == "method"].set_index("group")
    assert method.loc["a+b", "distance"] == 1.0 and method.loc["c+d", "distance"] == 5.0
    assert method.loc["a+b", "closer"] and not method.loc["c+d", "closer"]
    assert method.mean_drop.to_dict() == pytest.approx(drops)
    assert (method.correct == far_loses_more).all()
    other = table[table.variant == "other"].set_index("group")
    assert other.loc["c+d", "closer"] and (other.correct == (not far_loses_more)).all()
    # every group's model judged against the input: 3 dB single-task gain minus the drop, all learned
    assert method.weakest_group_gain.to_dict() == pytest.approx({g: 3.0 - d for g, d in drops.items()})
    assert (method.harmed_images == 0).all() and (method.learning == "learned").all()


def test_a_group_model_below_its_input_is_a_failed_training_in_table2_and_the_premise():
    """c+d's model loses 3.6 dB on its members: 0.6 dB below their inputs, on every image."""
    ev = evaluation({"a+b": 0.1, "c+d": 3.6})
    per_member = member_drops(ev, "t", ["a+b", "c+d"], 0.5)
    assert per_member.learning_group.tolist() == ["learned", "learned", "below_input", "below_input"]
    assert per_member.harmed_group.tolist() == [0, 0, 2, 2] and per_member.harmed_single.tolist() == [0] * 4
    table = table2({"e1": ["a+b", "c+d"]}, {"method": matrix(PAIR)}, per_member, 0.5).set_index("group")
    assert table.loc["c+d", "learning"] == "below_input" and table.loc["c+d", "harmed_images"] == 4
    assert table.loc["c+d", "weakest_group_gain"] == pytest.approx(-0.6)
    rows = premise_groups(ev, "t", {"a+b": "search", "c+d": "mix-all"}, {"method": matrix(PAIR)}, 0.5)
    assert rows.set_index("group").learning.to_dict() == {"a+b": "learned", "c+d": "below_input"}
    [line] = failed_lines(rows)
    assert line.startswith("the mixed training of c+d (mix-all) failed") and "-0.60 dB" in line


def test_premise_correlations_equal_scipy():
    rng = np.random.default_rng(0)
    groups = ["a+b", "a+c", "a+d", "b+c", "b+d", "c+d", "a+b+c", "b+c+d"]
    drops = {g: float(v) for g, v in zip(groups, rng.uniform(0, 2, len(groups)))}
    ev = evaluation(drops)
    table = table2({"e1": ["a+b", "c+d"]}, {"method": matrix(PAIR)}, member_drops(ev, "t", ["a+b", "c+d"], 0.5), 0.5)
    rows = premise_groups(ev, "t", {g: "search" for g in groups}, {"method": matrix(PAIR)}, 0.5)
    summary = premise(rows, table, n_bootstrap=300, seed=1).set_index("target")
    distance = [np.mean([PAIR[tuple(sorted(p))] for p in itertools.combinations(group_members(g), 2)]) for g in groups]
    for target in ("max_drop", "mean_drop"):
        y = [drops[g] for g in groups]  # every member loses the same: max = mean
        rho, p = stats.spearmanr(distance, y)
        tau, q = stats.kendalltau(distance, y)
        row = summary.loc[target]
        assert row.spearman == pytest.approx(rho) and row.spearman_p == pytest.approx(p)
        assert row.kendall == pytest.approx(tau) and row.kendall_p == pytest.approx(q)
        assert row.spearman_low <= row.spearman <= row.spearman_high
        assert row.kendall_low <= row.kendall <= row.kendall_high
        assert row.n_groups == len(groups) and row.n_experiments == 1


def test_bootstrap_is_seeded_and_brackets_a_strong_correlation():
    x = np.arange(30.0)
    y = x + np.random.default_rng(3).normal(0, 3, 30)
    spearman = lambda u, v: stats.spearmanr(u, v).statistic  # noqa: E731
    first = bootstrap_interval(x, y, spearman, 500, seed=7)
    assert first == bootstrap_interval(x, y, spearman, 500, seed=7)
    assert first != bootstrap_interval(x, y, spearman, 500, seed=8)
    low, high = first
    assert 0.8 < low < spearman(x, y) < high <= 1.0


def test_premise_with_too_few_groups_is_undefined_not_an_error():
    ev = evaluation({"a+b": 0.1, "c+d": 0.5})
    rows = premise_groups(ev, "t", {"a+b": "table2", "c+d": "table2", "a": "single"}, {"method": matrix(PAIR)}, 0.5)
    assert sorted(rows.group) == ["a+b", "c+d"]  # singletons have no pairwise distance: left out
    summary = premise(rows, pd.DataFrame(columns=["variant", "side", "correct"]), 100, 0)
    assert summary.spearman.isna().all() and summary.experiments_correct.isna().all()
