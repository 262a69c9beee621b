"""Integration: the real Snakemake workflow on a tiny config, in a temporary directory."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
import yaml

from grids import io, tables
from grids.cards import check_front_matter, read_front_matter
from grids.checkpoint import load_checkpoint
from grids.grouping.names import group_members, mix_all_group
from grids.learning import BELOW_INPUT_DB
from grids.nss import NSS_LAYERS

pytestmark = pytest.mark.slow  # runs the whole workflow on the tiny config: minutes

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"

PUBLISHED_X4 = {"scale": 4, "num_feat": 8, "num_block": 1, "num_grow_ch": 8}

# The tiny config is the repository's .test/ (also runnable by hand: `snakemake --directory .test`),
# plus a published baseline whose weights make_project writes.
TINY = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())
TINY["baselines"]["published"] = {"weights": "published_x4.pth", "arch": "rrdbnet", "arch_kwargs": PUBLISHED_X4}


def make_project(path: Path, config: dict) -> Path:
    (path / "config").mkdir(parents=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(ROOT / "examples" / "haze.py", path / "haze.py")
    write_published_weights(path / "published_x4.pth")
    return path


def write_published_weights(path: Path) -> None:
    """A small x4 RRDBNet saved the way BasicSR releases are: ``params_ema`` (what the loader
    takes) next to ``params``."""
    import torch

    from grids.archs import RRDBNet

    torch.manual_seed(0)
    ema, raw = RRDBNet(**PUBLISHED_X4).state_dict(), RRDBNet(**PUBLISHED_X4).state_dict()
    torch.save({"params_ema": ema, "params": raw}, path)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    workdir = make_project(tmp_path_factory.mktemp("tiny"), TINY)
    result = snakemake(workdir, "--cores", "2", "all")
    assert result.returncode == 0, result.stdout + result.stderr
    return workdir


def test_writes_a_manifest_per_degradation(built):
    for name in TINY["degradations"]:
        manifest = pd.read_parquet(built / "results" / "degraded" / name / "manifest.parquet")
        assert list(manifest.columns) == [
            "image_id",
            "source_path",
            "clean_path",
            "degradation",
            "params",
            "seed",
            "path",
            "sha256",
        ]
        assert list(manifest.image_id) == ["chelsea", "dead_leaves_000", "dead_leaves_001"]
        assert (manifest.degradation == name).all()
        # stored relative to the manifest's folder; read_manifest opens them from anywhere
        assert (manifest.path == "images/" + manifest.image_id + ".png").all()
        clean_paths = manifest.clean_path
        assert (clean_paths.str.startswith("../../clean/images/") | clean_paths.str.startswith("/")).all()
        opened = io.read_manifest(built / "results" / "degraded" / name / "manifest.parquet")
        for row in opened.itertuples():
            data = Path(row.path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == row.sha256
    haze = pd.read_parquet(built / "results" / "degraded" / "haze" / "manifest.parquet")
    assert '"strength"' in haze.params.iloc[0]  # the user-defined degradation ran with its params


def test_similarity_tables(built):
    sets = ["clean", *TINY["degradations"]]
    ggd = pd.read_parquet(built / "results" / "similarity" / "ggd.parquet")
    assert ggd.degradation.tolist() == sets
    assert (ggd.n_values == 16 * 8).all() and (ggd.alpha > 0).all() and (ggd.sigma > 0).all()
    assert ggd.descriptor_sha256.nunique() == 1 and len(ggd.descriptor_sha256.iloc[0]) == 64
    matrix = pd.read_parquet(built / "results" / "similarity" / "matrix.parquet")
    assert list(matrix.columns) == ["deg_a", "deg_b", "kl", "distance", "distance_sym"]
    assert len(matrix) == len(sets) ** 2
    off_diagonal = matrix[matrix.deg_a != matrix.deg_b]
    assert (off_diagonal.kl > 0).all()
    for suffix in ("png", "svg"):
        assert (built / "results" / "similarity" / f"heatmap.{suffix}").stat().st_size > 1000


def test_upper_bounds(built):
    names = list(TINY["degradations"])
    mix_all = "+".join(sorted(names))
    table = pd.read_parquet(built / "results" / "upper_bounds" / "evaluation.parquet")
    assert set(table.trained_on) == {*names, mix_all}
    # a model is scored on its members: single-task models on theirs, mix-all on every one (1 test image)
    assert len(table) == len(names) + len(names)
    assert table.psnr.between(5, 100).all() and table.ssim.between(-1, 1).all()
    assert (table.gain == table.psnr - table.psnr_input).all()
    summary = (built / "results" / "upper_bounds" / "summary.md").read_text()
    assert "drop" in summary and "psnr_input" in summary and "gain_single" in summary
    assert "harmed_mixall" in summary and "learning_mixall" in summary
    identity = pd.read_parquet(built / "results" / "eval" / "input.parquet")
    assert set(identity.trained_on) == {"input"} and (identity.psnr == identity.psnr_input).all()
    assert set(identity.degradation) == {*names, *TINY["selection"]["unseen"], "clean"}
    assert (identity.psnr[identity.degradation == "clean"] == 60.0).all()  # a clean image as it is: the ceiling
    log = pd.read_parquet(built / "results" / "models" / "jpeg" / "train_log.parquet")
    assert log.step.iloc[-1] == 12
    assert not (built / "results" / "resume").exists() or not any((built / "results" / "resume").iterdir())


def test_a_published_baseline_is_a_marked_table1_row(built):
    """Published weights are imported (checked against their architecture), evaluated on every
    test image and shown in Table 1 with the dagger, never trained."""
    import torch

    state = torch.load(built / "results" / "baselines" / "published" / "model.pth", weights_only=True)
    assert (
        json.loads(state["published"])["sha256"]
        == hashlib.sha256((built / "published_x4.pth").read_bytes()).hexdigest()
    )
    released = torch.load(built / "published_x4.pth", weights_only=True)["params_ema"]
    assert all(torch.equal(state["params"][k], v) for k, v in released.items())  # params_ema, not params
    assert not (built / "results" / "baselines" / "published" / "train_log.parquet").exists()
    evaluation = pd.read_parquet(built / "results" / "baselines" / "published" / "eval.parquet")
    assert set(evaluation.trained_on) == {"published"} and evaluation.psnr.between(5, 100).all()
    table = pd.read_parquet(built / "results" / "final" / "table1.parquet")
    assert table.psnr_published.between(5, 100).all()
    markdown = (built / "results" / "final" / "table1.md").read_text()
    assert "psnr_published†" in markdown and "published weights, evaluated as released" in markdown


def dry_run_jobs(output: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = set()
    for block in re.split(r"\n(?:rule|checkpoint) ", "\n" + output)[1:]:
        rule = block.split(":", 1)[0]
        wildcards = re.search(r"wildcards: (.*)", block)
        jobs.add((rule, wildcards.group(1) if wildcards else ""))
    return jobs


def test_final_models(built):
    names = list(TINY["degradations"])
    grouping = built / "results" / "grouping"
    candidates = pd.read_parquet(grouping / "candidates.parquet")
    assert len(candidates) == 2 ** len(names) - 1 - len(names)  # every subset of size >= 2
    rounds = sorted((grouping / "rounds").glob("*.parquet"), key=lambda p: int(p.stem))
    tables = [pd.read_parquet(p) for p in rounds]
    assert (tables[-1].action == "final").all() and all((t.action == "verify").all() for t in tables[:-1])
    asked = [g for t in tables[:-1] for g in t.group]
    verified = pd.read_parquet(grouping / "verified.parquet")
    assert list(verified.columns) == [
        "group", "size", "mean_distance", "dP", "dP_sd_images", "dP_sd_seeds", "dP_low", "dP_high",
        "feasible", "verdict", "weakest_gain", "uninformative", "weakest_group_gain", "below_input",
        "harmed_images", "round",
    ]  # fmt: skip
    assert verified.group.tolist() == asked and len(set(asked)) == len(asked)  # never verified twice
    drops = pd.read_parquet(grouping / "drops.parquet")
    worst = drops.groupby("group")["drop"].max()
    floor = pd.read_parquet(grouping / "noise_floor.parquet")
    assert floor.degradation.tolist() == ["jpeg", "pooled"] and floor.n_seeds.tolist() == [2, 2]
    for row in verified.itertuples():
        assert row.dP == pytest.approx(worst[row.group])
        assert row.dP_sd_seeds == pytest.approx(floor.drop_sd.iloc[-1])
        members = drops[drops.group == row.group]
        below = members.degradation[members.gain_group < -BELOW_INPUT_DB].tolist()  # each member against its input
        assert row.verdict == ("failed_training" if below else "feasible" if row.dP_high <= 0.7 else "infeasible")
        assert row.feasible == (row.verdict == "feasible")  # the default: conservative, delta 0.7
        assert row.below_input == ",".join(below) and row.weakest_group_gain == pytest.approx(members.gain_group.min())
        assert row.harmed_images == members.harmed_group.sum()
        weakest = members.gain_single.min()
        assert row.weakest_gain == pytest.approx(weakest) and row.uninformative == (weakest < 0.5)
    assert set(drops.learning_group) <= {"learned", "did_not_learn", "below_input"}
    failed = verified.group[verified.verdict == "failed_training"].tolist()
    result_log = (built / "logs" / "grouping" / "result.log").read_text()
    assert all(f"the mixed training of {g} failed" in result_log for g in failed)
    stability = pd.read_parquet(grouping / "stability.parquet")
    assert sorted(stability.group) == sorted(g for g in verified.group if "+" in g)
    partitions = pd.read_parquet(grouping / "stability_partitions.parquet")
    resamples = partitions.groupby("resampled").resamples.sum().to_dict()
    assert resamples == {"test_images": 50, "training_seeds": 2} and (grouping / "stability.png").stat().st_size > 5000
    # the stability across training seeds: the final groups and those near delta, retrained at seed 1
    near = (np.maximum(verified.dP_low - 0.7, 0.7 - verified.dP_high) <= 0.3) & (verified["size"] > 1)
    finals = set(pd.read_parquet(built / "results" / "final" / "groups.parquet").group)
    retrained = sorted(set(verified.group[near]) | {g for g in finals if "+" in g})
    by_seed = pd.read_parquet(grouping / "seed_verdicts.parquet")
    assert sorted(set(by_seed.group)) == retrained and by_seed.k.tolist() == [0] * len(retrained) + [1] * len(retrained)
    members = {m for g in retrained for m in g.split("+")}
    replicas = built / "results" / "replicates"
    assert all((replicas / g / "seed1" / "eval.parquet").exists() for g in {*retrained, *members})
    at_zero = by_seed[by_seed.k == 0].set_index("group")
    assert at_zero.dP.to_dict() == pytest.approx(verified.set_index("group").dP[retrained].to_dict())
    assert stability.set_index("group").training_seeds.to_dict() == {
        g: 2 if g in retrained else 1 for g in stability.group
    }
    groups = pd.read_parquet(built / "results" / "final" / "groups.parquet")
    assert groups.degradation.tolist() == names
    feasible = set(verified.group[verified.feasible])
    chosen = set(groups.group)
    assert all("+" not in g or g in feasible for g in chosen)
    models = built / "results" / "final" / "models"
    assert sorted(p.stem for p in models.glob("*.pth")) == sorted(chosen)
    import torch

    for group in chosen:  # the exported model holds the checkpoint's weights (slim: see the test below)
        exported = torch.load(models / f"{group}.pth", weights_only=True)["params"]
        trained = torch.load(built / "results" / "models" / group / "model.pth", weights_only=True)["params"]
        assert exported.keys() == trained.keys() and all(torch.equal(exported[k], trained[k]) for k in trained)
    table = pd.read_parquet(built / "results" / "final" / "table1.parquet")
    assert table.degradation.tolist() == [*names, "average"]
    assert table.psnr_grids.between(5, 100).all() and table.psnr_rrdb.between(5, 100).all()
    assert table.psnr_input.between(5, 100).all() and table.columns[3] == "psnr_input"
    # every model judged against its input, per mean and per image; the mix-all row says whether it learned
    for model in ("upper", "mixall", "grids"):
        assert table[f"gain_{model}"].to_numpy() == pytest.approx(
            (table[f"psnr_{model}"] - table.psnr_input).to_numpy()
        )
        assert set(table[f"learning_{model}"]) <= {"learned", "did_not_learn", "below_input"}
    rows = table[table.degradation != "average"]
    average = table[table.degradation == "average"].iloc[0]
    assert average.harmed_mixall == rows.harmed_mixall.sum() and 0 <= average.harmed_mixall <= len(rows)
    assert average.learning_mixall == (
        "below_input"
        if (rows.gain_mixall < -BELOW_INPUT_DB).any()
        else "learned"
        if rows.gain_mixall.mean() >= 0.5
        else "did_not_learn"
    )
    assert {"gain_rrdb", "harmed_rrdb", "gain_published", "harmed_published"} <= set(table.columns)
    notes = (built / "results" / "final" / "table1.md").read_text().split("## Notes")[1]
    assert "grouping.min_learned_gain = 0.5 dB" in notes
    assert (
        f"The mix-all baseline on heldout: {'below its input' if average.learning_mixall == 'below_input' else ''}"
        in notes
    )
    assert ("**Failed mixed trainings**" in notes) == bool(failed)
    mixall_failed = rows.degradation[rows.learning_mixall == "below_input"]
    log = (built / "logs" / "final" / "table1.log").read_text()
    assert all(f"the mix-all model ends below its degraded input on {d}" in log for d in mixall_failed)
    rrdb = pd.read_parquet(built / "results" / "baselines" / "rrdb" / "eval.parquet")
    assert len(rrdb) == len(names) + 2 and rrdb.model.str.contains("baselines/rrdb").all()  # + unseen, clean
    assert "## heldout" in (built / "results" / "final" / "table1.md").read_text()
    assert (built / "results" / "final" / "table1.png").stat().st_size > 5000


def test_selection_report(built):
    selection = built / "results" / "selection"
    accuracy = pd.read_parquet(selection / "accuracy.parquet")
    names = list(TINY["degradations"])
    # one heldout image each; the unseen one, then the clean case (the identity's), last
    assert accuracy.degradation.tolist() == [*names, "salt_pepper", "clean"]
    assert accuracy.seen.tolist() == [True] * len(names) + [False, True]
    groups = pd.read_parquet(built / "results" / "final" / "groups.parquet")
    assert accuracy.true_group.tolist() == [*groups.group, "", "identity"]
    candidates = {*groups.group, "identity"}  # "nothing to restore" is a candidate like the group models
    assert set(accuracy.chosen_group) <= candidates
    assert (accuracy.correct == (accuracy.chosen_group == accuracy.true_group)).all()
    assert accuracy.psnr_chosen.notna().all()
    assert accuracy.psnr_single.isna().tolist() == [False] * len(names) + [True, False]
    assert accuracy.psnr_true.iloc[-1] == 60.0  # the clean image as it is: the PSNR ceiling
    divergences = pd.read_parquet(selection / "divergences.parquet")
    assert len(divergences) == (len(names) + 2) * len(candidates)
    references = pd.read_parquet(selection / "references.parquet")  # one signature row per image and layer
    clean = pd.read_parquet(built / "results" / "clean" / "manifest.parquet")
    # selection.layers' descriptor layers, then features.layer, then nss (the pixels' 18 fits)
    layers = ["conv_first", "RB16", "conv_last_input", *NSS_LAYERS]
    assert sorted(references.degradation.unique()) == sorted([*names, "clean"])  # clean: the identity's
    train = pd.read_parquet(built / "results" / "train" / "clean" / "manifest.parquet")  # the identity's references
    assert len(references) == (len(names) * len(clean) + len(train)) * len(layers)
    assert set(references.image[references.degradation == "clean"]) == set(train.image_id)
    assert list(references.layer.unique()) == layers
    signatures = pd.read_parquet(selection / "signatures" / "heldout" / "salt_pepper.parquet")  # a test image's
    assert signatures.layer.tolist() == layers and (signatures.seconds > 0).all()
    assert_cached_signature_is_the_selectors(built, signatures)
    ood = pd.read_parquet(selection / "ood.parquet")
    assert ood.statistic.tolist() == ["paper", "nearest", "knn", "mahalanobis", "gain"]
    assert ood.default.tolist() == [False, False, False, False, True]  # selection.statistic: gain (the default)
    assert ood[["n_seen", "n_unseen"]].values.tolist() == [[len(names) + 1, 1]] * 5 and ood.auroc.between(0, 1).all()
    assert ood.threshold.iloc[4] == -0.5  # gain: flagged when expected to gain less than selection.min_helpful_gain
    chosen = ood[ood.default].iloc[0]
    assert ood.threshold.iloc[0] == 4.0 and 0 < ood.threshold.iloc[2] < np.inf  # the paper's 4; split-conformal
    assert accuracy.in_distribution.tolist() == (accuracy.score <= chosen.threshold).tolist()
    scores = pd.read_parquet(selection / "scores.parquet")
    assert len(scores) == 5 * len(accuracy)
    mine = scores[scores.statistic == "gain"]
    np.testing.assert_allclose(mine.score, -accuracy.expected_gain)
    assert (accuracy.gain_low <= accuracy.expected_gain).all() and (accuracy.expected_gain <= accuracy.gain_high).all()
    np.testing.assert_array_equal(mine.score, accuracy.score)
    np.testing.assert_array_equal(mine.expected_drop, accuracy.expected_drop)  # NaN: one image, no other fold
    assert divergences.kl.isna().all()  # reference: signature (the default) has distances, no KL
    prediction = pd.read_parquet(selection / "prediction.parquet")
    assert prediction.target.tolist() == ["psnr", "drop", "expected_drop"] * 5
    assert prediction.n.tolist() == [len(names) + 2, len(names) + 1, len(names)] * 5  # the drop: not of clean
    unseen = pd.read_parquet(selection / "unseen.parquet")
    assert unseen[["statistic", "degradation", "n"]].values.tolist() == [[s, "salt_pepper", 1] for s in ood.statistic]
    drop_fit = pd.read_parquet(selection / "drop_fit.parquet")
    assert set(drop_fit.statistic) == set(ood.statistic)
    for _, knots in drop_fit.groupby("statistic"):
        assert knots.score.is_monotonic_increasing and knots["drop"].is_monotonic_increasing
    evaluation = pd.read_parquet(built / "results" / "eval" / "jpeg.parquet")
    assert set(evaluation.degradation) == {"jpeg"}  # a model is scored on its members ...
    final = groups.group[groups.degradation == "jpeg"].iloc[0]
    others = pd.read_parquet(built / "results" / "eval" / "others" / f"{final}.parquet")
    assert {"salt_pepper", "clean"} <= set(others.degradation)  # ... and a final group's on every other one too
    assert not set(others.degradation) & set(final.split("+"))
    outcomes = pd.read_parquet(selection / "failure_images.parquet")  # the failure benchmark
    assert outcomes[["degradation", "image"]].values.tolist() == accuracy[["degradation", "image"]].values.tolist()
    assert (outcomes.gain <= outcomes.oracle_gain + 1e-9).all() and set(outcomes.oracle_group) <= candidates
    assert (outcomes.oracle_gain >= 0).all()  # the identity is a candidate: nothing to restore gains 0
    assert outcomes.oracle_group.iloc[-1] == "identity" and outcomes.psnr_input.iloc[-1] == 60.0  # the clean image
    identity = outcomes.chosen_group == "identity"
    assert (outcomes.fails == np.where(identity, outcomes.oracle_gain >= 0.5, outcomes.gain < 0.5)).all()
    np.testing.assert_allclose(outcomes.psnr_chosen, accuracy.psnr_chosen)
    failure = pd.read_parquet(selection / "failure.parquet")
    every = failure[failure.subset == "all"]
    assert every.statistic.tolist() == ood.statistic.tolist() and (every.n == len(accuracy)).all()
    assert (every.n_fails == outcomes.fails.sum()).all()
    assert set(failure.subset) == {"all", "seen", "unseen", "clean"}
    # the expected gain is fitted on every reference image restored by its group's model
    gains = pd.read_parquet(selection / "reference_gains.parquet")
    assert len(gains) == len(names) * len(clean) + len(train) and gains.gain.notna().all()
    expected = {**dict(zip(groups.degradation, groups.group)), "clean": "identity"}
    assert dict(zip(gains.degradation, gains.group)) == expected
    assert (gains.gain[gains.degradation == "clean"] == 0).all()  # the identity returns a clean image as it is
    gain = pd.read_parquet(selection / "gain.parquet")
    assert gain.subset.tolist() == ["all", "seen", "unseen", "clean"]
    assert gain.n.tolist() == [len(names) + 2, len(names), 1, 1]
    assert gain.coverage.between(0, 1).all() and (gain.nominal == 0.7).all()  # the tiny config's alpha 0.3
    flagged = (~accuracy.in_distribution | (accuracy.expected_gain < 0.5)) & (accuracy.chosen_group != "identity")
    assert (outcomes.flagged == flagged).all()  # nothing to restore: no model for a fallback to replace
    assert outcomes.psnr_mixall.notna().all()  # the mix-all model is scored on the unseen degradation too
    fallback = pd.read_parquet(selection / "fallback.parquet")
    assert set(fallback.fallback) == {"none", "mixall", "identity"} and len(fallback) == 12
    none = fallback[fallback.fallback == "none"]
    assert (none.change == 0).all() and (none.n_routed == 0).all()
    routers = pd.read_parquet(selection / "routers.parquet")  # trained routers beside GRIDS' choice
    assert list(routers.columns) == tables.columns("selection_routers")
    assert routers.router.tolist() == ["grids", "logistic", "cnn", "oracle"] and (routers.n == len(accuracy)).all()
    numbers = ["accuracy_seen", "oracle_agreement", "mean_psnr", "psnr_lost", "psnr_lost_seen", "psnr_lost_unseen"]
    assert np.isfinite(routers[[*numbers, "mean_gain"]].to_numpy()).all() and (routers.psnr_lost >= 0).all()
    assert routers.psnr_lost.iloc[-1] == 0 and routers.oracle_agreement.iloc[-1] == 1
    assert (routers.seconds_per_image.iloc[:3] > 0).all() and routers.seconds_per_image.iloc[3:].isna().all()
    trained = accuracy.seen & (accuracy.degradation != "clean")  # accuracy_seen: the trained degradations'
    assert routers.accuracy_seen.iloc[0] == accuracy.correct[trained].mean()
    curve = pd.read_parquet(selection / "router_curve.parquet")  # the CNN router's checks: the tiny config's 10 steps
    assert curve.step.tolist() == [10] and curve.best.tolist() == [True]
    routed = pd.read_parquet(selection / "router_images.parquet")
    np.testing.assert_allclose(routed[routed.router == "grids"].psnr, outcomes.psnr_chosen)
    np.testing.assert_allclose(routed[routed.router == "oracle"].psnr, outcomes.psnr_oracle)
    assert set(routed.chosen_group) <= candidates
    for name in ("confusion.png", "prediction.png", "ood.png", "failure.png", "routers.png"):
        assert (selection / name).stat().st_size > 5000
    assert "Prediction without inference" in (selection / "summary.md").read_text()


def assert_cached_signature_is_the_selectors(built: Path, signatures: pd.DataFrame) -> None:
    """The report and the routers read each test image's signature from its own job's table: it
    must be what `grids select` computes live for that image (same patches, same fits)."""
    from grids.config import load_config
    from grids.selection.selector import selector_from_config
    from grids.selection.signatures import image_signature

    config = load_config(built / "config" / "config.yaml", base_dir=built)
    selector = selector_from_config(config, built / "results", device="cpu")
    manifest = io.read_manifest(built / "results/test/heldout/degraded/salt_pepper/manifest.parquet")
    image = io.load_png(manifest.path.iloc[0])
    recipe = selector.recipe
    live = image_signature(image, recipe.features, recipe.model, recipe.seed, "cpu", list(recipe.layers))
    cached = signatures[signatures.image == manifest.image_id.iloc[0]].set_index("layer")
    for layer in live:  # equal up to the order of float sums (the job's thread count is not this test's)
        got, want = (cached.alpha[layer], cached.sigma[layer]), (live[layer].alpha, live[layer].sigma)
        np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=layer)


def grids_cli(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grids.cli", *args], capture_output=True, text=True, cwd=workdir, timeout=300
    )


def test_exported_group_models_are_slim_and_restore_like_the_checkpoints(built):
    import torch

    from grids.checkpoint import load_model
    from grids.evaluate import restore

    groups = pd.read_parquet(built / "results" / "final" / "groups.parquet")
    image = io.read_image(sorted((built / "results" / "test" / "heldout" / "degraded").rglob("*.png"))[0])[0]
    for group in dict.fromkeys(groups.group):
        slim_path = built / "results" / "final" / "models" / f"{group}.pth"
        full_path = built / "results" / "models" / group / "model.pth"
        slim = torch.load(slim_path, weights_only=True)
        assert "optimizer" not in slim and slim["members"] == group.split("+") and slim["config_hash"]
        assert slim_path.stat().st_size < full_path.stat().st_size
        card = (slim_path.with_suffix(".md")).read_text()
        assert hashlib.sha256(slim_path.read_bytes()).hexdigest() in card
        assert all(f"| {m} |" in card for m in group.split("+"))
        front = read_front_matter(card)
        check_front_matter(front)  # what a model hub reads: the schema of grids.cards
        assert front["metrics"] == ["psnr", "ssim"] and "dead-leaves-synthetic" in front["datasets"]
        for result in front["model-index"][0]["results"]:  # the model's PSNR beside the input's
            assert {m.get("config") for m in result["metrics"] if m["type"] == "psnr"} == {None, "input"}
        outputs = []
        for path in (slim_path, slim_path.with_suffix(".safetensors"), full_path):
            model, _ = load_model(path)
            with torch.no_grad():
                outputs.append(restore(model, image, torch.device("cpu")))
        assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[0], outputs[2])


def test_similarity_validation(built):
    results = built / "results" / "validation"
    table = pd.read_parquet(results / "table2.parquet")
    assert list(table.columns) == [
        "experiment",
        "variant",
        "side",
        "group",
        "size",
        "distance",
        "mean_drop",
        "max_drop",
        "weakest_group_gain",
        "harmed_images",
        "learning",
        "closer",
        "correct",
    ]
    assert set(table.experiment) == {"t1"} and set(table.variant) == {"method", "rb16", "untrained", "sift"}
    assert set(table.group) == {"jpeg+sr", "gaussian_noise+haze"}
    for _variant, rows in table.groupby("variant"):
        assert rows.closer.sum() == 1 and rows.correct.nunique() == 1
    assert (
        "experiment e2 skipped: ringing, rl not among the configured degradations"
        in (results / "table2.md").read_text()
    )
    assert "experiment e2 skipped" in (built / "logs" / "validation" / "tables.log").read_text()
    method = pd.read_parquet(built / "results" / "similarity" / "matrix.parquet")
    for variant in ("rb16", "untrained", "sift"):  # each variant's own cached matrix, same schema as the method's
        other = pd.read_parquet(results / "matrices" / f"{variant}.parquet")
        assert list(other.columns) == list(method.columns) and len(other) == len(method)
        assert not np.allclose(other.distance_sym, method.distance_sym)
    premise = pd.read_parquet(results / "premise.parquet")
    assert set(zip(premise.variant, premise.target)) == {
        (v, t) for v in ("method", "rb16", "untrained", "sift") for t in ("max_drop", "mean_drop")
    }
    groups = pd.read_parquet(results / "premise_groups.parquet")
    verified = set(pd.read_parquet(built / "results" / "grouping" / "verified.parquet").group)
    mix_all = mix_all_group(TINY["degradations"])
    assert set(groups.group) == verified | {"jpeg+sr", "gaussian_noise+haze", mix_all}
    # the mix-all row says whether it learned, as Table 1's average row does
    [learned] = set(groups.learning[groups.group == mix_all])
    table1 = pd.read_parquet(built / "results" / "final" / "table1.parquet")
    assert learned == table1.learning_mixall[table1.degradation == "average"].iloc[0]
    validation_drops = pd.read_parquet(results / "drops.parquet")
    assert {"harmed_single", "harmed_group", "learning_group"} <= set(validation_drops.columns)
    # An experiment group the search verified was trained once, by the search, and reused (which
    # one depends on the search's path: a failed training splits a group, so this names none).
    reused = {"jpeg+sr", "gaussian_noise+haze"} & verified
    assert reused
    log = "".join(p.read_text() for p in (built / ".snakemake" / "log").glob("*.snakemake.log"))
    jobs = re.findall(r"rule train:\n(?:.*\n)*?\s+wildcards: group=(\S+)", log)
    assert all(jobs.count(g) == 1 for g in reused) and len(jobs) == len(set(jobs))
    assert (results / "table2.png").stat().st_size > 0 and (results / "premise.png").stat().st_size > 0


def test_every_table_matches_the_registry(built):
    from grids import tables

    files = sorted((built / "results").rglob("*.parquet"))
    seen = set()
    for path in files:
        name = tables.table_for(path.relative_to(built))  # KeyError: a table grids.tables does not declare
        tables.check(pd.read_parquet(path), name)
        seen.add(name)
    # Every declared table was written (the tiny config uses the shipped descriptor: no training log).
    assert seen == set(tables.TABLES) - {"descriptor_log"}


def test_select_and_restore_on_the_built_results(built):
    images = sorted(
        str(p.relative_to(built)) for p in (built / "results" / "test" / "heldout" / "degraded").rglob("*.png")
    )
    result = grids_cli(built, "select", *images, "--json")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    groups = {*pd.read_parquet(built / "results" / "final" / "groups.parquet").group, "identity"}
    assert [a["image"] for a in answers] == images
    ood = pd.read_parquet(built / "results" / "selection" / "ood.parquet")
    threshold = ood[ood.default].threshold.iloc[0]
    for answer in answers:
        assert answer["group"] in groups and set(answer["divergences"]) == groups
        assert answer["nothing_to_restore"] == (answer["group"] == "identity")
        assert answer["distance"] == min(answer["divergences"].values())
        assert answer["statistic"] == "gain" and answer["expected_drop"] is not None
        low, high = answer["gain_interval"]
        assert low <= answer["expected_gain"] <= high
        assert answer["score"] == pytest.approx(-answer["expected_gain"])  # the gain statistic's score
        assert answer["in_distribution"] == (answer["score"] <= threshold)  # the report's threshold too
    accuracy = pd.read_parquet(built / "results" / "selection" / "accuracy.parquet")
    chosen = dict(
        zip(
            "results/test/heldout/degraded/" + accuracy.degradation + "/images/" + accuracy.image + ".png",
            accuracy.chosen_group,
        )
    )
    assert [a["group"] for a in answers] == [chosen[a["image"]] for a in answers]  # the report's choices
    score = dict(
        zip(
            "results/test/heldout/degraded/" + accuracy.degradation + "/images/" + accuracy.image + ".png",
            accuracy.score,
        )
    )
    assert [a["score"] for a in answers] == pytest.approx([score[a["image"]] for a in answers])
    # selection.alpha so small that the conformal rank exceeds the references: an unbounded interval,
    # null in the JSON (Infinity is not JSON); the gain statistic's own default sign of threshold
    (built / "tiny_alpha.yaml").write_text("selection: {alpha: 0.0001}\n")
    config = ["--config", "config/config.yaml", "--config", "tiny_alpha.yaml", "--threshold", "-0.5"]
    unbounded = grids_cli(built, "select", images[0], "--json", *config)
    assert unbounded.returncode == 0, unbounded.stderr
    strict = json.loads(unbounded.stdout, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))
    assert strict[0]["gain_interval"] == [None, None] and strict[0]["expected_gain"] is not None
    first = next(a for a in answers if a["group"] != "identity")  # a group model's choice
    text = grids_cli(built, "select", first["image"])
    assert text.returncode == 0 and "group" in text.stdout and "gain score" in text.stdout
    assert re.search(r": group \S+, expect [+-]\d+\.\d dB \([+-]\d+\.\d to [+-]\d+\.\d\) over the input", text.stdout)
    assert "expected drop ≈" in text.stdout  # the drop predicted from the score, by the report's fit

    nothing = [a["image"] for a in answers if a["nothing_to_restore"]]
    if nothing:  # the identity chosen: said so on the first line
        said = grids_cli(built, "select", nothing[0]).stdout
        assert "NOTHING TO RESTORE" in said.splitlines()[0] and "returned unchanged" in said, said
    out = built / "restored.png"
    # its model, flagged or not
    result = grids_cli(built, "restore", first["image"], "-o", str(out), "--fallback", "none")
    assert result.returncode == 0, result.stderr
    restored = io.read_image(out)[0]
    assert restored.shape == io.read_image(built / first["image"])[0].shape
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["group"] == first["group"]
    assert answer["model"].endswith(f"{answer['group']}.safetensors")  # the export read without unpickling
    group = sorted(groups - {"identity"})[0]
    forced = grids_cli(built, "restore", images[0], "-o", str(out), "--group", group)
    assert forced.returncode == 0 and json.loads(forced.stdout.strip().splitlines()[-1])["group"] == group
    wrong = grids_cli(built, "restore", images[0], "-o", str(out), "--group", "nonsense")
    assert wrong.returncode == 2 and "not a final group" in wrong.stderr


def test_restore_gives_a_clean_photo_back_unchanged_by_default(built, tmp_path):
    """A clean photo, in no set of the project, through `grids restore` with the default settings:
    it comes back at >= 45 dB from itself, and `grids select` says why."""
    from grids.evaluate import psnr

    photo = tmp_path / "clean.png"
    io.write_png(photo, io.read_image(Path(skimage.data.data_dir) / "astronaut.png")[0][:128, :128])
    out = tmp_path / "out.png"
    result = grids_cli(built, "restore", str(photo), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert psnr(io.read_image(out)[0], io.read_image(photo)[0]) >= 45.0, result.stderr
    said = grids_cli(built, "select", str(photo))
    assert said.returncode == 0, said.stderr
    assert "NOTHING TO RESTORE" in said.stdout or "NOT EXPECTED TO HELP" in said.stdout, said.stdout


def test_select_names_a_member_the_chosen_model_did_not_learn(built):
    """With grouping.min_learned_gain above every gain, no group model learned any member: `grids
    select` says so on the chosen group's line, with the gains its export records, and in JSON."""
    image = sorted((built / "results" / "test" / "heldout" / "degraded").rglob("*.png"))[0]
    (built / "unlearned.yaml").write_text("grouping: {min_learned_gain: 100.0}\n")
    config = ["--config", "config/config.yaml", "--config", "unlearned.yaml"]
    shown = grids_cli(built, "select", str(image), *config)
    assert shown.returncode == 0, shown.stderr
    answer = json.loads(grids_cli(built, "select", str(image), *config, "--json").stdout)[0]
    members = group_members(answer["group"])
    assert set(answer["not_learned"]) == set(members)
    exported = load_checkpoint(built / "results" / "final" / "models" / f"{answer['group']}.pth")
    assert answer["not_learned"] == pytest.approx(json.loads(exported["gains"]))
    first = shown.stdout.splitlines()[0]
    assert f"group {answer['group']}" in first and "ITS MODEL DID NOT LEARN" in first
    assert all(f"{m} ({answer['not_learned'][m]:+.2f} dB)" in first for m in members)
    default = json.loads(grids_cli(built, "select", str(image), "--json").stdout)[0]
    assert default["group"] == answer["group"]  # the choice itself does not change


