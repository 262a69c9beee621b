"""The grouping search as workflow rounds: drops from evaluation tables, one planner step per round.

    python -m grids.grouping.rounds candidates --matrix M --degradations D... --out candidates.parquet
    python -m grids.grouping.rounds round --round R --matrix M --eval E... --grouping JSON --out rounds/R.parquet
    python -m grids.grouping.rounds finish --rounds R... --matrix M --eval E... --grouping JSON \
        --verified grouping/verified.parquet --drops grouping/drops.parquet \
        --partitions grouping/partitions.parquet --plot grouping/search.png --groups final/groups.parquet
    python -m grids.grouping.rounds export --groups final/groups.parquet --group G --model models/G/model.pth \
        --eval E... --grouping JSON --config-hash H --training-data JSON \
        --pth final/models/G.pth --safetensors final/models/G.safetensors --card final/models/G.md

The planner (:mod:`grids.grouping.planner`) is pure: from everything verified so far it answers either the
next groups to verify or the final partition. Each Snakemake round is one such call. Its input is
the evaluation table of every group that earlier rounds asked for, plus the single-task models'
(the upper bounds), so a round never needs a result it does not have and a group is never trained
twice: models are keyed by group name, whatever delta or round asked for them.

A group's drop (docs/method.md §5) on the configured test set, mean PSNR over its images:
``dP(C) = max over d in C of (P(M_S(d), d) - P(M_M(C), d))``.

Outputs (the tables' columns: ``grouping_*`` and ``final_groups`` of :mod:`grids.tables`):

* ``rounds/{r}.parquet``: one planner step -- ``action`` is ``verify`` (train and evaluate this
  group next) or ``final`` (a group of the answer; ``partition`` numbers the minimal partitions, 0
  is the one used).
* ``grouping/verified.parquet``: every verified group, with the round that asked for it.
* ``grouping/drops.parquet``: per verified group and member, the drop against its single-task model.
* ``grouping/partitions.parquet``: every minimal partition returned.
* ``grouping/search.png``: each verified group's drop against its mean distance, delta marked.
* ``final/groups.parquet``: the partition used, one row per degradation.
* ``final/models/{group}.pth`` + ``{group}.safetensors`` + ``{group}.md``: each final group's model,
  slim (weights, architecture, members, delta, drops, recipe, config hash; no optimizer state),
  the same weights as safetensors, and its model card (a singleton's is its single-task model);
  written by :func:`grids.grouping.export.export_model`, the ``export`` command here, one group per
  job (each file is a declared output: a deleted one is rebuilt).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io, tables
from ..config import config_section
from ..learning import judge
from ..options import Decision
from ..plotting import place_labels, wrap_group
from ..similarity import group_distance, wide_matrix
from . import evidence
from .evidence import mean_psnr, test_set_of
from .names import group_members, group_name
from .planner import Planner, SearchResult, rank_groups


def distance_matrix(matrix: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The symmetric ``distance_sym`` matrix of ``names`` (the clean set and others left out)."""
    return wide_matrix(matrix, names=names).to_numpy(dtype=float)


def member_drops(evaluation: pd.DataFrame, test_set: str, groups: list[str], min_gain: float) -> pd.DataFrame:
    """Per group and member: single-task PSNR, group-model PSNR, their difference, the input's
    PSNR, both models' gains over it (dB), the test images each makes worse than its input by more
    than 0.5 dB, and whether the group's model learned the member (:mod:`grids.learning`)."""
    rows = evaluation[evaluation.test_set == test_set]
    means = mean_psnr(evaluation, test_set).set_index(["trained_on", "degradation"]).psnr
    inputs = rows.groupby("degradation").psnr_input.mean()
    judged = judge(rows, min_gain).droplevel("test_set")
    out = []
    for group in groups:
        for member in group_members(group):
            for model in (member, group):
                if (model, member) not in means.index:
                    raise ValueError(f"no evaluation of model {model!r} on {member!r} ({test_set})")
            single, grouped, identity = means[(member, member)], means[(group, member)], inputs[member]
            own, theirs = judged.loc[(member, member)], judged.loc[(group, member)]
            out.append(
                [
                    *(group, member, single, grouped, single - grouped, identity, single - identity),
                    *(grouped - identity, int(own.harmed), int(theirs.harmed), theirs.learning),
                ]
            )
    return pd.DataFrame(out, columns=tables.columns("grouping_drops"))


