"""How much a verification's drop can be trusted: gains over the input, noise, decisions, stability.

A drop ``dP(C)`` is a difference of mean PSNRs of two trained models on a handful of test images.
Three things decide whether it can carry a verdict, and this module measures each:

* **Did the models learn?** (the rule: :mod:`grids.learning`) A single-task model that gains less
  than ``grouping.min_learned_gain`` dB over its degraded input (the identity) restores almost nothing; a
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
  standard deviation is ``sqrt(2) * s``. A group's interval takes the largest of its members' own
  (:func:`seed_drop_sd`).

The interval of ``dP`` is ``dP +- 1.96 * sqrt(sd_images^2 + sd_seeds^2)`` (normal approximation,
95 %). ``grouping.decision`` says how a verdict is taken: ``point`` (``dP <= delta``, the paper's
rule) or ``conservative`` (the interval's upper end ``<= delta``: feasible only when the drop is
below delta beyond the noise).

The noise floor's stage is :mod:`grids.grouping.noise_floor`; the partition's stability under
resampled test images is :mod:`grids.grouping.stability`.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from .. import tables
from ..learning import BELOW_INPUT, LEARNED, judge, learning
from ..options import Decision
from ..seeds import rng_for
from .names import group_members

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
FEASIBLE, INFEASIBLE, FAILED_TRAINING = "feasible", "infeasible", "failed_training"
VERDICTS = (FEASIBLE, INFEASIBLE, FAILED_TRAINING)
POOLED = "pooled"  # the noise floor's row over every replicated degradation (grids.grouping.noise_floor)


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


def seed_drop_sd(noise_floor: pd.DataFrame | None, members: list[str]) -> float:
    """The seed standard deviation of a group's drop (dB): the largest ``drop_sd`` among its
    ``members``, each from its own noise-floor row, or the ``pooled`` row for a member that was not
    replicated or has no finite spread; 0 without replicates. The largest, not the pooled: ``dP`` is
    a max over members, and the member that sets it may be the one that moves most with the seed."""
    if noise_floor is None or noise_floor.empty:
        return 0.0
    by_name = noise_floor.set_index("degradation").drop_sd
    pooled = by_name.get(POOLED, np.nan)
    own = [by_name.get(m, pooled) for m in members]
    finite = [float(v) for v in (o if np.isfinite(o) else pooled for o in own) if np.isfinite(v)]
    return max(finite, default=0.0)


def group_verdict(feasible_by_drop: bool, below_input: list[str]) -> str:
    """A verified group's verdict: ``failed_training`` when its model ends below the degraded input
    on any member (``below_input``), whatever its drop (the drop then measures a failed training,
    not a conflict; the search treats the group as infeasible), else ``feasible`` or ``infeasible``
    by its drop (:class:`grids.options.Decision`)."""
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
            f"grouping.min_learned_gain = {min_gain:g} dB: it did not learn, so every verdict involving {name} is "
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
    members_all = sorted({m for g in groups for m in group_members(g)})
    gains = single_task_gains(rows_all, members_all) if members_all else pd.Series(dtype=float)
    judged = judge(rows_all, grouping["min_learned_gain"]).droplevel("test_set")
    rows = []
    for group in groups:
        members = group_members(group)
        if len(members) < 2:
            continue
        drops = image_drops(rows_all, group)
        dP = float(drops.mean().max())
        samples = bootstrap_max_drop(drops.to_numpy(), grouping["bootstrap"], rng_for(seed, "drop", group))
        images_sd = float(samples.std(ddof=1)) if len(samples) > 1 else 0.0
        seeds_sd = seed_drop_sd(noise_floor, members)
        half = Z95 * float(np.hypot(images_sd, seeds_sd))
        weakest = float(gains[members].min())
        own = judged.loc[[(group, m) for m in members]]
        below = [m for m, outcome in zip(members, own.learning) if outcome == BELOW_INPUT]
        verdict = group_verdict(bool(Decision.of(grouping).feasible(dP, half, grouping["delta"])), below)
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
                learning(weakest, grouping["min_learned_gain"]) != LEARNED,
                float(own.gain.min()),
                ",".join(below),
                int(own.harmed.sum()),
            ]
        )
    return pd.DataFrame(rows, columns=EVIDENCE_COLUMNS)


# grouping_verified's columns but the two the search stage adds (distance and round)
EVIDENCE_COLUMNS = [c for c in tables.columns("grouping_verified") if c not in ("mean_distance", "round")]