def test_restore_routes_a_flagged_input_to_the_fallback(built):
    """With selection.min_helpful_gain above any expected gain every input is flagged: `identity` returns it
    unchanged, `mixall` restores it with the mix-all model, `none` with the chosen group's."""
    image = sorted((built / "results" / "test" / "heldout" / "degraded").rglob("*.png"))[0]
    (built / "flag_all.yaml").write_text("selection: {min_helpful_gain: 100.0}\n")
    config = ["--config", "config/config.yaml", "--config", "flag_all.yaml"]
    answers = {}
    for fallback in ("identity", "mixall", "none"):
        out = built / f"fallback_{fallback}.png"
        result = grids_cli(built, "restore", str(image), "-o", str(out), *config, "--fallback", fallback)
        assert result.returncode == 0, result.stderr
        assert "is flagged" in result.stderr and "NOT EXPECTED TO HELP" in result.stderr
        answers[fallback] = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(io.read_image(built / "fallback_identity.png")[0], io.read_image(image)[0])
    assert answers["identity"]["group"] == "identity" and answers["identity"]["model"] is None
    # "unchanged" means unchanged: a 16-bit RGBA input comes back 16-bit, with its alpha
    import cv2

    deep = np.dstack([io.read_image(image)[0].astype(np.uint16) * 257, np.full(io.read_image(image)[0].shape[:2], 999)])
    cv2.imwrite(str(built / "deep.png"), deep.astype(np.uint16))
    result = grids_cli(built, "restore", "deep.png", "-o", "deep_out.png", *config, "--fallback", "identity")
    assert result.returncode == 0 and "writing the input unchanged" in result.stderr, result.stderr
    np.testing.assert_array_equal(cv2.imread(str(built / "deep_out.png"), cv2.IMREAD_UNCHANGED), deep)
    mix_all = mix_all_group(TINY["degradations"])
    assert answers["mixall"]["group"] == mix_all and answers["mixall"]["model"].endswith(f"{mix_all}/model.pth")
    groups = set(pd.read_parquet(built / "results" / "final" / "groups.parquet").group)
    assert answers["none"]["group"] in groups