def group_drops(
    evaluation: pd.DataFrame,
    test_set: str,
    groups: list[str],
    grouping: dict,
    noise_floor: pd.DataFrame | None = None,
    seed: int = 0,
) -> dict[frozenset[str], float]:
    """The planner's ``known`` for the non-singleton ``groups`` (:func:`known_results`)."""
    found = evidence.group_evidence(evaluation, test_set, groups, grouping, noise_floor, seed)
    return known_results(found, Decision.of(grouping))


def known_results(found: pd.DataFrame, decision: Decision) -> dict[frozenset[str], float]:
    """Per group of :func:`grids.grouping.evidence.group_evidence` rows, the value the planner
    compares with delta: ``dP`` under ``grouping.decision: point``, the upper end of its interval
    under ``conservative``; infinite for a failed training (infeasible whatever its drop)."""
    values = found[decision.column].where(found.verdict != evidence.FAILED_TRAINING, np.inf)
    return {frozenset(group_members(g)): float(v) for g, v in zip(found.group, values)}


def planner_for(matrix: pd.DataFrame, names: list[str], grouping: dict) -> Planner:
    return Planner(
        names,
        distance_matrix(matrix, names),
        grouping["delta"],
        strategy=grouping["strategy"],
        probes_per_round=grouping["probes_per_round"],
        all_partitions=grouping["all_partitions"],
    )


@dataclass(frozen=True, kw_only=True)
class SearchInputs:
    """What every round of the search and its finish read: the similarity ``matrix``, the
    degradations (``names``), every evaluation so far, the ``grouping`` section, the noise floor's
    table (None: a drop's seed noise counts as 0) and the bootstrap's ``seed``."""

    matrix: pd.DataFrame
    names: list[str]
    evaluation: pd.DataFrame
    grouping: dict
    noise_floor: pd.DataFrame | None = None
    seed: int = 0


def plan_round(round_index: int, inputs: SearchInputs) -> pd.DataFrame:
    """One planner step from every result in ``inputs.evaluation``: groups to verify, or the answer."""
    matrix, names, evaluation, grouping = inputs.matrix, inputs.names, inputs.evaluation, inputs.grouping
    noise_floor, seed = inputs.noise_floor, inputs.seed
    test_set = test_set_of(grouping, evaluation)
    trained = sorted(set(evaluation.trained_on))
    found = evidence.group_evidence(evaluation, test_set, trained, grouping, noise_floor, seed)
    evidence.warn_failed_trainings(found)
    out = planner_for(matrix, names, grouping).next(known_results(found, Decision.of(grouping)))
    if isinstance(out, SearchResult):
        partitions = [out.partition] + [p for p in out.all_partitions if set(p) != set(out.partition)]
        rows = [[round_index, "final", group_name(g), k] for k, part in enumerate(partitions) for g in part]
    else:
        rows = [[round_index, "verify", group_name(g), -1] for g in out]
    return pd.DataFrame(rows, columns=tables.columns("grouping_round"))


def candidates_table(matrix: pd.DataFrame, names: list[str], max_size: int | None = None) -> pd.DataFrame:
    """Λ_L for every size L >= 2: ``size, rank, group, mean_distance, var_distance``."""
    distances = distance_matrix(matrix, names)
    rows = []
    for size in range(2, (max_size or len(names)) + 1):
        for rank, (group, mean, var) in enumerate(rank_groups(names, distances, size)):
            rows.append([size, rank, group_name(group), mean, var])
    return pd.DataFrame(rows, columns=tables.columns("grouping_candidates"))


