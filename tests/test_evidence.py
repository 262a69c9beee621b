"""Evidence behind a verdict (grids.grouping.evidence): models judged against their input, a
drop's interval, the conservative decision, the noise floor and partition stability, on hand-made
evaluation tables whose answers are known, and one real model that did not learn (lr 0)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from grids.config import DEFAULT_GROUPING
from grids.data import dead_leaves, prepare_clean_set, set_paths
from grids.degrade import degrade_dataset
from grids.evaluate import evaluate_model
from grids.grouping import evidence, noise_floor, stability
from grids.grouping.names import group_members
from grids.options import Decision
from grids.train import train

DELTA = 0.7
GROUPING = {**DEFAULT_GROUPING, "delta": DELTA, "bootstrap": 2000}


def table(models: dict[str, dict[str, list[float]]], inputs: dict[str, float]) -> pd.DataFrame:
    """An evaluation table: ``models[model][degradation]`` = PSNR per test image; the input's PSNR
    of each degradation is ``inputs[degradation]`` on every image."""
    rows = []
    for model, scores in models.items():
        for name, values in scores.items():
            for k, value in enumerate(values):
                rows.append([f"{model}.pth", model, "t", name, f"img{k}", value, 0.9, inputs[name]])
    frame = pd.DataFrame(
        rows, columns=["model", "trained_on", "test_set", "degradation", "image", "psnr", "ssim", "psnr_input"]
    )
    frame["gain"] = frame.psnr - frame.psnr_input
    return frame


def two_members(drops_b: list[float]) -> pd.DataFrame:
    """Group a+b: member a loses nothing, member b loses ``drops_b`` per image; both single-task
    models gain 5 dB over their input."""
    n = len(drops_b)
    return table(
        {
            "a": {"a": [30.0] * n},
            "b": {"b": [30.0] * n},
            "a+b": {"a": [30.0] * n, "b": [30.0 - d for d in drops_b]},
        },
        {"a": 25.0, "b": 25.0},
    )


def floor_with_drop_sd(sd: float) -> pd.DataFrame:
    return pd.DataFrame(
        [[evidence.POOLED, 6, np.nan, sd / np.sqrt(2), sd, np.nan, np.nan]],
        columns=["degradation", "n_seeds", "psnr_mean", "psnr_sd", "drop_sd", "gain_mean", "gain_min"],
    )


@pytest.mark.parametrize(("half_width", "feasible"), [(0.3, False), (0.05, True)])
def test_conservative_decision_needs_the_interval_below_delta(half_width, feasible):
    # 0.6 dB on every image (no image noise); the seed noise alone sets the interval's half width.
    evaluation = two_members([0.6] * 8)
    floor = floor_with_drop_sd(half_width / evidence.Z95)
    for decision, expected in (("conservative", feasible), ("point", True)):
        found = evidence.group_evidence(evaluation, "t", ["a+b"], {**GROUPING, "decision": decision}, floor, 0)
        row = found.iloc[0]
        assert row.dP == pytest.approx(0.6) and row.dP_sd_images == pytest.approx(0.0)
        assert row.dP_high == pytest.approx(0.6 + half_width)
        assert bool(row.feasible) is expected
    conservative = Decision("conservative")
    assert bool(conservative.feasible(0.6, 0.3, DELTA)) is False
    assert bool(conservative.feasible(0.6, 0.05, DELTA)) is True
    assert bool(Decision("point").feasible(0.6, 0.3, DELTA)) is True and Decision("point").column == "dP"
    assert conservative.column == "dP_high" and conservative.uses_interval
    with pytest.raises(ValueError, match="grouping.decision"):
        Decision("optimistic")


def test_image_noise_widens_the_interval_like_a_bootstrap_of_the_mean():
    rng = np.random.default_rng(0)
    drops = list(rng.normal(0.3, 0.4, size=40))
    row = evidence.group_evidence(two_members(drops), "t", ["a+b"], GROUPING, None, 0).iloc[0]
    # one member drifts, the other never drops: dP is b's mean and its sd that of a mean of 40
    assert row.dP == pytest.approx(np.mean(drops))
    assert row.dP_sd_images == pytest.approx(np.std(drops, ddof=1) / np.sqrt(40), rel=0.15)
    assert row.dP_sd_seeds == 0.0  # no noise floor given


def test_a_group_exactly_at_delta_flips_in_about_half_the_resamples():
    # b's per-image drops are symmetric around delta: the full-data verdict sits on the edge.
    evaluation = two_members([DELTA - 0.5, DELTA + 0.5] * 5)
    per_group, partitions = stability.partition_stability(
        evaluation, "t", ["a", "b"], ["a+b"], ["a+b"], {**GROUPING, "decision": "point"}, {}, seed=0
    )
    row = per_group.iloc[0]
    assert row.dP == pytest.approx(DELTA) and bool(row.feasible)
    assert 0.35 < row.flip_rate < 0.65
    same = partitions[partitions.is_search].fraction.sum()
    assert same == pytest.approx(row.feasible_rate)
    assert set(partitions.partition) == {"a+b", "a / b"}
    assert partitions.fraction.sum() == pytest.approx(1.0)


def test_a_clear_group_never_flips():
    evaluation = two_members([0.1, 0.2] * 5)
    per_group, partitions = stability.partition_stability(
        evaluation, "t", ["a", "b"], ["a+b"], ["a+b"], GROUPING, {"a+b": 0.1}, seed=0
    )
    assert per_group.flip_rate.iloc[0] == 0.0 and partitions.partition.tolist() == ["a+b"]


def test_fewest_groups_matches_brute_force():
    names = ["a", "b", "c", "d", "e"]
    rng = np.random.default_rng(1)
    from itertools import combinations

    groups = ["+".join(c) for size in (2, 3) for c in combinations(names, size)]
    for trial in range(20):
        allowed = [g for g in groups if rng.random() < 0.3]
        risk = {g: float(rng.random()) for g in allowed}
        found = stability.fewest_groups(names, allowed, risk)

        def covers(choice):
            members = [m for g in choice for m in group_members(g)]
            return sorted(members) == names

        best = None
        for k in range(1, 6):
            for choice in combinations(allowed + names, k):
                if covers(choice):
                    worst = max((risk.get(g, -np.inf) for g in choice), default=-np.inf)
                    if best is None or worst < best[0]:
                        best = (worst, choice)
            if best is not None:
                break
        assert len(found) == len(best[1]), trial
        assert max((risk.get(g, -np.inf) for g in found), default=-np.inf) == best[0]


def test_noise_floor_spread_and_pooled_row():
    one = {"x": [20.0, 20.2], "y": [30.0, 30.0]}
    seeds = [
        table({"x": {"x": one["x"]}}, {"x": 18.0}),
        table({"x": {"x": [v + 0.3 for v in one["x"]]}}, {"x": 18.0}),
        table({"x": {"x": [v - 0.3 for v in one["x"]]}}, {"x": 18.0}),
    ]
    found = noise_floor.noise_floor("t", {"x": seeds})
    x = found[found.degradation == "x"].iloc[0]
    assert x.n_seeds == 3 and x.psnr_sd == pytest.approx(0.3)
    assert x.drop_sd == pytest.approx(0.3 * np.sqrt(2))
    pooled = found[found.degradation == evidence.POOLED].iloc[0]
    assert pooled.psnr_sd == pytest.approx(0.3)
    assert evidence.seed_drop_sd(found, ["x"]) == pytest.approx(0.3 * np.sqrt(2))
    assert evidence.seed_drop_sd(None, ["x"]) == 0.0


def test_each_group_takes_its_noisiest_members_seed_sd_by_hand():
    """Noise floor: a moves 0.1 dB between seeds, b 0.5 dB, c was not replicated (it takes the
    pooled row). a+b's interval is dP +- 1.96 * sqrt(2) * 0.5 (b, the noisier); a+c's takes the
    pooled sqrt((0.1^2 + 0.5^2) / 2), which is larger than a's own."""
    floor = noise_floor.noise_floor(
        "t",
        {
            "a": [table({"a": {"a": [30.0, 30.0]}}, {"a": 25.0}), table({"a": {"a": [30.1, 30.1]}}, {"a": 25.0})],
            "b": [table({"b": {"b": [30.0, 30.0]}}, {"b": 25.0}), table({"b": {"b": [30.5, 30.5]}}, {"b": 25.0})],
        },
    )
    sd_a, sd_b = 0.1 / np.sqrt(2), 0.5 / np.sqrt(2)  # sample sd of two values d apart: d / sqrt(2)
    pooled = np.sqrt((sd_a**2 + sd_b**2) / 2)
    n = 6
    evaluation = table(
        {
            "a": {"a": [30.0] * n},
            "b": {"b": [30.0] * n},
            "c": {"c": [30.0] * n},
            "a+b": {"a": [29.9] * n, "b": [29.6] * n},
            "a+c": {"a": [29.8] * n, "c": [29.9] * n},
        },
        {"a": 25.0, "b": 25.0, "c": 25.0},
    )
    found = evidence.group_evidence(evaluation, "t", ["a+b", "a+c"], GROUPING, floor, 0).set_index("group")
    assert found.dP_sd_images.tolist() == pytest.approx([0.0, 0.0])  # the same drop on every image
    assert found.dP_sd_seeds["a+b"] == pytest.approx(np.sqrt(2) * sd_b)
    assert found.dP_sd_seeds["a+c"] == pytest.approx(np.sqrt(2) * pooled)
    assert found.dP_high["a+b"] == pytest.approx(0.4 + evidence.Z95 * np.sqrt(2) * sd_b)
    assert found.dP_low["a+c"] == pytest.approx(0.2 - evidence.Z95 * np.sqrt(2) * pooled)