def _unshare_works() -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("target", ["full_disk", "read_only", "dev_full", "folder", "input"])
def test_restore_checks_its_output_and_leaves_nothing_partial(built, tmp_path, target):
    """The output is checked before the restoration, written atomically, and any failure is one
    line naming it: a full disk and a read-only file system are real (tmpfs mounts in a private
    mount namespace), so is /dev/full."""
    image = sorted((built / "results" / "test" / "heldout" / "degraded").rglob("*.png"))[0]
    before = image.read_bytes()
    if target in ("full_disk", "read_only"):
        if not shutil.which("unshare") or not _unshare_works():
            pytest.skip("needs unshare -m and mount (root in a private mount namespace)")
        mount = tmp_path / "mnt"
        mount.mkdir()
        # Full: a filler file takes every block (an empty file still fits, so the check passes and
        # the write itself fails); the filler is removed before listing what is left.
        prepare = (
            f"mount -t tmpfs -o size=64k tmpfs {mount} && (head -c 1000000 /dev/zero > {mount}/filler; true)"
            if target == "full_disk"
            else f"mount -t tmpfs -o ro,size=64k tmpfs {mount}"
        )
        script = (
            f"{prepare} && {sys.executable} -m grids.cli restore {image} -o {mount}/out.png; rc=$?; "
            f"rm -f {mount}/filler; ls -A {mount} >&2; exit $rc"
        )
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=built, timeout=300
        )
        output, expected = f"{mount}/out.png", "cannot write"
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error:"), result.stderr  # `ls -A` printed nothing: the mount is empty
    else:
        (tmp_path / "folder").mkdir()
        output = {"dev_full": "/dev/full", "folder": str(tmp_path / "folder"), "input": str(image)}[target]
        expected = {"dev_full": "not a regular file", "folder": "is a folder", "input": "is the input image"}[target]
        result = grids_cli(built, "restore", str(image), "-o", output)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {output}: ") and expected in errors[0], result.stderr
    if target != "full_disk":  # refused before the restoration: no progress bar, no model loaded
        assert "tiles" not in result.stderr and "group" not in result.stderr, result.stderr
    assert image.read_bytes() == before


