"""Partition stability: does the search's answer rest on the particular test images?

The test images are resampled (with replacement, ``grouping.bootstrap`` times); every verified
group is re-decided from its resampled drop, and the partition that evidence supports is taken:
the search's own partition while all its groups stay feasible and no partition with fewer
verified-feasible groups exists (another partition of the same size is a tie, not a different
answer), else the fewest verified-feasible groups (singletons always allowed). How often it is the
search's partition, and how often each group's verdict flips, says how much the answer rests on
the test images (tables ``grouping_stability``, ``grouping_stability_partitions``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import io, tables
from ..options import Decision
from ..seeds import rng_for
from .evidence import image_drops, test_rows
from .names import group_members


def fewest_groups(names: list[str], groups: list[str], risk: dict[str, float]) -> list[str]:
    """The partition of ``names`` into the fewest of ``groups`` (singletons always allowed); among
    those of that size, the one whose largest ``risk`` is smallest, then the first found (groups
    tried larger first, then by name)."""
    order = sorted(groups, key=lambda g: (-len(group_members(g)), g))
    best = None  # (number of groups, largest risk, partition)

    def grow(uncovered: frozenset, chosen: list[str]) -> None:
        nonlocal best
        if best is not None and len(chosen) + bool(uncovered) > best[0]:
            return  # already more groups than the best partition found
        if not uncovered:
            worst = max((risk.get(g, -np.inf) for g in chosen), default=-np.inf)
            if best is None or (len(chosen), worst) < best[:2]:
                best = (len(chosen), worst, list(chosen))
            return
        first = min(uncovered, key=names.index)
        for group in order:
            members = set(group_members(group))
            if first in members and members <= uncovered:
                grow(uncovered - members, [*chosen, group])
        grow(uncovered - {first}, [*chosen, first])

    grow(frozenset(names), [])
    return sorted(best[2])


def partition_stability(
    evaluation: pd.DataFrame,
    test_set: str,
    names: list[str],
    verified: list[str],
    partition: list[str],
    grouping: dict,
    half_widths: dict[str, float],
    seed,
    failed: frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Resample the test images ``grouping['bootstrap']`` times, re-decide each ``verified`` group
    from its resampled ``dP`` (with the same ``half_widths`` as the search under ``conservative``),
    and find the partition that evidence supports (:func:`fewest_groups`). A ``failed`` group (its
    verdict ``failed_training``) is infeasible in every resample, as in the search.

    Returns (per group: its verdict on all images and how often it holds, table
    ``grouping_stability``; per partition found: how often, table ``grouping_stability_partitions``).
    """
    rows_all = test_rows(evaluation, test_set)
    multi = [g for g in verified if len(group_members(g)) > 1]
    drops = {g: image_drops(rows_all, g) for g in multi}
    images = sorted(set().union(*(d.index for d in drops.values()))) if drops else []
    n = grouping["bootstrap"]
    rng = rng_for(seed, "stability")
    picks = rng.integers(len(images), size=(n, len(images))) if images else np.zeros((n, 0), dtype=int)
    point = {g: float(d.mean().max()) for g, d in drops.items()}
    resampled = {}
    for g, d in drops.items():
        values = d.reindex(images).to_numpy()
        resampled[g] = np.nanmax(np.nanmean(values[picks], axis=1), axis=1)
    delta, decision = grouping["delta"], Decision.of(grouping)

    def holds(g: str, dP):  # the verdict of group g at drop(s) dP
        return decision.feasible(dP, half_widths.get(g, 0.0), delta) & (g not in failed)

    feasible = {g: bool(holds(g, point[g])) for g in multi}
    searched = tuple(sorted(partition))
    counts: dict[tuple[str, ...], int] = {}
    for b in range(n):
        ok = [g for g in multi if holds(g, resampled[g][b])]
        found = tuple(fewest_groups(names, ok, {g: resampled[g][b] for g in ok}))
        still = all(g in ok for g in searched if g in drops)
        if still and len(found) == len(searched):  # the search's answer still stands: no tie-break
            found = searched
        counts[found] = counts.get(found, 0) + 1
    per_group = pd.DataFrame(
        [
            [
                g,
                len(group_members(g)),
                g in partition,
                point[g],
                feasible[g],
                float(np.mean(holds(g, resampled[g]))),
            ]
            for g in multi
        ],
        columns=tables.columns("grouping_stability")[:-1],
    )
    per_group["flip_rate"] = np.where(per_group.feasible, 1 - per_group.feasible_rate, per_group.feasible_rate)
    found_rows = [
        [" / ".join(p), len(p), c, c / n, tuple(p) == searched]
        for p, c in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    return per_group, pd.DataFrame(found_rows, columns=tables.columns("grouping_stability_partitions"))


def plot_stability(per_group: pd.DataFrame, partitions: pd.DataFrame, delta: float, path) -> None:
    """Each verified group's share of resamples in which it is feasible, the search's groups marked."""
    plt = io.pyplot()
    shown = per_group.sort_values("dP").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.6, 0.9 + 0.28 * max(len(shown), 1)), layout="constrained")
    colours = ["tab:green" if f else "tab:red" for f in shown.feasible]
    ax.barh(range(len(shown)), shown.feasible_rate.fillna(0), color=colours, alpha=0.8)
    for y, rate in enumerate(shown.feasible_rate):  # the share written out: a 0 % bar is not a missing one
        text = "no resample" if rate != rate else f"{rate:.0%}"
        ax.annotate(
            text, (0 if rate != rate else rate, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=6.5
        )
    ax.set_yticks(range(len(shown)), [g + (" *" if p else "") for g, p in zip(shown.group, shown.in_partition)])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlim(0, 1.08)  # room for "100%"
    ax.set_xticks(np.linspace(0, 1, 5), [f"{v:.0%}" for v in np.linspace(0, 1, 5)])
    ax.axvline(0.5, color="grey", linestyle=":")
    ax.set_xlabel(f"share of test-image resamples in which the group is feasible (delta = {delta:g} dB)")
    same = float(partitions.loc[partitions.is_search, "fraction"].sum()) if len(partitions) else float("nan")
    ax.set_title(
        f"Partition stability: the search's partition comes out in {same:.0%} of resamples\n"
        "(* a group of that partition; green/red: its verdict on all test images)",
        fontsize=9,
    )
    io.save_figure(fig, path)
