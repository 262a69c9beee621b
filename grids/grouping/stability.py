"""Partition stability: does the search's answer rest on the particular test images, or on the
particular training run? (rule ``grouping_stability``)

**Test images.** The test images are resampled (with replacement, ``grouping.bootstrap`` times);
every verified group is re-decided from its resampled drop, and the partition that evidence
supports is taken: the search's own partition while all its groups stay feasible and no partition
with fewer verified-feasible groups exists (another partition of the same size is a tie, not a
different answer), else the fewest verified-feasible groups (singletons always allowed).

**Training seeds.** The final partition's groups, and every verified group whose 95 % interval
comes within ``grouping.replicates.near_delta`` dB of delta (:func:`groups_to_retrain`), are
trained again at the noise floor's k other training seeds, with their members' single-task
models (:func:`replicate_models`). At each seed the evaluation table is the one that seed would
have made (each model retrained there replaces its own), every retrained group is decided again exactly as
the search decides (:func:`grids.grouping.evidence.group_evidence`), the other verified groups
keep their verdict (they sit further than ``near_delta`` from delta), and the partition those
verdicts support is taken as above. The search is not rerun: a group another seed's search would
have verified instead is not seen.

How often each group's verdict and the whole partition hold, under both, is in the tables
``grouping_stability`` (per group), ``grouping_stability_partitions`` (per partition found, per
kind of resampling) and ``grouping_seed_verdicts`` (per retrained group and seed).

    python -m grids.grouping.stability --verified grouping/verified.parquet --groups final/groups.parquet \
        --degradations D... --eval E... --grouping JSON [--noise-floor NF] --seed S --training-seed T \
        [--replicate GROUP K EVAL]... --stability grouping/stability.parquet \
        --stability-partitions grouping/stability_partitions.parquet \
        --seed-verdicts grouping/seed_verdicts.parquet --plot grouping/stability.png
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from .. import io, tables
from ..config import config_section
from ..options import Decision
from ..seeds import rng_for
from .evidence import FAILED_TRAINING, group_evidence, image_drops, test_rows, test_set_of
from .names import group_members

TEST_IMAGES, TRAINING_SEEDS = "test_images", "training_seeds"  # grouping_stability_partitions.resampled


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
    counts: dict[tuple[str, ...], int] = {}
    for b in range(n):
        ok = [g for g in multi if holds(g, resampled[g][b])]
        found = supported_partition(names, ok, {g: resampled[g][b] for g in ok}, partition)
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
        columns=tables.columns("grouping_stability")[:6],
    )
    per_group["flip_rate"] = np.where(per_group.feasible, 1 - per_group.feasible_rate, per_group.feasible_rate)
    return per_group, partition_counts(counts, partition, TEST_IMAGES)


def supported_partition(
    names: list[str], feasible: list[str], risk: dict[str, float], searched: list[str]
) -> tuple[str, ...]:
    """The partition that a set of ``feasible`` groups supports: the ``searched`` one while all its
    groups of two or more stay feasible and nothing smaller exists (another partition of its size
    is a tie, not a different answer), else :func:`fewest_groups`."""
    found = tuple(fewest_groups(names, feasible, risk))
    searched = tuple(sorted(searched))
    still = all(g in feasible for g in searched if len(group_members(g)) > 1)
    return searched if still and len(found) == len(searched) else found


def partition_counts(counts: dict[tuple[str, ...], int], searched: list[str], resampled: str) -> pd.DataFrame:
    """How often each partition came out (table ``grouping_stability_partitions``), most often first."""
    total = sum(counts.values())
    rows = [
        [resampled, " / ".join(p), len(p), c, c / total, p == tuple(sorted(searched))]
        for p, c in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    return pd.DataFrame(rows, columns=tables.columns("grouping_stability_partitions"))


def groups_to_retrain(
    verified: pd.DataFrame, partition: list[str], delta: float, near_delta: float | None
) -> list[str]:
    """The groups trained again at the other training seeds: the final ``partition``'s groups of two
    or more and every ``verified`` group whose 95 % interval ``[dP_low, dP_high]`` comes within
    ``near_delta`` dB of ``delta`` (its verdict could go either way); none with ``near_delta`` None."""
    if near_delta is None:
        return []
    gap = np.maximum(verified.dP_low - delta, delta - verified.dP_high).clip(lower=0)
    near = verified.group[(gap <= near_delta + 1e-12) & (verified["size"] > 1)]
    return sorted({g for g in partition if len(group_members(g)) > 1} | set(near))


def replicate_models(retrained: list[str], replicated: list[str], seeds: int) -> list[tuple[str, int]]:
    """Every model (GROUP, K) the stability reads at the training seeds ``1..seeds``: the noise
    floor's single-task models (``replicated``), each ``retrained`` group and each of its members
    (a member outside the noise floor is trained at those seeds after the search, so that every
    retrained group is judged against the single-task models of its own seed)."""
    members = [m for g in retrained for m in group_members(g) if m not in replicated]
    models = list(dict.fromkeys([*replicated, *members, *retrained]))
    return [(model, k) for model in models for k in range(1, seeds + 1)]


def seed_evaluation(evaluation: pd.DataFrame, replicates: dict[tuple[str, int], pd.DataFrame], k: int) -> pd.DataFrame:
    """The evaluation table training seed ``k`` would have made: every model retrained at ``k``
    (``replicates[(group, k)]``, its evaluation) replaces that model's rows; the rest stand."""
    retrained = {group: frame for (group, kk), frame in replicates.items() if kk == k}
    kept = evaluation[~evaluation.trained_on.isin(list(retrained))]
    return pd.concat([kept, *retrained.values()], ignore_index=True)


