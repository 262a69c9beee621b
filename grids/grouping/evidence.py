"""How much a verification's drop can be trusted: gains over the input, noise, decisions, stability.

A drop ``dP(C)`` is a difference of mean PSNRs of two trained models on a handful of test images.
Three things decide whether it can carry a verdict, and this module measures each:

* **Did the models learn?** (the rule: :mod:`grids.learning`) A single-task model that gains less
  than ``grouping.min_gain`` dB over its degraded input (the identity) restores almost nothing; a
  group containing its degradation cannot conflict with it, so that group's verdict is
  ``uninformative``. A group model that ends below the degraded input on a member is a **failed
  mixed training**: its verdict is ``failed_training`` (:func:`group_verdict`), which the search
  treats as infeasible (the group is not merged) but reports apart from a measured conflict.
* **Test-image noise.** Per test image the member's drop is ``single - group``; resampling the
  images (with replacement, the same images for every member) and taking the max over members of
  the resampled means gives the bootstrap standard deviation of ``dP``.
* **Seed noise.** The same recipe trained from another seed lands elsewhere. ``noise_floor``
  measures the seed-to-seed standard deviation ``s`` of a single-task model's mean PSNR from
  replicate trainings; a drop is the difference of two independently seeded models, so its seed
  standard deviation is ``sqrt(2) * s`` (pooled over the replicated degradations).

The interval of ``dP`` is ``dP +- 1.96 * sqrt(sd_images^2 + sd_seeds^2)`` (normal approximation,
95 %). ``grouping.decision`` says how a verdict is taken: ``point`` (``dP <= delta``, the paper's
rule) or ``conservative`` (the interval's upper end ``<= delta``: feasible only when the drop is
below delta beyond the noise).

Partition stability resamples the test images once more, re-decides every verified group, and
takes the partition that evidence supports: the search's own partition while all its groups stay
feasible and no partition with fewer verified-feasible groups exists (another partition of the
same size is a tie, not a different answer), else the fewest verified-feasible groups (singletons
always allowed). How often it is the search's partition, and how often each group's verdict
flips, says how much the answer rests on the particular test images.

    python -m grids.grouping.evidence noise-floor --test-set heldout --single E... \\
        --replicate DEG EVAL ... --out results/grouping/noise_floor.parquet
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from .. import io, tables
from ..learning import BELOW_INPUT, LEARNED, judge, learning
from ..seeds import rng_for
from .names import group_members

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
DECISIONS = ("point", "conservative")
FEASIBLE, INFEASIBLE, FAILED_TRAINING = "feasible", "infeasible", "failed_training"
VERDICTS = (FEASIBLE, INFEASIBLE, FAILED_TRAINING)


def test_rows(evaluation: pd.DataFrame, test_set: str) -> pd.DataFrame:
    rows = evaluation[evaluation.test_set == test_set]
    if rows.empty:
        raise ValueError(f"no evaluation rows for test set {test_set!r} (have: {sorted(set(evaluation.test_set))})")
    return rows


def mean_psnr(evaluation: pd.DataFrame, test_set: str) -> pd.DataFrame:
    """Mean PSNR per (trained_on, degradation) on ``test_set``."""
    rows = test_rows(evaluation, test_set)
    return rows.groupby(["trained_on", "degradation"], as_index=False).psnr.mean()


def test_set_of(grouping: dict, evaluation: pd.DataFrame) -> str:
    """The configured test set, or the first one evaluated (the order of the config)."""
    return grouping["test_set"] or str(evaluation.test_set.iloc[0])


def per_image(evaluation: pd.DataFrame, model: str, degradation: str) -> pd.Series:
    """PSNR of ``model`` on ``degradation``'s test images (rows of one test set), by image id."""
    rows = evaluation[(evaluation.trained_on == model) & (evaluation.degradation == degradation)]
    if rows.empty:
        raise ValueError(f"no evaluation of model {model!r} on {degradation!r}")
    return rows.set_index("image").psnr


def image_drops(evaluation: pd.DataFrame, group: str) -> pd.DataFrame:
    """Per test image (rows) and member (columns): single-task PSNR minus the group model's (dB).
    ``evaluation`` holds one test set's rows."""
    columns = {}
    for member in group_members(group):
        single, grouped = per_image(evaluation, member, member), per_image(evaluation, group, member)
        columns[member] = single - grouped
    frame = pd.DataFrame(columns)
    if frame.isna().any().any():
        raise ValueError(f"group {group!r}: its model and the single-task models were tested on different images")
    return frame


