"""Task-grouping search: verifications and rounds of each strategy on random synthetic instances.

    .venv/bin/python bench/bench_grouping.py [--n 11] [--instances 200] [--seed 0]

Instance: n random points in the unit square, Euclidean distances mapped linearly to [1, 5]
(the "log KL" scale); oracle ``dP(C) = 0.5 * max pairwise distance + N(0, 0.05)`` (noise seeded
per instance and group, so a group always gets the same drop); delta = 0.5 * the 20-35 %
quantile of the pair distances (a few groups at the optimum).  The true minimal m comes from a DP
over all 2^n subsets with the oracle (feasible per subset).  Prints one table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grids.grouping import search  # noqa: E402


def make_instance(n: int, seed: int):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 2))
    e = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    iu = np.triu_indices(n, 1)
    lo, hi = e[iu].min(), e[iu].max()
    d = 1 + 4 * (e - lo) / (hi - lo)
    np.fill_diagonal(d, 0)
    names = [f"d{i:02d}" for i in range(n)]
    q = rng.uniform(0.20, 0.35)
    delta = 0.5 * float(np.quantile(d[iu], q))
    index = {x: i for i, x in enumerate(names)}

    def drop_mask(mask: int) -> float:
        idx = [i for i in range(n) if mask >> i & 1]
        if len(idx) < 2:
            return 0.0
        mx = max(d[i, j] for a, i in enumerate(idx) for j in idx[a + 1 :])
        noise = np.random.default_rng([seed, mask]).normal(0, 0.05)
        return 0.5 * mx + noise

    def evaluate(group):
        return drop_mask(sum(1 << index[x] for x in group))

    return names, d, delta, drop_mask, evaluate


def true_min_m(n: int, delta: float, drop_mask) -> int:
    full = (1 << n) - 1
    feas = [False] * (1 << n)
    for s in range(1, 1 << n):
        feas[s] = (s & (s - 1)) == 0 or drop_mask(s) <= delta
    best = [0] + [n + 1] * full
    for s in range(1, 1 << n):
        low = s & -s
        rest = s ^ low
        sub = rest
        b = n + 1
        while True:
            g = sub | low
            if feas[g]:
                v = best[s ^ g] + 1
                if v < b:
                    b = v
            if sub == 0:
                break
            sub = (sub - 1) & rest
        best[s] = b
    return best[full]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=11)
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    configs = [("paper", 1), ("paper", 3), ("lazy", 1), ("lazy", 3)]
    stats = {c: {"ev": [], "rd": [], "opt": 0, "feas": 0, "t": 0.0} for c in configs}
    ms = []
    for k in range(args.instances):
        names, d, delta, drop_mask, evaluate = make_instance(args.n, args.seed * 100003 + k)
        mopt = true_min_m(args.n, delta, drop_mask)
        ms.append(mopt)
        for strat, ppr in configs:
            t0 = time.perf_counter()
            r = search(names, d, delta, evaluate, strategy=strat, probes_per_round=ppr)
            st = stats[(strat, ppr)]
            st["t"] += time.perf_counter() - t0
            st["ev"].append(r.n_evaluations)
            st["rd"].append(r.rounds)
            ok = all(len(g) == 1 or r.verified[g] <= delta for g in r.partition)
            st["feas"] += ok
            st["opt"] += ok and len(r.partition) == mopt
    print(f"n={args.n}, {args.instances} instances, optimal m: median {np.median(ms):.0f}, range {min(ms)}-{max(ms)}")
    print(
        "| strategy | probes/round | verif. median | p90 | max | rounds median | p90 | max "
        "| minimal m | feasible | s/instance |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (strat, ppr), st in stats.items():
        ev, rd = np.array(st["ev"]), np.array(st["rd"])
        print(
            f"| {strat} | {ppr} | {np.median(ev):.0f} | {np.percentile(ev, 90):.0f} | {ev.max()} "
            f"| {np.median(rd):.0f} | {np.percentile(rd, 90):.0f} | {rd.max()} "
            f"| {100 * st['opt'] / len(ev):.1f} % | {100 * st['feas'] / len(ev):.1f} % "
            f"| {st['t'] / len(ev):.3f} |"
        )


if __name__ == "__main__":
    main()