def finish(round_tables: list[pd.DataFrame], inputs: SearchInputs) -> dict[str, pd.DataFrame]:
    """The search's tables once its last round answered (see the module docstring)."""
    matrix, names, evaluation, grouping = inputs.matrix, inputs.names, inputs.evaluation, inputs.grouping
    noise_floor, seed = inputs.noise_floor, inputs.seed
    rounds = pd.concat(round_tables, ignore_index=True)
    final = rounds[rounds.action == "final"]
    if final.empty:
        raise ValueError("the last round has no final partition: the search is not finished")
    test_set = test_set_of(grouping, evaluation)
    asked = rounds[rounds.action == "verify"].drop_duplicates("group").set_index("group")["round"]
    drops = member_drops(evaluation, test_set, list(asked.index), grouping["min_learned_gain"])
    wide = wide_matrix(matrix, names=names)
    found = evidence.group_evidence(evaluation, test_set, list(asked.index), grouping, noise_floor, seed)
    found.insert(2, "mean_distance", [group_distance(wide, group_members(g)) for g in found.group])
    found["round"] = [int(asked[g]) for g in found.group]
    verified = found[tables.columns("grouping_verified")].reset_index(drop=True)
    chosen = final[final.partition == 0]
    groups = (
        pd.DataFrame(
            [[member, g] for g in chosen.group for member in group_members(g)], columns=tables.columns("final_groups")
        )
        .set_index("degradation")
        .loc[names]
        .reset_index()
    )
    gains = evidence.single_task_gains(evidence.test_rows(evaluation, test_set), names)
    return {
        "verified": verified,
        "drops": drops,
        "partitions": final[tables.columns("grouping_partitions")].reset_index(drop=True),
        "groups": groups,
        "gains": gains,
    }