def test_a_model_that_did_not_learn_is_named_and_its_verdicts_marked(tmp_path, capsys):
    """A real training with lr 0 restores nothing; its degradation is reported and every group
    containing it is uninformative."""
    torch.set_num_threads(1)
    recipe = {
        "arch": "srresnet",
        "arch_kwargs": {"num_feat": 8, "num_block": 1},
        "iterations": 3,
        "batch_size": 2,
        "crop": 32,
        "lr": 0.0,
        "weight_decay": 0.0,
        "warmup": 1,
        "min_lr_ratio": 0.01,
        "checkpoint_every": 10,
        "compile": False,
    }
    entries = {"gaussian_noise": {"sigma": [30.0, 30.0]}}
    images = [dead_leaves(48, np.random.default_rng(i)) for i in range(2)]
    train("gaussian_noise", images, entries, recipe, 0, tmp_path / "m.pth", tmp_path / "r.pth", "cpu")
    test = tmp_path / "test"
    clean = prepare_clean_set(
        {"photos": [], "dead_leaves": {"count": 2, "size": 48}, "folder": None, "min_side": 32},
        0,
        *set_paths(test / "clean"),
        dataset="test",
    )
    degraded = test / "degraded" / "gaussian_noise" / "manifest.parquet"
    degrade_dataset(clean, "gaussian_noise", entries["gaussian_noise"], 0, degraded, degraded.parent / "images", "t")
    real = evaluate_model(
        tmp_path / "m.pth",
        {"t": (test / "clean" / "manifest.parquet", {"gaussian_noise": degraded})},
        ["gaussian_noise"],
    )
    assert real.gain.mean() < 0.5
    # A second degradation whose model learned, and a group of both (hand-made rows).
    learned = table({"jpeg": {"jpeg": [30.0, 30.0]}, "gaussian_noise+jpeg": {"jpeg": [29.9, 29.9]}}, {"jpeg": 27.0})
    group_on_noise = real.assign(trained_on="gaussian_noise+jpeg")
    ids = dict(zip(["img0", "img1"], real.image))
    evaluation = pd.concat([real, group_on_noise, learned.assign(image=learned.image.map(ids), test_set="t")])
    gains = evidence.single_task_gains(evaluation, ["gaussian_noise", "jpeg"])
    assert evidence.not_learned(gains, 0.5) == ["gaussian_noise"]
    evidence.warn_not_learned(gains, 0.5)
    assert "gaussian_noise gains" in capsys.readouterr().err
    row = evidence.group_evidence(evaluation, "t", ["gaussian_noise+jpeg"], GROUPING, None, 0).iloc[0]
    assert bool(row.uninformative) and row.weakest_gain == pytest.approx(gains["gaussian_noise"])