def trained_groups(output: str) -> set[str]:
    return set(re.findall(r"rule train:\n(?:.*\n)*?\s+wildcards: group=(\S+)", output))


def test_changing_delta_reuses_trainings(built):
    before = {p.name for p in (built / "results" / "models").iterdir()}
    (built / "strict.yaml").write_text("grouping: {delta: 0.0}\n")
    configs = [str(built / "config" / "config.yaml"), str(built / "strict.yaml")]
    result = snakemake(built, "--cores", "2", "final_models", "--configfile", *configs)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert not trained_groups(out) & before  # a group already trained is never trained again
    strict = pd.read_parquet(built / "results" / "grouping" / "verified.parquet")
    assert set(strict.group) & before  # ... and the search did use those results
    assert not strict.feasible.any() or (strict.dP[strict.feasible] <= 0).all()
    # Back to the config's delta: replanned from results already on disk, nothing trained.
    result = snakemake(built, "--cores", "2", "final_models")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert trained_groups(out) == set()


SUFFIXES = [".pth", ".safetensors", ".md"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_deleted_export_is_rebuilt_by_final_models(built, suffix):
    """Each exported file is a declared output (it was one directory(): a deleted model card,
    .safetensors or .pth was never rebuilt, "Nothing to be done")."""
    models = built / "results" / "final" / "models"
    group = pd.read_parquet(built / "results" / "final" / "groups.parquet").group.iloc[0]
    before = {p.name: p.read_bytes() for p in models.glob("*.pth")}  # (safetensors' header order varies)
    (models / f"{group}{suffix}").unlink()
    result = snakemake(built, "--cores", "2", "final_models")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in models.iterdir()) == sorted(
        f"{g.removesuffix('.pth')}{s}" for g in before for s in SUFFIXES
    )
    assert trained_groups(result.stdout + result.stderr) == set()  # only the export reran
    assert {p.name: p.read_bytes() for p in models.glob("*.pth")} == before