def bootstrap_max_drop(drops: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` resampled values of ``dP``: test images (rows of ``drops``, one column per member)
    drawn with replacement, the same draw for every member, then the largest member mean."""
    picks = rng.integers(len(drops), size=(n, len(drops)))
    return drops[picks].mean(axis=1).max(axis=1)


def seed_drop_sd(noise_floor: pd.DataFrame | None) -> float:
    """The seed standard deviation of a drop (dB): the pooled row's ``drop_sd``; 0 without replicates."""
    if noise_floor is None or noise_floor.empty:
        return 0.0
    pooled = noise_floor[noise_floor.degradation == POOLED]
    return float(pooled.drop_sd.iloc[0]) if len(pooled) else 0.0


def decide(dP: float | np.ndarray, half_width: float | np.ndarray, delta: float, decision: str):
    """Feasible? ``point``: ``dP <= delta``; ``conservative``: ``dP + half_width <= delta``."""
    if decision not in DECISIONS:
        raise ValueError(f"grouping.decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    return dP + (half_width if decision == "conservative" else 0.0) <= delta


def group_verdict(feasible_by_drop: bool, below_input: list[str]) -> str:
    """A verified group's verdict: ``failed_training`` when its model ends below the degraded input
    on any member (``below_input``), whatever its drop (the drop then measures a failed training,
    not a conflict; the search treats the group as infeasible), else ``feasible`` or ``infeasible``
    by its drop (:func:`decide`)."""
    if below_input:
        return FAILED_TRAINING
    return FEASIBLE if feasible_by_drop else INFEASIBLE


def single_task_gains(evaluation: pd.DataFrame, names: list[str]) -> pd.Series:
    """Mean gain over the input of each degradation's single-task model (one test set's rows)."""
    gains = {}
    for name in names:
        rows = evaluation[(evaluation.trained_on == name) & (evaluation.degradation == name)]
        if rows.empty:
            raise ValueError(f"no evaluation of the single-task model {name!r} on its own degradation")
        gains[name] = float(rows.gain.mean())
    return pd.Series(gains, dtype=float)


def not_learned(gains: pd.Series, min_gain: float) -> list[str]:
    """The degradations whose single-task model gained less than ``min_gain`` dB over the input."""
    return [name for name, gain in gains.items() if learning(gain, min_gain) != LEARNED]


def warn_not_learned(gains: pd.Series, min_gain: float, file=None) -> None:
    """One warning line per model that did not learn, on ``file`` (stderr: the job's log)."""
    for name in not_learned(gains, min_gain):
        print(
            f"warning: the single-task model of {name} gains {gains[name]:+.2f} dB over its input, below "
            f"grouping.min_gain = {min_gain:g} dB: it did not learn, so every verdict involving {name} is "
            "uninformative (train longer or with another recipe: bench/bench_recipe.py)",
            file=file or sys.stderr,
        )


def warn_failed_trainings(found: pd.DataFrame, file=None) -> None:
    """One warning line per group whose mixed training failed (``found``: :func:`group_evidence`
    rows), on ``file`` (stderr: the job's log): the search splits it for that reason."""
    for row in found[found.verdict == FAILED_TRAINING].itertuples():
        print(
            f"warning: the mixed training of {row.group} failed: its model ends below the degraded input on "
            f"{row.below_input.replace(',', ', ')} (worst member gain {row.weakest_group_gain:+.2f} dB). The search "
            "treats it as infeasible and does not merge these members: that split reflects a failed training, "
            "not a measured conflict between the tasks (train longer or with another recipe)",
            file=file or sys.stderr,
        )


def group_evidence(
    evaluation: pd.DataFrame, test_set: str, groups: list[str], grouping: dict, noise_floor: pd.DataFrame | None, seed
) -> pd.DataFrame:
    """Per group of two or more: ``dP``, its noise, interval, verdict, whether it is informative and
    how its model fares against the input (``EVIDENCE_COLUMNS``; see the module docstring)."""
    rows_all = test_rows(evaluation, test_set)
    seeds_sd = seed_drop_sd(noise_floor)
    members_all = sorted({m for g in groups for m in group_members(g)})
    gains = single_task_gains(rows_all, members_all) if members_all else pd.Series(dtype=float)
    judged = judge(rows_all, grouping["min_gain"]).droplevel("test_set")
    rows = []
    for group in groups:
        members = group_members(group)
        if len(members) < 2:
            continue
        drops = image_drops(rows_all, group)
        dP = float(drops.mean().max())
        samples = bootstrap_max_drop(drops.to_numpy(), grouping["bootstrap"], rng_for(seed, "drop", group))
        images_sd = float(samples.std(ddof=1)) if len(samples) > 1 else 0.0
        half = Z95 * float(np.hypot(images_sd, seeds_sd))
        weakest = float(gains[members].min())
        own = judged.loc[[(group, m) for m in members]]
        below = [m for m, outcome in zip(members, own.learning) if outcome == BELOW_INPUT]
        verdict = group_verdict(bool(decide(dP, half, grouping["delta"], grouping["decision"])), below)
        rows.append(
            [
                group,
                len(members),
                dP,
                images_sd,
                seeds_sd,
                dP - half,
                dP + half,
                verdict == FEASIBLE,
                verdict,
                weakest,
                learning(weakest, grouping["min_gain"]) != LEARNED,
                float(own.gain.min()),
                ",".join(below),
                int(own.harmed.sum()),
            ]
        )
    return pd.DataFrame(rows, columns=EVIDENCE_COLUMNS)


# grouping_verified's columns but the two the search stage adds (distance and round)
EVIDENCE_COLUMNS = [c for c in tables.columns("grouping_verified") if c not in ("mean_distance", "round")]

# --- the noise floor: replicate trainings ------------------------------------------------------

POOLED = "pooled"


def noise_floor(test_set: str, replicates: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Seed-to-seed spread per replicated degradation: ``replicates[name]`` are the evaluations of
    that degradation's single-task models, one per seed (the workflow's own model first). A last
    ``pooled`` row holds the root mean variance over the degradations."""
    rows = []
    for name, evaluations in replicates.items():
        psnr, gain = [], []
        for frame in evaluations:
            own = test_rows(frame, test_set)
            own = own[own.degradation == name]
            if own.empty:
                raise ValueError(f"a replicate of {name!r} has no rows of {name!r} on {test_set!r}")
            psnr.append(own.psnr.mean())
            gain.append(own.gain.mean())
        sd = float(np.std(psnr, ddof=1)) if len(psnr) > 1 else float("nan")
        rows.append(
            [name, len(psnr), float(np.mean(psnr)), sd, float(np.sqrt(2) * sd), float(np.mean(gain)), min(gain)]
        )
    sds = np.array([r[3] for r in rows if np.isfinite(r[3])])
    pooled = float(np.sqrt(np.mean(sds**2))) if len(sds) else float("nan")
    seeds = int(sum(r[1] for r in rows))
    rows.append([POOLED, seeds, float("nan"), pooled, float(np.sqrt(2) * pooled), float("nan"), float("nan")])
    return pd.DataFrame(rows, columns=tables.columns("grouping_noise_floor"))


# --- partition stability ----------------------------------------------------------------------


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
    delta, decision = grouping["delta"], grouping["decision"]

    def holds(g: str, dP):  # the verdict of group g at drop(s) dP
        return decide(dP, half_widths.get(g, 0.0), delta, decision) & (g not in failed)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.grouping.evidence", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("noise-floor", help="seed-to-seed spread of single-task models from replicate trainings")
    p.add_argument("--test-set", required=True)
    p.add_argument("--single", nargs="*", default=[], help="evaluation tables of the workflow's single-task models")
    p.add_argument("--replicate", nargs=2, action="append", default=[], metavar=("DEGRADATION", "EVAL"))
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    singles = {}
    for path in args.single:
        frame = pd.read_parquet(path)
        singles[str(frame.trained_on.iloc[0])] = frame
    replicates: dict[str, list[pd.DataFrame]] = {}
    for name, path in args.replicate:
        if name not in singles:
            raise ValueError(f"replicate of {name!r}: no --single evaluation of that degradation's own model")
        replicates.setdefault(name, [singles[name]]).append(pd.read_parquet(path))
    table = noise_floor(args.test_set, replicates)
    tables.write(table, "grouping_noise_floor", args.out)
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    from ..stage import run_stage

    sys.exit(run_stage(main))