def test_another_partition_of_the_same_size_is_a_tie_not_a_flip():
    """Two feasible pairs share a member: the search took one, the other has the smaller drop.
    While the search's groups stay feasible and nothing smaller exists, its answer stands."""
    n = 6
    evaluation = table(
        {
            "a": {"a": [30.0] * n},
            "b": {"b": [30.0] * n},
            "c": {"c": [30.0] * n},
            "a+b": {"a": [29.8] * n, "b": [29.8, 29.7] * 3},
            "b+c": {"b": [29.9] * n, "c": [29.9, 29.95] * 3},
        },
        {"a": 25.0, "b": 25.0, "c": 25.0},
    )
    per_group, partitions = stability.partition_stability(
        evaluation, "t", ["a", "b", "c"], ["a+b", "b+c"], ["a+b", "c"], GROUPING, {}, seed=0
    )
    assert per_group.feasible_rate.tolist() == [1.0, 1.0]
    assert partitions.partition.tolist() == ["a+b / c"] and partitions.is_search.all()


def test_a_member_below_its_input_is_a_failed_training_not_a_clean_infeasible(capsys):
    """Hand-made: a+b loses 0.5 dB on b (feasible by its drop) but ends 0.2 dB below b's input;
    a+c loses 6 dB on c (infeasible by its drop) and ends 1 dB below c's input. Both are failed
    trainings, marked apart from a clean infeasible verdict, and named on stderr."""
    n = 4
    evaluation = table(
        {
            "a": {"a": [30.0] * n},
            "b": {"b": [25.3] * n},  # b's single-task model gains 0.3 dB: it did not learn
            "c": {"c": [30.0] * n},
            "a+b": {"a": [30.0] * n, "b": [24.8] * n},
            "a+c": {"a": [30.0] * n, "c": [24.0] * n},
            "b+c": {"b": [25.3] * n, "c": [28.0] * n},  # a clean infeasible: a 2 dB drop, both above their input
        },
        {"a": 25.0, "b": 25.0, "c": 25.0},
    )
    grouping = {**GROUPING, "decision": "point"}
    found = evidence.group_evidence(evaluation, "t", ["a+b", "a+c", "b+c"], grouping, None, 0).set_index("group")
    assert found.verdict.to_dict() == {"a+b": "failed_training", "a+c": "failed_training", "b+c": "infeasible"}
    assert not found.feasible.any()
    assert found.below_input.to_dict() == {"a+b": "b", "a+c": "c", "b+c": ""}
    assert found.weakest_group_gain.to_dict() == pytest.approx({"a+b": -0.2, "a+c": -1.0, "b+c": 0.3})
    assert found.harmed_images.to_dict() == {"a+b": 0, "a+c": n, "b+c": 0}  # per image: worse by > 0.5 dB
    assert found.uninformative.to_dict() == {"a+b": True, "a+c": False, "b+c": True}
    assert evidence.group_verdict(True, []) == "feasible" and evidence.group_verdict(False, []) == "infeasible"
    assert evidence.group_verdict(True, ["b"]) == "failed_training"
    evidence.warn_failed_trainings(found.reset_index())
    err = capsys.readouterr().err
    assert "the mixed training of a+b failed: its model ends below the degraded input on b" in err
    assert "a+c failed" in err and "b+c" not in err
    # partition stability: a failed training stays infeasible in every resample
    per_group, _ = stability.partition_stability(
        evaluation, "t", ["a", "b", "c"], ["a+b"], ["a", "b", "c"], grouping, {}, 0, frozenset({"a+b"})
    )
    assert per_group.feasible_rate.tolist() == [0.0] and not per_group.feasible.any()