def test_second_run_does_nothing(built):
    result = snakemake(built, "--cores", "2", "all")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_editing_one_degradation_reruns_only_it(built):
    config_path = built / "config" / "config.yaml"
    original = config_path.read_text()
    edited = yaml.safe_load(original)
    edited["degradations"]["jpeg"]["quality"] = [20, 30]
    config_path.write_text(yaml.safe_dump(edited, sort_keys=False))
    try:
        result = snakemake(built, "-n", "all")
    finally:
        config_path.write_text(original)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = dry_run_jobs(out)
    mix_all = mix_all_group(TINY["degradations"])
    assert {("degrade", "degradation=jpeg"), ("ggd_fit", "image_set=jpeg"), ("similarity_tables", "")} <= jobs
    assert {
        ("test_degrade", "test_set=heldout, degradation=jpeg"),
        ("train", "group=jpeg"),
        ("train", f"group={mix_all}"),
    } <= jobs
    assert {rule for rule, _ in jobs} <= {
        "degrade",
        "ggd_fit",
        "similarity_tables",
        "similarity_matrix",
        "test_degrade",
        "train",
        "evaluate",
        "upper_bounds_table",
        "upper_bounds",
        "degraded_datasets",
        "grouping_candidates",
        "grouping_round",
        "grouping_result",
        "grouping_stability",
        "final_group_model",
        "table1",
        "final_models",
        "all",
        "train_baseline",
        "evaluate_baseline",
        "evaluate_others",
        "evaluate_input",
        "train_replicate",
        "evaluate_replicate",
        "noise_floor",
        "selection_tables",
        "selection_failure",
        "selection_routers",
        "selection_report",
        "evaluate_references",
        "evaluate_references_input",
        "selection_reference_gains",
        "selection_reference_set",
        "selection_references",
        "test_signatures",
        "validation_ggd",
        "validation_matrix",
        "validation_tables",
        "similarity_validation",
    }
    trained = {w for rule, w in jobs if rule == "train"}
    assert {"group=jpeg", f"group={mix_all}"} <= trained
    assert all("jpeg" in w.split("=")[1].split("+") for w in trained)  # models without jpeg are kept


