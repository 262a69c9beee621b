"""The grouping search as workflow rounds (grids.grouping.rounds) and Table 1 (grids.report), on synthetic
evaluation tables: rounds replayed through Parquet give exactly what grids.grouping.search gives."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from grids import io
from grids.config import DEFAULT_GROUPING
from grids.grouping import search
from grids.grouping.export import export_models
from grids.grouping.names import group_members, group_name
from grids.grouping.rounds import (
    SearchInputs,
    candidates_table,
    finish,
    group_drops,
    main,
    member_drops,
    plan_round,
)
from grids.report import mixall_scale_note, table1, write_table1

NAMES = ["blur", "jpeg", "noise", "sr", "rain"]
BASE = {"blur": 25.0, "jpeg": 30.0, "noise": 28.0, "sr": 26.0, "rain": 22.0}


def points_matrix(names, seed=3):
    """A long similarity table (with the clean set, as the workflow writes it)."""
    rng = np.random.default_rng(seed)
    sets = ["clean", *names]
    pts = rng.random((len(sets), 2)) * 4
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    rows = [[a, b, 0.0, d[i, j], d[i, j]] for i, a in enumerate(sets) for j, b in enumerate(sets)]
    return pd.DataFrame(rows, columns=["deg_a", "deg_b", "kl", "distance", "distance_sym"]), d[1:, 1:]


def oracle(distances, names):
    """Drop of member d in group C: 0.3 x (largest distance from d to another member)."""
    index = {n: i for i, n in enumerate(names)}

    def drop(group, member):
        others = [m for m in group if m != member]
        return 0.3 * max((distances[index[member], index[m]] for m in others), default=0.0)

    return drop


def eval_rows(group: str, drop, test_sets=("heldout",)) -> pd.DataFrame:
    """What rule evaluate writes for the model of ``group``: every degradation, two images."""
    members = group_members(group)
    rows = []
    for test_set in test_sets:
        for name in NAMES:
            for image, jitter in (("a", 0.1), ("b", -0.1)):
                psnr = BASE[name] + jitter - (drop(members, name) if name in members else 1.0)
                identity = BASE[name] - 3.0 + jitter  # the degraded input: 3 dB below the single-task model
                rows.append([f"results/models/{group}/model.pth", group, test_set, name, image, psnr, 0.9, identity])
    frame = pd.DataFrame(
        rows, columns=["model", "trained_on", "test_set", "degradation", "image", "psnr", "ssim", "psnr_input"]
    )
    frame["gain"] = frame.psnr - frame.psnr_input
    return frame


def test_member_drops_and_group_drops():
    drop = lambda group, member: {"jpeg": 0.4, "sr": 0.9}.get(member, 0.0) if len(group) > 1 else 0.0  # noqa: E731
    evaluation = pd.concat([eval_rows(g, drop) for g in [*NAMES, "jpeg+sr", "blur+noise+sr"]])
    drops = member_drops(evaluation, "heldout", ["jpeg+sr"], 0.5)
    assert drops.degradation.tolist() == ["jpeg", "sr"]
    assert drops["drop"].tolist() == pytest.approx([0.4, 0.9])
    assert drops.psnr_single.tolist() == pytest.approx([30.0, 26.0])
    assert drops.psnr_input.tolist() == pytest.approx([27.0, 23.0])
    assert drops.gain_single.tolist() == pytest.approx([3.0, 3.0])
    assert drops.gain_group.tolist() == pytest.approx([2.6, 2.1])
    assert drops.harmed_group.tolist() == [0, 0] and drops.learning_group.tolist() == ["learned", "learned"]
    known = group_drops(evaluation, "heldout", sorted(set(evaluation.trained_on)), DEFAULT_GROUPING)
    assert known == pytest.approx({frozenset({"jpeg", "sr"}): 0.9, frozenset({"blur", "noise", "sr"}): 0.9})


def test_missing_evaluation_is_named():
    evaluation = eval_rows("jpeg", lambda g, m: 0.0)
    with pytest.raises(ValueError, match=r"no evaluation of model 'jpeg\+sr' on 'jpeg'"):
        member_drops(evaluation, "heldout", ["jpeg+sr"], 0.5)
    with pytest.raises(ValueError, match="no evaluation rows for test set 'other'"):
        member_drops(evaluation, "other", ["jpeg"], 0.5)


def run_rounds(matrix, distances, grouping):
    """Replay the workflow: round r plans from the evaluation tables of rounds < r."""
    drop = oracle(distances, NAMES)
    evals = [eval_rows(name, drop) for name in NAMES]
    tables = []
    for r in range(200):
        table = plan_round(
            r,
            SearchInputs(matrix=matrix, names=NAMES, evaluation=pd.concat(evals, ignore_index=True), grouping=grouping),
        )
        tables.append(table)
        if (table.action == "final").any():
            return tables, pd.concat(evals, ignore_index=True)
        assert (table.action == "verify").all() and table["round"].eq(r).all()
        evals += [eval_rows(g, drop) for g in table.group]
    raise AssertionError("the search did not finish in 200 rounds")


@pytest.mark.parametrize("strategy", ["lazy", "paper"])
@pytest.mark.parametrize("delta", [0.2, 0.5, 1.0])
def test_rounds_match_the_in_memory_search(strategy, delta):
    matrix, distances = points_matrix(NAMES)
    grouping = {**DEFAULT_GROUPING, "delta": delta, "strategy": strategy}
    tables, evaluation = run_rounds(matrix, distances, grouping)
    drop = oracle(distances, NAMES)
    expected = search(NAMES, distances, delta, lambda g: max(drop(g, m) for m in g), strategy=strategy)
    final = tables[-1]
    assert sorted(final.group) == sorted(group_name(g) for g in expected.partition)
    asked = [g for t in tables for g in t.group[t.action == "verify"]]
    assert len(asked) == len(set(asked)) == expected.n_evaluations  # never re-verified
    assert len(tables) - 1 == expected.rounds

    result = finish(tables, SearchInputs(matrix=matrix, names=NAMES, evaluation=evaluation, grouping=grouping))
    verified = result["verified"]
    assert verified.group.tolist() == asked
    assert verified["round"].tolist() == [r for r, t in enumerate(tables) for _ in t.group[t.action == "verify"]]
    for row in verified.itertuples():
        assert row.dP == pytest.approx(max(drop(group_members(row.group), m) for m in group_members(row.group)))
        assert row.feasible == (row.dP <= delta)
        assert row.size == len(group_members(row.group))
    groups = result["groups"]
    assert groups.degradation.tolist() == NAMES  # config order, each exactly once
    feasible = set(verified.group[verified.feasible])
    assert all(len(group_members(g)) == 1 or g in feasible for g in groups.group)


def test_probes_per_round_batches_requests():
    matrix, distances = points_matrix(NAMES)
    one, _ = run_rounds(matrix, distances, {**DEFAULT_GROUPING, "delta": 0.5})
    three, _ = run_rounds(matrix, distances, {**DEFAULT_GROUPING, "delta": 0.5, "probes_per_round": 3})
    assert max(len(t) for t in three[:-1]) <= 3
    assert len(three) <= len(one)


def test_candidates_table_ranks_every_subset():
    matrix, distances = points_matrix(NAMES)
    table = candidates_table(matrix, NAMES)
    assert len(table) == sum(math.comb(5, k) for k in range(2, 6))
    pairs = table[table["size"] == 2]
    assert pairs["rank"].tolist() == list(range(10))
    assert pairs.mean_distance.is_monotonic_increasing
    top = pairs.iloc[0].group.split("+")
    i, j = NAMES.index(top[0]), NAMES.index(top[1])
    assert pairs.mean_distance.iloc[0] == pytest.approx(distances[i, j])
    with pytest.raises(ValueError, match="haze"):
        candidates_table(matrix, [*NAMES, "haze"])


def _full_checkpoint(path, group: str) -> dict:
    """A training checkpoint as grids.train writes it (weights, optimizer, RNG states, metadata)."""
    import json

    import torch

    from grids.archs import SRResNet

    torch.manual_seed(len(group))
    model = SRResNet(num_feat=4, num_block=1)
    optimiser = torch.optim.AdamW(model.parameters())
    model(torch.rand(1, 3, 8, 8)).mean().backward()
    optimiser.step()
    state = {
        "params": model.state_dict(),
        "optimizer": optimiser.state_dict(),
        "step": 3,
        "numpy_rng": "{}",
        "torch_rng": torch.zeros(2, dtype=torch.uint8),
        "arch": "srresnet",
        "arch_kwargs": json.dumps({"num_feat": 4, "num_block": 1}),
        "group": group,
        "recipe": '{"lr": 0.1}',
        "degradations": "{}",
        "grids_version": "test",
    }
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_export_models_replaces_the_folder_with_slim_models_and_cards(tmp_path):
    import hashlib
    import json

    import torch

    from grids.cards import check_front_matter, read_front_matter
    from grids.checkpoint import load_model

    full = {
        g: _full_checkpoint(tmp_path / "models" / g / "model.pth", g) for g in ("jpeg+sr", "blur", "noise+rain", "old")
    }
    models = {g: tmp_path / "models" / g / "model.pth" for g in full}
    out = tmp_path / "final" / "models"
    # the group's model loses 0.25 dB on jpeg and 3.4 dB on sr: sr ends 0.4 dB below its input
    drop = lambda group, m: {"jpeg": 0.25, "sr": 3.4}.get(m, 0.25) if len(group) > 1 else 0.0  # noqa: E731
    models_evaluated = ("blur", "jpeg", "sr", "jpeg+sr", "noise", "rain", "noise+rain")
    evaluation = pd.concat([eval_rows(g, drop) for g in models_evaluated])
    identity = eval_rows("input", lambda group, m: 0.0)
    identity = identity.assign(psnr=identity.psnr_input, ssim=0.7, gain=0.0)  # the input scored as a model
    evaluation = pd.concat([evaluation, identity])
    grouping = {**DEFAULT_GROUPING, "delta": 0.5}
    stale = pd.DataFrame({"degradation": ["noise", "rain"], "group": ["noise+rain"] * 2})
    export_models(stale, models, out, evaluation, grouping)
    groups = pd.DataFrame({"degradation": ["blur", "jpeg", "sr"], "group": ["blur", "jpeg+sr", "jpeg+sr"]})
    training = {"photos": ["astronaut", "sunset", "bridge"], "dead_leaves": {"count": 8, "size": 256}}
    export_models(groups, models, out, evaluation, grouping, "abc", training)
    assert sorted(p.name for p in out.iterdir()) == [
        "blur.md",
        "blur.pth",
        "blur.safetensors",
        "jpeg+sr.md",
        "jpeg+sr.pth",
        "jpeg+sr.safetensors",
    ]  # no stale model
    slim = torch.load(out / "jpeg+sr.pth", weights_only=True)
    assert "optimizer" not in slim and "torch_rng" not in slim and "numpy_rng" not in slim
    assert all(torch.equal(slim["params"][k], v) for k, v in full["jpeg+sr"]["params"].items())
    assert slim["members"] == ["jpeg", "sr"] and slim["delta"] == 0.5 and slim["config_hash"] == "abc"
    assert json.loads(slim["drops"]) == pytest.approx({"jpeg": 0.25, "sr": 3.4})
    assert json.loads(slim["gains"]) == pytest.approx({"jpeg": 2.75, "sr": -0.4})
    assert (out / "jpeg+sr.pth").stat().st_size < (tmp_path / "models" / "jpeg+sr" / "model.pth").stat().st_size / 2
    card = (out / "jpeg+sr.md").read_text()
    for name in ("jpeg+sr.pth", "jpeg+sr.safetensors"):
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() in card
    assert "| jpeg |" in card and "+0.250" in card and "delta = 0.5 dB" in card
    # the body: each member judged against its input, limitations, how to load, citation
    assert "| sr | 23.000 | 26.000 | 22.600 | -0.400 | 0 of 2 | +3.400 | below_input |" in card
    assert "**Did not learn `sr`: it makes it worse** (-0.40 dB" in card
    for heading in ("## Intended use", "## Limitations", "## How to load", "## Citation"):
        assert heading in card
    assert 'load_file("jpeg+sr.safetensors")' in card and "@inproceedings{cao2024grids" in card
    assert "Every member gains at least" in (out / "blur.md").read_text()
    # the front matter: the hub's fields, checked against the schema; PSNR/SSIM beside the input's
    front = read_front_matter(card)
    check_front_matter(front)
    assert front["license"] == "mit" and front["pipeline_tag"] == "image-to-image"
    assert front["datasets"] == [
        "scikit-image-astronaut",
        "grids-photos-sunset",
        "grids-photos-bridge",
        "dead-leaves-synthetic",
    ]
    assert {"image-to-image", "image-restoration", "jpeg", "sr"} <= set(front["tags"])
    assert front["metrics"] == ["psnr", "ssim"]
    [index] = front["model-index"]
    assert index["name"] == "grids-jpeg-sr"
    results = {r["dataset"]["config"]: r for r in index["results"]}
    assert sorted(results) == ["jpeg", "sr"]
    assert results["sr"]["dataset"] == {"type": "grids-heldout", "name": "heldout: sr", "config": "sr", "split": "test"}
    metrics = {(m["type"], m.get("config")): m["value"] for m in results["sr"]["metrics"]}
    assert metrics == pytest.approx(
        {("psnr", None): 22.6, ("ssim", None): 0.9, ("psnr", "input"): 23.0, ("ssim", "input"): 0.7}
    )
    # the safetensors export: the same weights under the same keys, the same model, the same outputs
    pth, pth_state = load_model(out / "jpeg+sr.pth")
    safe, safe_state = load_model(out / "jpeg+sr.safetensors")
    assert sorted(safe_state["params"]) == sorted(slim["params"])  # the same BasicSR key names
    assert safe_state["members"] == ["jpeg", "sr"] and safe_state["delta"] == 0.5
    assert {k: safe_state[k] for k in ("arch", "arch_kwargs", "drops", "config_hash")} == {
        k: pth_state[k] for k in ("arch", "arch_kwargs", "drops", "config_hash")
    }
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(pth(x), safe(x))
    with pytest.raises(FileNotFoundError, match="'missing'"):
        export_models(pd.DataFrame({"degradation": ["x"], "group": ["missing"]}), models, out, evaluation, grouping)
    assert sorted(p.name for p in out.glob("*.pth")) == ["blur.pth", "jpeg+sr.pth"]  # a failure leaves it whole


def test_table1_rows_and_differences(tmp_path):
    drop = lambda group, member: 0.3 if len(group) > 1 else 0.0  # noqa: E731
    mix_all = group_name(NAMES)
    groups = pd.DataFrame({"degradation": NAMES, "group": ["blur+sr", "jpeg", "noise+rain", "blur+sr", "noise+rain"]})
    evaluation = pd.concat([eval_rows(g, drop, ("div2k", "urban")) for g in [*NAMES, mix_all, "blur+sr", "noise+rain"]])
    baseline = eval_rows(mix_all, lambda g, m: 2.0, ("div2k", "urban"))
    table = table1(groups, evaluation, {"realesrnet": baseline})
    assert table.test_set.tolist() == ["div2k"] * 6 + ["urban"] * 6
    assert table.degradation.tolist()[:6] == [*NAMES, "average"]
    rows = table.set_index(["test_set", "degradation"])
    assert rows.loc[("div2k", "blur"), "psnr_upper"] == pytest.approx(25.0)
    assert rows.loc[("div2k", "blur"), "psnr_grids"] == pytest.approx(24.7)
    assert rows.loc[("div2k", "jpeg"), "psnr_grids"] == pytest.approx(30.0)  # a singleton is its single-task model
    assert rows.loc[("div2k", "jpeg"), "psnr_realesrnet"] == pytest.approx(28.0)
    assert rows.loc[("div2k", "blur"), "vs_upper"] == pytest.approx(-0.3)
    assert rows.loc[("div2k", "jpeg"), "vs_mixall"] == pytest.approx(0.3)
    assert rows.loc[("urban", "average"), "vs_upper"] == pytest.approx(-0.3 * 4 / 5)

    io.write_parquet(groups, tmp_path / "groups.parquet")
    files = []
    for g, frame in evaluation.groupby("trained_on"):
        files.append(str(tmp_path / f"{g}.parquet"))
        io.write_parquet(frame, files[-1])
    io.write_parquet(baseline, tmp_path / "baseline.parquet")
    out = tmp_path / "out"
    write_table1(
        str(tmp_path / "groups.parquet"),
        files,
        {"realesrnet": str(tmp_path / "baseline.parquet")},
        out / "table1.parquet",
        out / "table1.md",
        out / "table1.png",
    )
    markdown = (tmp_path / "out" / "table1.md").read_text()
    assert "## div2k" in markdown and "## urban" in markdown and "{blur, sr}" in markdown
    assert (tmp_path / "out" / "table1.png").stat().st_size > 5000
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "table1.parquet"), table)


def search_inputs(tmp_path, evals: list[str]) -> list[str]:
    """The options that ``round`` and ``finish`` both read: the similarity table (at
    tmp_path/matrix.parquet), the degradations, the evaluation tables, the grouping settings."""
    matrix = str(tmp_path / "matrix.parquet")
    return ["--matrix", matrix, "--degradations", *NAMES, "--eval", *evals, "--grouping", '{"delta": 0.5}']


def test_round_cli_writes_the_request(tmp_path, capsys):
    matrix, distances = points_matrix(NAMES)
    io.write_parquet(matrix, tmp_path / "matrix.parquet")
    drop = oracle(distances, NAMES)
    files = []
    for name in NAMES:
        files.append(str(tmp_path / f"{name}.parquet"))
        io.write_parquet(eval_rows(name, drop), files[-1])
    out = tmp_path / "rounds" / "0.parquet"
    code = main(
        [
            "round",
            "--round",
            "0",
            *search_inputs(tmp_path, files),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == ["round", "action", "group", "partition"]
    assert (table.action == "verify").all() and len(table) == 1
    assert "verify" in capsys.readouterr().out


def test_finish_cli_writes_every_table_and_the_plot(tmp_path):
    matrix, distances = points_matrix(NAMES)
    grouping = {**DEFAULT_GROUPING, "delta": 0.5}
    tables, evaluation = run_rounds(matrix, distances, grouping)
    io.write_parquet(matrix, tmp_path / "matrix.parquet")
    rounds = []
    for table in tables:
        rounds.append(str(tmp_path / "rounds" / f"{table['round'].iloc[0]}.parquet"))
        io.write_parquet(table, rounds[-1])
    evals = []
    for group, frame in evaluation.groupby("trained_on"):
        evals.append(str(tmp_path / "eval" / f"{group}.parquet"))
        io.write_parquet(frame, evals[-1])
    code = main(
        [
            "finish",
            "--rounds",
            *rounds,
            *search_inputs(tmp_path, evals),
            *[
                word
                for name in ("verified", "drops", "partitions")
                for word in (f"--{name.replace('_', '-')}", str(tmp_path / "results" / "grouping" / f"{name}.parquet"))
            ],
            "--plot",
            str(tmp_path / "results" / "grouping" / "search.png"),
            "--groups",
            str(tmp_path / "results" / "final" / "groups.parquet"),
        ]
    )
    assert code == 0
    expected = finish(tables, SearchInputs(matrix=matrix, names=NAMES, evaluation=evaluation, grouping=grouping))
    for name in ("verified", "drops", "partitions"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "results" / "grouping" / f"{name}.parquet"), expected[name]
        )
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "results" / "final" / "groups.parquet"), expected["groups"]
    )
    assert (tmp_path / "results" / "grouping" / "search.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="not finished"):
        finish(tables[:-1], SearchInputs(matrix=matrix, names=NAMES, evaluation=evaluation, grouping=grouping))


def test_a_failed_training_is_split_by_the_search_and_named(tmp_path, capsys):
    """a+b's drop is within delta, but its model ends 0.2 dB below the input on b: a failed mixed
    training. The search treats it as infeasible (a and b stay apart), and says why: in the
    round's and the result's logs, in verified.parquet's verdict and in Table 1's notes."""
    names = ["a", "b"]
    matrix, _ = points_matrix(names)
    grouping = {**DEFAULT_GROUPING, "delta": 0.7, "decision": "point"}

    def rows(model: str, scores: dict[str, float]) -> pd.DataFrame:  # psnr per image, inputs at 25 dB
        frame = pd.DataFrame(
            [[f"{model}.pth", model, "heldout", d, f"i{k}", v, 0.9, 25.0] for d, v in scores.items() for k in range(2)],
            columns=["model", "trained_on", "test_set", "degradation", "image", "psnr", "ssim", "psnr_input"],
        )
        return frame.assign(gain=frame.psnr - frame.psnr_input)

    singles = [rows("a", {"a": 25.3}), rows("b", {"b": 25.3})]  # each gains 0.3 dB
    first = plan_round(0, SearchInputs(matrix=matrix, names=names, evaluation=pd.concat(singles), grouping=grouping))
    assert first.group.tolist() == ["a+b"] and (first.action == "verify").all()
    evaluation = pd.concat([*singles, rows("a+b", {"a": 25.3, "b": 24.8})])  # drop 0.5 dB on b, gain -0.2
    assert group_drops(evaluation, "heldout", ["a+b"], grouping) == {frozenset(names): math.inf}
    final = plan_round(1, SearchInputs(matrix=matrix, names=names, evaluation=evaluation, grouping=grouping))
    assert sorted(final.group) == ["a", "b"] and (final.action == "final").all()
    assert "the mixed training of a+b failed" in capsys.readouterr().err
    result = finish([first, final], SearchInputs(matrix=matrix, names=names, evaluation=evaluation, grouping=grouping))
    [row] = result["verified"].itertuples()
    assert row.dP == pytest.approx(0.5) and row.verdict == "failed_training" and not row.feasible
    assert row.below_input == "b" and row.weakest_group_gain == pytest.approx(-0.2) and row.harmed_images == 0
    assert result["drops"].learning_group.tolist() == ["did_not_learn", "below_input"]

    io.write_parquet(result["groups"], tmp_path / "groups.parquet")
    io.write_parquet(evaluation, tmp_path / "eval.parquet")
    io.write_parquet(result["verified"], tmp_path / "verified.parquet")
    out = tmp_path / "out"
    table = write_table1(
        str(tmp_path / "groups.parquet"),
        [str(tmp_path / "eval.parquet")],
        {},
        out / "table1.parquet",
        out / "table1.md",
        out / "table1.png",
        verified_file=str(tmp_path / "verified.parquet"),
    )
    notes = (out / "table1.md").read_text().split("## Notes")[1]
    assert "**Failed mixed trainings**: a+b (below its input on b; worst member gain -0.20 dB" in notes
    assert "the search treated each as infeasible and split its members" in notes.lower()
    assert "b: no single-task model learns it at this scale either" in notes  # b's own model gained 0.3 dB
    assert "The mix-all baseline on heldout: below its input (a failed mixed training), mean gain +0.05 dB" in notes
    assert "the mixed training of a+b failed" in capsys.readouterr().err
    average = table[table.degradation == "average"].iloc[0]
    assert average.learning_mixall == "below_input" and average.learning_upper == "did_not_learn"


def test_table1_counts_the_images_each_model_makes_worse():
    """Per image, not only per mean: a model whose mean gain is positive but that ruins one of its
    test images has that image counted next to its gain."""
    names = ["a", "b"]
    frames = []
    for model, psnr in {"a": [30.0, 30.0, 24.0], "b": [28.0] * 3, "a+b": [29.0, 29.0, 24.4]}.items():
        for name in names if model == "a+b" else [model]:
            frame = pd.DataFrame(
                {
                    "model": f"{model}.pth",
                    "trained_on": model,
                    "test_set": "t",
                    "degradation": name,
                    "image": ["i0", "i1", "i2"],
                    "psnr": psnr,
                    "ssim": 0.9,
                    "psnr_input": 25.0,
                }
            )
            frames.append(frame.assign(gain=frame.psnr - frame.psnr_input))
    groups = pd.DataFrame({"degradation": names, "group": ["a", "b"]})
    table = table1(groups, pd.concat(frames), {}, 0.5).set_index("degradation")
    assert table.loc["a", "gain_upper"] == pytest.approx(3.0) and table.loc["a", "harmed_upper"] == 1
    assert table.loc["a", "harmed_mixall"] == 1 and table.loc["b", "harmed_mixall"] == 1
    assert table.loc["average", "harmed_upper"] == 1 and table.loc["average", "harmed_mixall"] == 2
    assert table.loc["a", "learning_mixall"] == "learned" and table.loc["average", "learning_grids"] == "learned"


def test_table1_notes_where_the_mix_all_does_not_learn_what_single_task_models_learn():
    """A degradation whose single-task model learned and the mix-all's did not is named, with both
    gains: its drop is the scale's, not only a conflict. One the single-task model did not learn
    either, or the mix-all learned, is not."""
    names = ["a", "b", "c"]
    gains = {"a": 2.0, "b": 1.0, "c": 0.1, "a+b+c": {"a": 1.5, "b": 0.2, "c": 0.0}}
    frames = []
    for model, gain in gains.items():
        for name in names if model == "a+b+c" else [model]:
            g = gain[name] if isinstance(gain, dict) else gain
            frame = pd.DataFrame(
                {
                    "model": f"{model}.pth",
                    "trained_on": model,
                    "test_set": "t",
                    "degradation": name,
                    "image": ["i0", "i1"],
                    "psnr": 25.0 + g,
                    "ssim": 0.9,
                    "psnr_input": 25.0,
                }
            )
            frames.append(frame.assign(gain=frame.psnr - frame.psnr_input))
    groups = pd.DataFrame({"degradation": names, "group": names})
    note = mixall_scale_note(table1(groups, pd.concat(frames), {}, 0.5))
    assert note.startswith("**At this scale** the mix-all baseline does not learn, on t,")
    assert "learn: b (+1.00 -> +0.20 dB) (single-task" in note
    assert "a (" not in note and "c (" not in note
    learned = {**gains, "a+b+c": {"a": 1.5, "b": 0.9, "c": 0.0}}
    frames = [
        f.assign(psnr=25.0 + learned["a+b+c"]["b"])
        if f.trained_on.iloc[0] == "a+b+c" and f.degradation.iloc[0] == "b"
        else f
        for f in frames
    ]
    frames = [f.assign(gain=f.psnr - f.psnr_input) for f in frames]
    assert mixall_scale_note(table1(groups, pd.concat(frames), {}, 0.5)) == ""