def test_a_group_that_flips_between_training_seeds_is_reported_unstable():
    """Hand-made seed tables. Seed 0: a+b loses 0.2 dB (feasible), c+d 2 dB (infeasible). Seed 1
    (a, b and a+b retrained): a+b loses 1.5 dB, infeasible; seed 2: 0.3 dB again. So a+b flips
    (feasible at 2 of 3 seeds) and the partition a+b / c / d holds at 2 of 3 seeds, a / b / c / d at
    the other; c+d was not retrained and keeps its verdict."""
    n, grouping = 6, {**GROUPING, "decision": "point"}
    inputs = {"a": 25.0, "b": 25.0, "c": 25.0, "d": 25.0}
    evaluation = table(
        {
            "a": {"a": [30.0] * n},
            "b": {"b": [30.0] * n},
            "c": {"c": [30.0] * n},
            "d": {"d": [30.0] * n},
            "a+b": {"a": [29.8] * n, "b": [29.9] * n},
            "c+d": {"c": [28.0] * n, "d": [30.0] * n},
        },
        inputs,
    )
    names, partition = ["a", "b", "c", "d"], ["a+b", "c", "d"]
    verified = evidence.group_evidence(evaluation, "t", ["a+b", "c+d"], grouping, None, 0)
    replicates = {
        ("a", 1): table({"a": {"a": [30.5] * n}}, inputs),
        ("b", 1): table({"b": {"b": [30.0] * n}}, inputs),
        ("a+b", 1): table({"a+b": {"a": [29.0] * n, "b": [29.9] * n}}, inputs),  # a: 30.5 - 29.0
        ("a+b", 2): table({"a+b": {"a": [29.7] * n, "b": [29.9] * n}}, inputs),  # a and b not replicated at 2
    }
    context = {"grouping": grouping, "noise_floor": None, "seed": 0, "training_seed": 5}
    by_seed, partitions = stability.seed_stability(evaluation, names, verified, partition, context, replicates)
    assert by_seed.group.tolist() == ["a+b"] * 3 and by_seed.training_seed.tolist() == [5, 6, 7]
    assert by_seed.dP.tolist() == pytest.approx([0.2, 1.5, 0.3])
    assert by_seed.feasible.tolist() == [True, False, True]
    assert partitions.resampled.unique().tolist() == ["training_seeds"]
    held = dict(zip(partitions.partition, partitions.resamples))
    assert held == {"a+b / c / d": 2, "a / b / c / d": 1}
    assert partitions.set_index("partition").is_search.to_dict() == {"a+b / c / d": True, "a / b / c / d": False}
    per_group, _ = stability.partition_stability(evaluation, "t", names, ["a+b", "c+d"], partition, grouping, {}, 0)
    per_group = stability.with_seed_columns(per_group, by_seed).set_index("group")
    assert per_group.training_seeds.to_dict() == {"a+b": 3, "c+d": 1}
    assert per_group.seed_feasible_rate["a+b"] == pytest.approx(2 / 3) and np.isnan(per_group.seed_feasible_rate["c+d"])
    assert per_group.seed_flip.to_dict() == {"a+b": True, "c+d": False}