def test_a_new_training_seed_retrains_every_model_on_the_same_data(built):
    """`--config training_seed=N` asks "would another training change my groups?": every model is
    retrained (the replicates from N + k) while no image, degraded set, GGD fit or signature is
    redone; a new data seed redraws the data too."""
    result = snakemake(built, "-n", "all", "--config", "training_seed=7")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = dry_run_jobs(out)
    rules = {rule for rule, _ in jobs}
    trained = {w.split("=")[1] for rule, w in jobs if rule == "train"}
    assert {*TINY["degradations"], mix_all_group(TINY["degradations"])} <= trained and "train_replicate" in rules
    data = {"clean_images", "train_clean_images", "test_clean_images", "degrade", "test_degrade", "ggd_fit"}
    assert not rules & (data | {"selection_reference_set", "test_signatures", "validation_ggd"}), sorted(rules)
    result = snakemake(built, "-n", "all", "--config", "data_seed=7")
    jobs = dry_run_jobs(result.stdout + result.stderr)
    assert {("degrade", "degradation=jpeg"), ("test_degrade", "test_set=heldout, degradation=jpeg")} <= jobs


REPORTED = {  # figure or page -> the target that builds it
    "heatmap.png": "similarity_matrix",
    "search.png": "final_models",
    "stability.png": "final_models",
    "table1.png": "final_models",
    "table1.html": "final_models",
    "confusion.png": "selection_report",
    "prediction.png": "selection_report",
    "ood.png": "selection_report",
    "summary.html": "selection_report",
    "table2.png": "similarity_validation",
    "table2.html": "similarity_validation",
    "premise.png": "similarity_validation",
}