def seed_stability(
    evaluation: pd.DataFrame,
    names: list[str],
    verified: pd.DataFrame,
    partition: list[str],
    inputs: dict,
    replicates: dict[tuple[str, int], pd.DataFrame],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each retrained group decided again at each training seed (k = 0: the run's own models), and
    the partition every seed's verdicts support (the module docstring). ``inputs``: the search's
    ``grouping`` section, ``noise_floor`` table and bootstrap ``seed``, and the run's
    ``training_seed``. Returns (table ``grouping_seed_verdicts``, partitions per seed as
    ``grouping_stability_partitions`` rows)."""
    grouping = inputs["grouping"]
    test_set = test_set_of(grouping, evaluation)
    retrained = sorted({g for g, _ in replicates if len(group_members(g)) > 1})
    seeds = sorted({k for _, k in replicates})
    rows, counts = [], {}
    for k in [0, *seeds]:
        frame = evaluation if k == 0 else seed_evaluation(evaluation, replicates, k)
        groups = [g for g in retrained if k == 0 or (g, k) in replicates]
        found = group_evidence(frame, test_set, groups, grouping, inputs["noise_floor"], inputs["seed"])
        for row in found.itertuples():
            rows.append([row.group, k, inputs["training_seed"] + k, row.dP, row.dP_low, row.dP_high, row.verdict])
        verdicts = {**dict(zip(verified.group, verified.feasible)), **dict(zip(found.group, found.feasible))}
        risk = {**dict(zip(verified.group, verified.dP)), **dict(zip(found.group, found.dP))}
        feasible = [g for g, ok in verdicts.items() if ok]
        chosen = supported_partition(names, feasible, risk, partition)
        counts[chosen] = counts.get(chosen, 0) + 1
    table = pd.DataFrame(rows, columns=tables.columns("grouping_seed_verdicts")[:-1])
    table["feasible"] = table.verdict == "feasible"
    return table, partition_counts(counts, partition, TRAINING_SEEDS)


def with_seed_columns(per_group: pd.DataFrame, seed_verdicts: pd.DataFrame) -> pd.DataFrame:
    """``per_group`` (test-image stability) with each group's training seeds, the share of them in
    which it is feasible and whether its verdict flips at any (NaN / False where not retrained)."""
    by_group = seed_verdicts.groupby("group").feasible
    out = per_group.copy()
    out["training_seeds"] = out.group.map(by_group.size()).fillna(1).astype("int64")
    out["seed_feasible_rate"] = out.group.map(by_group.mean()).astype(float)
    out["seed_flip"] = out.group.map(by_group.nunique() > 1).fillna(False).astype(bool)
    return out[tables.columns("grouping_stability")]


def plot_stability(per_group: pd.DataFrame, partitions: pd.DataFrame, delta: float, path) -> None:
    """Each verified group's share of test-image resamples in which it is feasible (bars; the
    search's groups marked) and, for the groups retrained, its share of training seeds (diamonds)."""
    plt = io.pyplot()
    shown = per_group.sort_values("dP").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.6, 1.1 + 0.28 * max(len(shown), 1)), layout="constrained")
    colours = ["tab:green" if f else "tab:red" for f in shown.feasible]
    ax.barh(range(len(shown)), shown.feasible_rate.fillna(0), color=colours, alpha=0.8)
    for y, rate in enumerate(shown.feasible_rate):  # the share written out: a 0 % bar is not a missing one
        text = "no resample" if rate != rate else f"{rate:.0%}"
        ax.annotate(
            text, (0 if rate != rate else rate, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=6.5
        )
    seeds = shown[shown.seed_feasible_rate.notna()]
    if len(seeds):
        ax.scatter(seeds.seed_feasible_rate, seeds.index, marker="D", s=22, color="black", zorder=3)
        for y, row in seeds.iterrows():
            held = int(round(row.seed_feasible_rate * row.training_seeds))
            flip = " FLIPS" if row.seed_flip else ""
            ax.annotate(f"{held}/{row.training_seeds} seeds feasible{flip}", (1.13, y), va="center", fontsize=6.5)
    ax.set_yticks(range(len(shown)), [g + (" *" if p else "") for g, p in zip(shown.group, shown.in_partition)])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlim(0, 1.45 if len(seeds) else 1.08)  # room for "100%" and the seeds' counts
    ax.set_xticks(np.linspace(0, 1, 5), [f"{v:.0%}" for v in np.linspace(0, 1, 5)])
    ax.axvline(0.5, color="grey", linestyle=":")
    ax.set_xlabel(
        "share of test-image resamples (bars) and of training seeds (diamonds) in which the group is feasible "
        f"(delta = {delta:g} dB)",
        fontsize=8,
    )
    ax.set_title(
        f"{_holds(partitions)}\n(* a group of that partition; green/red: its verdict on all test images)", fontsize=9
    )
    io.save_figure(fig, path)


def _holds(partitions: pd.DataFrame) -> str:
    """The title's line: how often the search's partition comes out, per kind of resampling."""
    parts = []
    for resampled, what in ((TEST_IMAGES, "test-image resamples"), (TRAINING_SEEDS, "training seeds")):
        rows = partitions[partitions.resampled == resampled]
        if len(rows):
            same = rows[rows.is_search]
            parts.append(f"{int(same.resamples.sum())} of {int(rows.resamples.sum())} {what}")
    return "Partition stability: the search's partition comes out in\n" + (" and ".join(parts) or "no resample")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.grouping.stability", description=__doc__.split("\n")[0])
    parser.add_argument("--verified", required=True, help="grouping/verified.parquet (the search's evidence)")
    parser.add_argument("--groups", required=True, help="final/groups.parquet (the search's partition)")
    parser.add_argument("--degradations", nargs="+", required=True)
    parser.add_argument("--eval", nargs="+", required=True, help="the search's evaluation tables")
    parser.add_argument("--grouping", required=True, help="the config's grouping section, JSON")
    parser.add_argument("--noise-floor", help="grouping/noise_floor.parquet (none: a drop's seed noise is 0)")
    parser.add_argument("--seed", type=int, default=0, help="the data seed (bootstrap resamples)")
    parser.add_argument("--training-seed", type=int, default=0, help="the run's training seed (k = 0)")
    parser.add_argument(
        "--replicate", nargs=3, action="append", default=[], metavar=("GROUP", "K", "EVAL"), help="a retrained model"
    )
    for name in ("stability", "stability-partitions", "seed-verdicts"):
        parser.add_argument(f"--{name}", required=True, help=f"grouping/{name.replace('-', '_')}.parquet to write")
    parser.add_argument("--plot", required=True, help="grouping/stability.png to write")
    args = parser.parse_args(argv)
    grouping = config_section("grouping", json.loads(args.grouping))
    verified, evaluation = pd.read_parquet(args.verified), io.read_parquets(args.eval)
    partition = sorted(set(pd.read_parquet(args.groups).group))
    replicates = {(group, int(k)): pd.read_parquet(path) for group, k, path in args.replicate}
    per_group, by_images = partition_stability(
        evaluation,
        test_set_of(grouping, evaluation),
        args.degradations,
        list(verified.group),
        partition,
        grouping,
        dict(zip(verified.group, verified.dP_high - verified.dP)),
        args.seed,
        frozenset(verified.group[verified.verdict == FAILED_TRAINING]),
    )
    noise_floor = pd.read_parquet(args.noise_floor) if args.noise_floor else None
    inputs = {"grouping": grouping, "noise_floor": noise_floor, "seed": args.seed, "training_seed": args.training_seed}
    seed_verdicts, by_seeds = seed_stability(evaluation, args.degradations, verified, partition, inputs, replicates)
    per_group = with_seed_columns(per_group, seed_verdicts)
    partitions = pd.concat([by_images, by_seeds], ignore_index=True)
    tables.write(per_group, "grouping_stability", args.stability)
    tables.write(partitions, "grouping_stability_partitions", args.stability_partitions)
    tables.write(seed_verdicts, "grouping_seed_verdicts", args.seed_verdicts)
    plot_stability(per_group, partitions, grouping["delta"], args.plot)
    print(per_group.round(3).to_string(index=False))
    print(seed_verdicts.round(3).to_string(index=False))
    print(partitions.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    from ..stage import run_stage

    sys.exit(run_stage(main))
