"""The method core: one distance between GGDs (grids.ggd.DISTANCES) that the similarity matrix,
the group distance, the selector's choice and the out-of-distribution statistics all use, so that
swapping it (``features.distance``) changes them together."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grids.config import ConfigError, config_section
from grids.features import Signature
from grids.ggd import GGD, PAPER_THRESHOLD, get_distance, kl_divergence, log_kl_distance, symmetric_kl
from grids.selection.selector import divergences
from grids.selection.statistics import References, fit_statistic, nearest_threshold
from grids.similarity import group_distance, similarity_table, wide_matrix

SETS = pd.DataFrame(
    {"degradation": ["clean", "a", "b", "c"], "alpha": [2.0, 0.8, 1.1, 3.0], "sigma": [1.0, 0.7, 1.6, 0.9]}
)


def test_log_kl_is_the_papers_composition_bit_for_bit():
    """The default distance equals log_kl_distance(kl_divergence(...)) exactly, so every table
    built through it keeps its bytes."""
    a, s = SETS.alpha.to_numpy(), SETS.sigma.to_numpy()
    kl, distance = get_distance("log_kl").pairwise(a, s)
    old_kl = np.asarray(kl_divergence(a[:, None], s[:, None], a[None, :], s[None, :]), np.float64)
    assert np.array_equal(kl, old_kl)
    assert np.array_equal(distance, np.asarray(log_kl_distance(old_kl), np.float64))
    assert get_distance()(GGD(0.8, 0.7), GGD(1.1, 1.6)) == log_kl_distance(kl_divergence(0.8, 0.7, 1.1, 1.6))


def test_symmetric_kl_is_the_mean_of_both_directions():
    forward, backward = kl_divergence(0.8, 0.7, 1.1, 1.6), kl_divergence(1.1, 1.6, 0.8, 0.7)
    assert symmetric_kl(0.8, 0.7, 1.1, 1.6) == pytest.approx((forward + backward) / 2, rel=1e-15)
    assert symmetric_kl(0.8, 0.7, 1.1, 1.6) == symmetric_kl(1.1, 1.6, 0.8, 0.7)
    assert symmetric_kl(0.8, 0.7, 0.8, 0.7) == 0.0
    with pytest.raises(ValueError, match="unknown distance 'bhattacharyya'"):
        get_distance("bhattacharyya")


def test_the_config_key_selects_the_distance():
    assert config_section("features", {})["distance"] == "log_kl"
    assert config_section("features", {"distance": "symmetric_kl"})["distance"] == "symmetric_kl"
    with pytest.raises(ConfigError, match="features.distance"):
        config_section("features", {"distance": "euclid"})


def _references(distance_rows) -> pd.DataFrame:
    rows = [[deg, f"i{k}", "L", a, s] for k, (deg, a, s) in enumerate(distance_rows)]
    return pd.DataFrame(rows, columns=["degradation", "image", "layer", "alpha", "sigma"])


@pytest.mark.parametrize("name", ["log_kl", "symmetric_kl"])
def test_swapping_the_distance_moves_matrix_selection_and_thresholds_together(name):
    """Under either distance, the input that is set b's GGD is scored against group a exactly as
    the matrix's entry (a, b); the choice, the paper and nearest scores and nearest's threshold
    are those of the same distance, and the two distances give different numbers."""
    measure, other = get_distance(name), get_distance({"log_kl": "symmetric_kl"}.get(name, "log_kl"))
    matrix = similarity_table(SETS, name)
    assert np.array_equal(matrix.distance, similarity_table(SETS, other.name).distance) is False
    wide = wide_matrix(matrix, "distance")
    b = GGD(1.1, 1.6)
    assert wide.at["a", "b"] == measure(GGD(0.8, 0.7), b)
    assert group_distance(wide_matrix(matrix), ["a", "b", "c"]) == pytest.approx(
        np.mean([wide_matrix(matrix).at[x, y] for x, y in (("a", "b"), ("a", "c"), ("b", "c"))])
    )
    # the selector's choice among set GGDs: divergence and distance from the same function
    sets = pd.DataFrame({"group": ["a", "c"], "alpha": [0.8, 3.0], "sigma": [0.7, 0.9]})
    chosen = divergences(sets, b, name)
    assert chosen.set_index("group").distance["a"] == wide.at["a", "b"]
    assert chosen.set_index("group").distance["c"] == wide.at["c", "b"]
    # the statistics: paper's score is the matrix entry, its threshold the scale's; nearest's
    # threshold follows the distance
    refs = _references([("a", 0.8, 0.7), ("a", 0.9, 0.8), ("a", 0.7, 0.75), ("c", 3.0, 0.9), ("c", 2.8, 1.0)])
    fitted_on = References(rows=refs, group_of={"a": "a", "c": "c"}, layer="L", layers=[], set_ggds=sets, distance=name)
    paper, nearest = fit_statistic("paper", fitted_on), fit_statistic("nearest", fitted_on)
    signature = Signature({"L": b})
    assert paper.score(signature, "a") == wide.at["a", "b"]
    assert paper.threshold == measure.threshold == PAPER_THRESHOLD
    by_group = pd.DataFrame({"group": refs.degradation, "alpha": refs.alpha, "sigma": refs.sigma})
    assert nearest.threshold == nearest_threshold(by_group, distance=name)
    assert nearest.threshold != nearest_threshold(by_group, distance=other.name)
    three = [measure(GGD(a, s), b) for a, s in ((0.8, 0.7), (0.9, 0.8), (0.7, 0.75))]
    assert nearest.score(signature, "a") == min(three)
