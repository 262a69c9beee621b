"""Task-grouping planner (grids.grouping) against brute force on small synthetic instances."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from grids.grouping import Planner, rank_groups, search


def set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in set_partitions(rest):
        for i in range(len(p)):
            yield p[:i] + [p[i] | {first}] + p[i + 1 :]
        yield [frozenset([first])] + p


def true_min(names, dp, delta):
    return min(len(p) for p in set_partitions(names) if all(len(g) == 1 or dp(g) <= delta for g in p))


def random_points(n, seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2)) * 4
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    return [f"g{i}" for i in range(n)], d


def clustered(n, seed):
    """Clusters: within distances 0.5-1, across 10 -> max- and mean-based rankings agree."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, rng.integers(1, n + 1), n)
    d = np.where(labels[:, None] == labels[None], rng.uniform(0.5, 1.0, (n, n)), 10.0)
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0)
    return [f"g{i}" for i in range(n)], d


def max_oracle(names, d, a=1.0, offset=0.0, noise=0.0, seed=0):
    idx = {x: i for i, x in enumerate(names)}

    def dp(g):
        ii = sorted(idx[x] for x in g)
        mx = max(d[i, j] for i, j in itertools.combinations(ii, 2))
        eps = 0.0
        if noise:
            eps = np.random.default_rng([seed, *ii]).normal(0, noise)
        return a * mx + offset + eps

    return dp


def counting(dp):
    calls = Counter()

    def ev(g):
        calls[g] += 1
        assert len(g) > 1
        return dp(g)

    return ev, calls


def check_feasible(res, names, delta):
    assert sorted(x for g in res.partition for x in g) == sorted(names)
    for g in res.partition:
        assert len(g) == 1 or res.verified[g] <= delta


def test_rank_order_mean_then_variance():
    names = ["a", "b", "c", "d"]
    d = np.array([[0, 1, 3, 2], [1, 0, 1, 2], [3, 1, 0, 2], [2, 2, 2, 0]], float)
    r2 = rank_groups(names, d, 2)
    assert [sorted(g) for g, _, _ in r2[:2]] == [["a", "b"], ["b", "c"]]  # ties: lexicographic
    r3 = rank_groups(names, d, 3)
    means = [m for _, m, _ in r3]
    assert means == sorted(means)
    # abd: 1,2,2 (mean 5/3); bcd: 1,2,2 (5/3) ; abc: 1,3,1 (5/3) higher variance -> last of the tie
    tie = [sorted(g) for g, m, _ in r3 if abs(m - 5 / 3) < 1e-9]
    assert tie[-1] == ["a", "b", "c"]
    assert tie[:2] == [["a", "b", "d"], ["b", "c", "d"]]
    for g, m, v in r3:
        ds = [d[names.index(x), names.index(y)] for x, y in itertools.combinations(sorted(g), 2)]
        assert m == pytest.approx(np.mean(ds)) and v == pytest.approx(np.var(ds))


@pytest.mark.parametrize("strategy", ["paper", "lazy"])
@pytest.mark.parametrize("seed", range(12))
def test_monotone_oracle_finds_optimum(strategy, seed):
    n = 3 + seed % 4
    names, d = clustered(n, seed)
    dp = max_oracle(names, d, a=1.0, offset=0.1)
    delta = 1.15
    ev, calls = counting(dp)
    res = search(names, d, delta, ev, strategy=strategy)
    assert max(calls.values(), default=0) <= 1
    check_feasible(res, names, delta)
    assert len(res.partition) == true_min(names, dp, delta)


@pytest.mark.parametrize("seed", range(10))
def test_lazy_max_oracle_random_points_optimum(seed):
    names, d = random_points(6, seed)
    dp = max_oracle(names, d, a=0.5)
    delta = 0.5 * np.quantile(d[np.triu_indices(6, 1)], 0.4)
    res = search(names, d, delta, counting(dp)[0], strategy="lazy")
    check_feasible(res, names, delta)
    assert len(res.partition) == true_min(names, dp, delta)


@pytest.mark.parametrize("strategy", ["paper", "lazy"])
@pytest.mark.parametrize("ppr", [1, 3])
@pytest.mark.parametrize("seed", range(8))
def test_noisy_oracle_feasible_no_reverification(strategy, ppr, seed):
    names, d = random_points(6, 100 + seed)
    dp = max_oracle(names, d, a=0.5, noise=0.2, seed=seed)
    delta = 0.5 * np.quantile(d[np.triu_indices(6, 1)], 0.5)
    ev, calls = counting(dp)
    res = search(names, d, delta, ev, strategy=strategy, probes_per_round=ppr)
    assert max(calls.values(), default=0) <= 1
    assert res.n_evaluations == sum(calls.values())
    check_feasible(res, names, delta)


@pytest.mark.parametrize("strategy", ["paper", "lazy"])
@pytest.mark.parametrize("seed", range(8))
def test_adversarial_oracle_terminates_feasible(strategy, seed):
    names, d = random_points(5 + seed % 2, 200 + seed)

    def dp(g):
        return float(np.random.default_rng([seed, *sorted(int(x[1:]) for x in g)]).uniform(0, 2))

    ev, calls = counting(dp)
    res = search(names, d, 1.0, ev, strategy=strategy, probes_per_round=1 + seed % 3)
    assert max(calls.values(), default=0) <= 1
    check_feasible(res, names, 1.0)


@pytest.mark.parametrize("strategy", ["paper", "lazy"])
def test_planner_is_pure(strategy):
    names, d = random_points(6, 7)
    dp = max_oracle(names, d, a=0.5, noise=0.1, seed=3)
    delta = 0.5 * np.quantile(d[np.triu_indices(6, 1)], 0.4)
    planner = Planner(names, d, delta, strategy=strategy)
    known = {}
    for _ in range(100):
        a = planner.next(dict(known))
        b = Planner(names, d, delta, strategy=strategy).next(dict(known))
        assert a == planner.next(dict(known)) == b
        if not isinstance(a, list):
            break
        assert a and all(g not in known and len(g) > 1 for g in a)
        for g in a:
            known[g] = dp(g)
    else:
        pytest.fail("did not finish")


@pytest.mark.parametrize("strategy", ["paper", "lazy"])
def test_more_probes_per_round_fewer_rounds(strategy):
    names, d = random_points(9, 11)
    dp = max_oracle(names, d, a=0.5)
    delta = 0.5 * np.quantile(d[np.triu_indices(9, 1)], 0.3)
    r1 = search(names, d, delta, dp, strategy=strategy, probes_per_round=1)
    r3 = search(names, d, delta, dp, strategy=strategy, probes_per_round=3)
    assert r3.rounds < r1.rounds
    check_feasible(r3, names, delta)


def test_all_partitions_and_trivial_sizes():
    names, d = clustered(5, 3)
    dp = max_oracle(names, d, offset=0.1)
    for strategy in ("paper", "lazy"):
        res = search(names, d, 1.15, dp, strategy=strategy, all_partitions=True)
        assert res.all_partitions and all(len(p) == len(res.partition) for p in res.all_partitions)
    res = search(["x"], np.zeros((1, 1)), 0.7, dp)
    assert res.partition == [frozenset({"x"})] and res.n_evaluations == 0