def report_files(workdir: Path, tmp_path: Path, *targets: str) -> set[str]:
    """`snakemake --report report.zip [TARGET...]` in ``workdir``: the names of the figures and
    pages in it. Checks that the front page holds the run's whole config (Snakemake 9's report has
    no page showing the config files) and that Snakemake warned of no missing metadata (what it
    prints for every output of the targets' jobs not built yet)."""
    result = snakemake(workdir, "--report", str(tmp_path / "report.zip"), *targets)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Missing metadata" not in result.stdout + result.stderr
    with zipfile.ZipFile(tmp_path / "report.zip") as report:
        names = {Path(n).name for n in report.namelist()}
        front = next(report.read(n).decode() for n in report.namelist() if n.endswith("report.html"))
    assert "which image degradations can share one restoration model" in front  # report/workflow.rst
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    front = html.unescape(front.replace('\\"', '"'))
    assert re.search(rf'"pca_components": {config["features"]["pca_components"]}\b', front)  # a key it sets
    assert re.search(r'"probes_per_round": 1\b', front)  # and a default it leaves out
    return names & set(REPORTED)


def test_report_after_all_has_every_figure_and_page(built, tmp_path):
    assert report_files(built, tmp_path) == set(REPORTED)
    page = (built / "results" / "final" / "table1.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<table>") >= 1 and "psnr_upper" in page