def plot_search(
    verified: pd.DataFrame, delta: float, path: str | Path, gains: pd.Series | None = None, min_gain: float = 0.0
) -> None:
    """Each verified group's drop (with its 95 % interval) against its mean similarity distance,
    the delta line across: how well the ranking heuristic predicted the trainings' outcome. Hollow
    markers: uninformative verdicts (a member's single-task model did not learn); crosses: failed
    trainings (the group's model ends below its input on a member). Each point is
    labelled with its group (wrapped at the ``+``), the labels placed clear of one another where
    there is room; ``gains`` (single-task gain over the input per degradation) go in the title."""
    plt = io.pyplot()
    fig, ax = plt.subplots(figsize=(8.6, 5.6), layout="constrained")
    ax.errorbar(
        verified.mean_distance,
        verified.dP,
        yerr=[verified.dP - verified.dP_low, verified.dP_high - verified.dP],
        fmt="none",
        ecolor="grey",
        elinewidth=0.7,
        alpha=0.6,
    )
    for verdict, colour in zip(evidence.VERDICTS, ("tab:green", "tab:red", "tab:purple")):
        for blind in (False, True):
            rows = verified[(verified.verdict == verdict) & (verified.uninformative == blind)]
            if rows.empty:
                continue
            failed = verdict == evidence.FAILED_TRAINING
            ax.scatter(
                rows.mean_distance,
                rows.dP,
                s=20 + 12 * rows["size"],
                marker="X" if failed else "o",
                facecolors="none" if blind else colour,
                edgecolors=colour,
                alpha=0.8,
                label=("failed training (a member below its input)" if failed else verdict)
                + (" (uninformative)" if blind else ""),
            )
    ax.axhline(delta, color="grey", linestyle="--", label=f"delta = {delta:g} dB")
    ax.margins(x=0.18, y=0.15)  # room for the labels of the outermost points
    ax.set_xlabel("mean pairwise distance of the group (log KL)")
    ax.set_ylabel("dP = max drop vs single-task (dB)")
    title = f"Grouping search: {len(verified)} verified groups (marker size = group size; bars: 95 % interval)"
    if gains is not None and len(gains):
        weak = [f"{n} {gains[n]:+.2f}" for n in evidence.not_learned(gains, min_gain)]
        title += f"\nsingle-task gain over the input: median {gains.median():+.2f} dB"
        title += f"; below {min_gain:g} dB: {', '.join(weak)}" if weak else f"; all >= {min_gain:g} dB"
    ax.set_title(title, fontsize=9, wrap=True)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    fig.draw_without_rendering()  # the layout and the limits, fixed before the labels are placed
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    fig.set_layout_engine("none")
    place_labels(
        ax,
        verified[["mean_distance", "dP"]].to_numpy(dtype=float),
        [wrap_group(g) for g in verified.group],
        [float(np.sqrt(20 + 12 * k) / 2) for k in verified["size"]],
    )
    io.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.grouping.rounds", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("candidates", help="the Λ_L ranking of every group size")
    p.add_argument("--matrix", required=True)
    p.add_argument("--degradations", nargs="+", required=True)
    p.add_argument("--out", required=True)
    for name in ("round", "finish"):
        p = sub.add_parser(name)
        p.add_argument("--matrix", required=True)
        p.add_argument("--degradations", nargs="+", required=True)
        p.add_argument("--eval", nargs="+", required=True, help="evaluation tables known so far")
        p.add_argument("--grouping", required=True, help="the config's grouping section, JSON")
        p.add_argument("--noise-floor", help="grouping/noise_floor.parquet: the seed noise of a drop (none: 0)")
        p.add_argument("--seed", type=int, default=0, help="the config's seed (bootstrap resamples)")
        if name == "round":
            p.add_argument("--round", type=int, required=True)
            p.add_argument("--out", required=True)
        else:
            p.add_argument("--rounds", nargs="+", required=True, help="every round table, in order")
            for table in ("verified", "drops", "partitions"):
                p.add_argument(f"--{table}", required=True, help=f"grouping/{table}.parquet to write")
            p.add_argument("--plot", required=True, help="the search plot (PNG) to write")
            p.add_argument("--groups", required=True, help="final/groups.parquet to write (the partition used)")
    p = sub.add_parser("export", help="a final group's model, slim, as safetensors, and its model card")
    p.add_argument("--groups", required=True, help="final/groups.parquet (the partition)")
    p.add_argument("--group", required=True, help="the final group")
    p.add_argument("--model", required=True, help="its training checkpoint")
    p.add_argument(
        "--eval", nargs="+", required=True, help="evaluation tables of the final and single-task models, the input's"
    )
    p.add_argument("--grouping", required=True, help="the config's grouping section, JSON (delta, test set, min_gain)")
    p.add_argument("--config-hash", default="", help="sha256 of the validated config")
    p.add_argument("--training-data", help="the config's training.images section, JSON")
    for name, what in (("pth", "the slim .pth"), ("safetensors", "the .safetensors"), ("card", "the model card (.md)")):
        p.add_argument(f"--{name}", required=True, help=f"{what} to write")
    args = parser.parse_args(argv)
    if args.command == "export":
        evaluation = io.read_parquets(args.eval)
        grouping = config_section("grouping", json.loads(args.grouping))
        training = json.loads(args.training_data) if args.training_data else None
        from .export import export_model  # torch is imported for this command only

        groups = pd.read_parquet(args.groups)
        files = (args.pth, args.safetensors, args.card)
        export_model(args.group, args.model, *files, groups, evaluation, grouping, args.config_hash, training)
        print(args.pth, args.safetensors, args.card)
        return 0
    matrix = pd.read_parquet(args.matrix)
    if args.command == "candidates":
        table = candidates_table(matrix, args.degradations)
        tables.write(table, "grouping_candidates", args.out)
        print(table.groupby("size").head(3).round(3).to_string(index=False))
        return 0
    grouping = config_section("grouping", json.loads(args.grouping))
    inputs = SearchInputs(
        matrix=matrix,
        names=args.degradations,
        evaluation=io.read_parquets(args.eval),
        grouping=grouping,
        noise_floor=pd.read_parquet(args.noise_floor) if args.noise_floor else None,
        seed=args.seed,
    )
    if args.command == "round":
        table = plan_round(args.round, inputs)
        tables.write(table, "grouping_round", args.out)
        print(table.to_string(index=False))
        return 0
    rounds = [pd.read_parquet(f) for f in args.rounds]
    found = finish(rounds, inputs)
    evidence.warn_not_learned(found["gains"], grouping["min_learned_gain"])
    evidence.warn_failed_trainings(found["verified"])
    for name in ("verified", "drops", "partitions"):
        tables.write(found[name], f"grouping_{name}", getattr(args, name))
    tables.write(found["groups"], "final_groups", args.groups)
    plot_search(found["verified"], grouping["delta"], args.plot, found["gains"], grouping["min_learned_gain"])
    print(found["verified"].round(3).to_string(index=False))
    print(found["groups"].to_string(index=False))
    return 0


if __name__ == "__main__":
    from ..stage import run_stage

    sys.exit(run_stage(main))