def test_the_groups_retrained_are_the_final_ones_and_those_near_delta():
    verified = pd.DataFrame(
        {
            "group": ["a+b", "a+c", "b+c", "c+d", "a+b+c"],
            "size": [2, 2, 2, 2, 3],
            "dP_low": [0.0, 0.9, 1.5, 0.1, 2.5],
            "dP_high": [0.2, 1.3, 2.0, 0.5, 3.0],
        }
    )
    # delta 0.7: a+b's interval ends 0.5 below it, a+c's starts 0.2 above, c+d's ends 0.2 below
    assert stability.groups_to_retrain(verified, ["a+b", "c", "d"], 0.7, 0.3) == ["a+b", "a+c", "c+d"]
    assert stability.groups_to_retrain(verified, ["a+b", "c", "d"], 0.7, 0.0) == ["a+b"]
    assert stability.groups_to_retrain(verified, ["a+b+c", "d"], 0.7, 0.9) == ["a+b", "a+b+c", "a+c", "b+c", "c+d"]
    assert stability.groups_to_retrain(verified, ["a+b", "c", "d"], 0.7, None) == []


def test_a_retrained_groups_members_are_retrained_at_its_seeds_too():
    models = stability.replicate_models(["a+b", "c+d"], ["a", "e"], 2)
    expected = ["a", "e", "b", "c", "d", "a+b", "c+d"]
    assert models == [(m, k) for m in expected for k in (1, 2)]
    assert stability.replicate_models([], ["a"], 1) == [("a", 1)]