def test_same_config_same_bytes(built, tmp_path):
    again = make_project(tmp_path / "again", TINY)
    result = snakemake(again, "--cores", "2", "similarity_matrix")
    assert result.returncode == 0, result.stdout + result.stderr
    # the report of that target holds what it built, the config and no warning
    assert report_files(again, tmp_path, "similarity_matrix") == {"heatmap.png"}
    for name in TINY["degradations"]:
        a = pd.read_parquet(built / "results" / "degraded" / name / "manifest.parquet")
        b = pd.read_parquet(again / "results" / "degraded" / name / "manifest.parquet")
        pd.testing.assert_frame_equal(a.drop(columns="source_path"), b.drop(columns="source_path"))
    a, b = (pd.read_parquet(d / "results" / "similarity" / "matrix.parquet") for d in (built, again))
    pd.testing.assert_frame_equal(a, b, rtol=1e-6)


def test_report_after_similarity_matrix_holds_the_config_and_the_heatmap(tmp_path):
    """README command 1, then its report: the heatmap and the whole config, no metadata warning."""
    workdir = make_project(tmp_path / "first", TINY)
    result = snakemake(workdir, "--cores", "2", "similarity_matrix")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report_files(workdir, tmp_path, "similarity_matrix") == {"heatmap.png"}


def test_invalid_config_fails_before_any_job(tmp_path):
    bad = {**TINY, "degradations": {"jpeg": {"quality": [40, 10]}}}
    workdir = make_project(tmp_path / "bad", bad)
    result = snakemake(workdir, "--cores", "1", "degraded_datasets")
    assert result.returncode != 0
    assert "invalid config: config key degradations.jpeg" in result.stderr + result.stdout
    assert not (workdir / "results").exists()


def test_bad_image_fails_the_job_naming_the_file(tmp_path):
    workdir = tmp_path / "badimg"
    images = workdir / "images"
    images.mkdir(parents=True)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    config = {**TINY, "images": {"photos": ["chelsea"], "folder": "images", "min_side": 32}}
    make_project(workdir, config)
    result = snakemake(workdir, "--cores", "1", "degraded_datasets")
    assert result.returncode != 0
    log = (workdir / "logs" / "clean_images.log").read_text()
    assert "broken.png" in log and "error:" in log
    assert not (workdir / "results" / "clean" / "manifest.parquet").exists()


def test_lint_and_format_are_clean():
    lint = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "-s", str(SNAKEFILE)], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    snakefmt = Path(sys.executable).with_name("snakefmt")
    fmt = subprocess.run([str(snakefmt), "--check", str(ROOT / "workflow")], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_paper_config_dry_runs_final_models(tmp_path):
    """config/paper.yaml over config/config.yaml, its data folders replaced by placeholders."""
    import cv2
    import numpy as np

    workdir = tmp_path / "paper"
    (workdir / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "config.yaml", workdir / "config" / "config.yaml")
    shutil.copytree(ROOT / "examples", workdir / "examples")  # the default config's unseen haze
    text = (ROOT / "config" / "paper.yaml").read_text()
    for placeholder in sorted(set(re.findall(r"/path/to/\w+", text))):
        folder = workdir / "data" / placeholder.rsplit("/", 1)[1]
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "0001.png"), np.zeros((300, 300, 3), np.uint8))
        text = text.replace(placeholder, str(folder))
    (workdir / "paper.yaml").write_text(text)
    configs = [str(workdir / "config" / "config.yaml"), str(workdir / "paper.yaml")]
    result = snakemake(workdir, "-n", "-p", "final_models", "--configfile", *configs)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = dry_run_jobs(out)
    degradations = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["degradations"]
    assert {w for rule, w in jobs if rule == "train"} >= {f"group={name}" for name in degradations}
    assert {w for rule, w in jobs if rule == "test_clean_images"} == {"test_set=div2k_valid", "test_set=urban100"}
    assert ("grouping_round", "round=0") in jobs
    assert ("train_store", "") in jobs  # every training reads its crops from the store
    assert (
        len(re.findall(r"grids.train --group \S+ --store results/train/store/index.parquet", out))
        == len(degradations) + 1 + 2 * len(degradations)  # and the noise floor's replicates: all, 2 seeds
    )
    recipes = re.findall(r"grids.train --group (\S+).*--recipe '(\{[^']*\})'", out)
    assert len(recipes) == 3 * len(degradations) + 1  # single-task, the RRDBNet baseline, the replicates
    for _, recipe in recipes:
        recipe = json.loads(recipe)
        assert recipe["iterations"] == 600000 and recipe["crop"] == 256
        assert recipe["arch"] in ("restormer", "rrdbnet")
        assert recipe["arch_kwargs"] == ({} if recipe["arch"] == "restormer" else {"scale": 1})


def test_single_gpu_config_dry_runs_final_models(tmp_path):
    workdir = tmp_path / "gpu"
    (workdir / "config").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "config.yaml", workdir / "config" / "config.yaml")
    shutil.copytree(ROOT / "examples", workdir / "examples")  # the default config's unseen haze
    configs = [str(workdir / "config" / "config.yaml"), str(ROOT / "config" / "gpu.yaml")]
    result = snakemake(workdir, "-n", "-p", "final_models", "--configfile", *configs)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    jobs = dry_run_jobs(out)
    assert (
        len({w for rule, w in jobs if rule == "train"}) == 11
        and len({w for rule, w in jobs if rule == "ggd_fit"}) == 12
    )
    assert '"n_patches": 800' in out and '"iterations": 2000' in out
