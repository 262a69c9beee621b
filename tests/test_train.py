"""Trainer and evaluation: online degradation, exact resume after kill -9 / SIGTERM, metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import ENTRIES, GROUP, tiny_recipe, train_command
from skimage.metrics import peak_signal_noise_ratio

from grids import io
from grids.checkpoint import load_checkpoint, load_model
from grids.data import dead_leaves, prepare_clean_set, set_paths
from grids.degradations import get_degradation
from grids.degradations.batched import Window, from_uint8_images
from grids.degrade import degrade_dataset
from grids.evaluate import evaluate_model, psnr, restore, runs_in_bf16, ssim
from grids.grouping.names import group_members, group_name, group_pattern
from grids.learning import PSNR_CEILING
from grids.stage import uses_bf16
from grids.store import random_crop
from grids.train import (
    OnlineDegrader,
    Prefetcher,
    WeightAverage,
    learning_rate,
    restoration_loss,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = tiny_recipe(40)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [dead_leaves(64, np.random.default_rng(i)) for i in range(3)]


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_group_names():
    assert group_name(["sr", "jpeg", "sr"]) == "jpeg+sr"
    assert group_members("jpeg+sr") == ["jpeg", "sr"]
    import re

    pattern = re.compile(group_pattern(["jpeg", "sr", "rl"]) + "$")
    assert pattern.match("jpeg+rl+sr") and pattern.match("sr") and not pattern.match("jpeg+haze")


def test_learning_rate_warmup_then_cosine():
    assert learning_rate(0, RECIPE) == pytest.approx(1e-3 / 5)
    assert learning_rate(4, RECIPE) == pytest.approx(1e-3)
    assert learning_rate(5, RECIPE) == pytest.approx(1e-3)
    assert learning_rate(40, RECIPE) == pytest.approx(1e-5)
    rates = [learning_rate(s, RECIPE) for s in range(5, 41)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_online_degrader_applies_one_member_per_sample(images):
    degs = {name: get_degradation(name, ENTRIES[name]) for name in ENTRIES}
    data = OnlineDegrader(images, degs, 32, torch.device("cpu"))
    degraded, clean, weight = data.batch(16, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert degraded.shape == clean.shape == (16, 3, 32, 32)
    assert torch.equal(weight, torch.ones(16))  # plain L1 unless the loss is balanced
    assert not torch.equal(degraded, clean)
    again = data.batch(16, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert torch.equal(again[0], degraded) and torch.equal(again[1], clean)
    with pytest.raises(ValueError, match="smaller than the 80 px crop"):
        OnlineDegrader(images, degs, 80, torch.device("cpu"))


@pytest.mark.parametrize("k, size", [(2, 8), (3, 8), (11, 8), (4, 4)])
def test_balanced_batches_hold_each_member_equally(images, k, size):
    names = ["gaussian_noise", "jpeg", "sr", "rl", "ringing", "gaussian_blur", "motion_blur", "defocus_blur"]
    names += ["poisson_noise", "inpainting", "salt_pepper"]
    degs = {name: get_degradation(name, {}) for name in names[:k]}
    data = OnlineDegrader(images, degs, 32, torch.device("cpu"), balanced=True)
    rng = np.random.default_rng(0)
    draws = [data.draw_members(size, rng) for _ in range(300)]
    for batch in draws:  # within a batch: every member size // k or size // k + 1 times
        counts = np.bincount(batch, minlength=k)
        assert counts.min() >= size // k and counts.max() <= -(-size // k)
    totals = np.bincount(np.concatenate(draws), minlength=k)
    assert totals.max() - totals.min() <= 0.1 * totals.mean()  # and the remainder spread evenly
    uniform = OnlineDegrader(images, degs, 32, torch.device("cpu"))
    counts = [np.bincount(uniform.draw_members(size, rng), minlength=k) for _ in range(300)]
    if size % k == 0:  # the uniform draw does leave members out of some batches
        assert any(c.min() < size // k for c in counts)


def test_the_canvas_is_cut_to_the_crop_and_clamped_to_the_smallest_image(images):
    degs = {"inpainting": get_degradation("inpainting", {})}
    data = OnlineDegrader(images, degs, 32, torch.device("cpu"), canvas=128)
    assert data.canvas == 64  # the fixture's images are 64 px: the canvas shrinks to fit them
    degraded, clean, _ = data.batch(6, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert degraded.shape == clean.shape == (6, 3, 32, 32)
    # Strokes are drawn for the canvas, so a crop holds a fraction of them: less covered than when
    # they are drawn for the crop itself.
    plain = OnlineDegrader(images, degs, 32, torch.device("cpu"))
    wide = OnlineDegrader([dead_leaves(256, np.random.default_rng(9))], degs, 32, torch.device("cpu"), canvas=256)

    def covered(source):
        d, c, _ = source.batch(64, np.random.default_rng(1), torch.Generator().manual_seed(1))
        return ((d - c).abs().sum(1) > 0).float().mean().item()

    assert covered(wide) < 0.5 * covered(plain)


def test_a_batch_holds_the_crops_of_its_degraded_canvases(images):
    """The trainer degrades only the crops it keeps: the same crops, parameters and pixels as
    degrading each whole canvas and cutting the crop from it (the draws' order is replayed here)."""
    deg = get_degradation("gaussian_blur", {})
    data = OnlineDegrader(images, {"gaussian_blur": deg}, 16, torch.device("cpu"), canvas=48)
    degraded, clean, _ = data.batch(4, np.random.default_rng(0), torch.Generator().manual_seed(0))
    replay = np.random.default_rng(0)
    canvases = from_uint8_images([random_crop(data.images, 48, replay) for _ in range(4)])
    data.draw_members(4, replay)
    params = [deg.sample(replay, (48, 48)) for _ in range(4)]
    window = Window(replay.integers(48 - 16 + 1, size=(4, 2)), 16)
    assert torch.equal(clean, window.cut(canvases))
    assert ((degraded - window.cut(deg.apply_batch(canvases, params))).abs() * 255).max() <= 1


def test_balanced_loss_by_hand(images):
    clean = torch.zeros(2, 3, 2, 2)
    restored = clean.clone()
    restored[0] += 0.1
    restored[1, 0, 0, 0] = 0.4  # mean error 0.4 / 12
    weight = torch.tensor([0.5, 1.5])
    by_hand = (0.5 * 0.1 + 1.5 * 0.4 / 12) / 2
    assert restoration_loss(restored, clean, weight).item() == pytest.approx(by_hand, rel=1e-6)
    assert restoration_loss(restored, clean, torch.ones(2)).item() == pytest.approx((0.1 + 0.4 / 12) / 2, rel=1e-6)
    squared = (0.5 * 0.1**2 + 1.5 * 0.4**2 / 12) / 2  # loss: mse, the same weights
    assert restoration_loss(restored, clean, weight, squared=True).item() == pytest.approx(squared, rel=1e-5)
    # Each member's weight is the inverse of its inputs' mean error, normalised to average 1.
    degs = {name: get_degradation(name, ENTRIES[name]) for name in ENTRIES}
    data = OnlineDegrader(images, degs, 32, torch.device("cpu"))
    scales = data.balance_loss(seed=0)
    inverse = np.array([1 / scales[name] for name in data.names])
    assert np.allclose(data.weights, inverse / inverse.mean()) and data.weights.mean() == pytest.approx(1.0)
    assert scales["gaussian_noise"] > scales["jpeg"]  # noise sigma 10-50 changes pixels more than jpeg
    assert data.balance_loss(seed=0) == scales  # its own streams: the same weights every time
    _, _, weight = data.batch(8, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert set(np.round(weight.numpy(), 5)) <= set(np.round(data.weights.astype(np.float32), 5))
    # balanced_mse: the inverse of each member's input mean squared error, from the same crops
    squared = data.balance_loss(seed=0, squared=True)
    inverse = np.array([1 / squared[name] for name in data.names])
    assert np.allclose(data.weights, inverse / inverse.mean())
    assert all(squared[name] < scales[name] for name in data.names)  # errors < 1: squares are smaller


def test_checkpoint_is_self_describing_and_weights_only(images, tmp_path):
    train(GROUP, images, ENTRIES, {**RECIPE, "iterations": 5}, 0, tmp_path / "m.pth", tmp_path / "r.pth", "cpu")
    state = load_checkpoint(tmp_path / "m.pth")
    assert state["step"] == 5 and state["arch"] == "srresnet" and state["group"] == GROUP
    assert json.loads(state["recipe"])["iterations"] == 5 and "optimizer" in state and "torch_rng" in state
    model, _ = load_model(tmp_path / "m.pth")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_pickle_payload_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params": {}, "payload": Path("/etc/passwd")}, path)  # any non-tensor object pickles code refs
    with pytest.raises(ValueError, match="not a loadable GRIDS checkpoint"):
        load_checkpoint(path)


def test_resume_in_process_is_exact(images, tmp_path):
    train(GROUP, images, ENTRIES, RECIPE, 0, tmp_path / "a.pth", tmp_path / "ra.pth", "cpu")
    train(GROUP, images, ENTRIES, RECIPE, 0, tmp_path / "b.pth", tmp_path / "rb.pth", "cpu", stop_after=20)
    assert not (tmp_path / "b.pth").exists() and load_checkpoint(tmp_path / "rb.pth")["step"] == 20
    train(GROUP, images, ENTRIES, RECIPE, 0, tmp_path / "b.pth", tmp_path / "rb.pth", "cpu")
    a, b = load_checkpoint(tmp_path / "a.pth"), load_checkpoint(tmp_path / "b.pth")
    assert state_dicts_equal(a["params"], b["params"])


def test_prefetcher_gives_the_same_batches_and_states_as_building_in_place(images):
    degs = {name: get_degradation(name, ENTRIES[name]) for name in ENTRIES}
    data = OnlineDegrader(images, degs, 32, torch.device("cpu"))

    def draw(depth: int) -> list:
        loader = Prefetcher(data, 4, np.random.default_rng(3), torch.Generator().manual_seed(3), depth)
        try:
            out = []
            for _ in range(5):
                batch = loader.next()
                numpy_state, torch_state = loader.state()
                out.append((batch, numpy_state, torch_state))
            return out
        finally:
            loader.close()

    inline, ahead = draw(0), draw(3)
    for (b0, n0, t0), (b1, n1, t1) in zip(inline, ahead):
        assert torch.equal(b0[0], b1[0]) and torch.equal(b0[1], b1[1])
        # the state after the batch handed out, not after the ones the thread built ahead
        assert n0 == n1 and torch.equal(t0, t1)


def test_prefetcher_raises_the_producer_error_in_the_consumer(images):
    class Broken(OnlineDegrader):
        def batch(self, *args):
            raise RuntimeError("degradation failed")

    loader = Prefetcher(Broken(images, {}, 32, torch.device("cpu")), 2, np.random.default_rng(0), torch.Generator(), 2)
    with pytest.raises(RuntimeError, match="degradation failed"):
        loader.next()
    loader.close()


def test_resume_with_prefetch_is_exact(images, tmp_path):
    # the loader runs ahead of the step; the checkpoint must still hold the consumer's RNG state
    train(GROUP, images, ENTRIES, RECIPE, 0, tmp_path / "a.pth", tmp_path / "ra.pth", "cpu", prefetch=0)
    train(GROUP, images, ENTRIES, RECIPE, 0, tmp_path / "b.pth", tmp_path / "rb.pth", "cpu", stop_after=20, prefetch=3)
    train(GROUP, images, ENTRIES, RECIPE, 0, tmp_path / "b.pth", tmp_path / "rb.pth", "cpu", prefetch=3)
    a, b = load_checkpoint(tmp_path / "a.pth"), load_checkpoint(tmp_path / "b.pth")
    assert state_dicts_equal(a["params"], b["params"])
    assert a["numpy_rng"] == b["numpy_rng"] and torch.equal(a["torch_rng"], b["torch_rng"])


def test_the_weight_average_follows_its_formula_by_hand():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = WeightAverage(model, decay=0.9)
    expected = 1.0
    for done, value in enumerate([3.0, -1.0, 2.0, 5.0, 0.0, 4.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(done)
        decay = min(0.9, (1 + done) / (10 + done))  # ramped up: 2/11, 3/12, ... then 0.9
        expected = decay * expected + (1 - decay) * value
        assert average.params["weight"].item() == pytest.approx(expected, rel=1e-6)
    assert model.weight.item() == 4.0  # the model itself is untouched


def test_a_training_with_a_weight_average_saves_the_average_and_resumes_exactly(images, tmp_path):
    recipe = {**RECIPE, "ema": 0.95, "precision": "fp32"}
    train(GROUP, images, ENTRIES, recipe, 0, tmp_path / "a.pth", tmp_path / "ra.pth", "cpu")
    train(GROUP, images, ENTRIES, recipe, 0, tmp_path / "b.pth", tmp_path / "rb.pth", "cpu", stop_after=20)
    assert "params_ema" in load_checkpoint(tmp_path / "rb.pth")
    train(GROUP, images, ENTRIES, recipe, 0, tmp_path / "b.pth", tmp_path / "rb.pth", "cpu")
    a, b = load_checkpoint(tmp_path / "a.pth"), load_checkpoint(tmp_path / "b.pth")
    assert state_dicts_equal(a["params"], b["params"]) and "params_ema" not in a
    plain = {**RECIPE, "precision": "fp32"}
    train(GROUP, images, ENTRIES, plain, 0, tmp_path / "c.pth", tmp_path / "rc.pth", "cpu")
    # the same steps (the data do not depend on the average), but the saved weights are the average
    assert not state_dicts_equal(a["params"], load_checkpoint(tmp_path / "c.pth")["params"])
    assert load_model(tmp_path / "a.pth")[0] is not None


def test_precision_is_checked_and_recorded(images, tmp_path):
    with pytest.raises(ValueError, match="precision must be"):
        train(GROUP, images, ENTRIES, RECIPE, 0, tmp_path / "m.pth", tmp_path / "r.pth", "cpu", precision="fp16")
    for precision in ("fp32", "bf16"):  # the recipe's key, as the config gives it
        recipe = {**RECIPE, "iterations": 2, "precision": precision}
        train(GROUP, images, ENTRIES, recipe, 0, tmp_path / f"{precision}.pth", tmp_path / f"r{precision}.pth", "cpu")
        assert load_checkpoint(tmp_path / f"{precision}.pth")["precision"] == precision
    # the argument overrides the recipe (python -m grids.train --precision)
    recipe = {**RECIPE, "iterations": 2, "precision": "bf16"}
    train(GROUP, images, ENTRIES, recipe, 0, tmp_path / "o.pth", tmp_path / "ro.pth", "cpu", precision="fp32")
    assert load_checkpoint(tmp_path / "o.pth")["precision"] == "fp32"


def test_auto_precision_is_bf16_on_cuda_and_on_cpus_with_bf16_kernels():
    cpu = torch.device("cpu")
    assert uses_bf16("auto", cpu) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert uses_bf16("auto", torch.device("cuda")) and uses_bf16("bf16", cpu) and not uses_bf16("fp32", cpu)


def _write_manifest(tmp_path: Path, images: list[np.ndarray]) -> Path:
    folder = tmp_path / "clean" / "images"
    folder.mkdir(parents=True)
    rows = []
    for i, image in enumerate(images):
        io.write_png(folder / f"{i}.png", image)
        rows.append({"image_id": str(i), "path": str(folder / f"{i}.png")})
    pd.DataFrame(rows).to_parquet(tmp_path / "clean" / "manifest.parquet")
    return tmp_path / "clean" / "manifest.parquet"


def _train_command(manifest: Path, recipe: dict, out: Path, resume: Path) -> list[str]:
    return train_command(["--clean", str(manifest)], recipe, out, out.with_suffix(".parquet"), resume)


def _wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.slow  # trainings killed and resumed
def test_killed_job_resumes_to_identical_weights(images, tmp_path, sig):
    recipe = {**RECIPE, "iterations": 300, "checkpoint_every": 10}
    manifest = _write_manifest(tmp_path, images)
    reference = tmp_path / "reference.pth"
    assert (
        subprocess.run(_train_command(manifest, recipe, reference, tmp_path / "r0.pth"), capture_output=True).returncode
        == 0
    )

    out, resume = tmp_path / "model.pth", tmp_path / "resume.pth"
    job = subprocess.Popen(_train_command(manifest, recipe, out, resume), stderr=subprocess.PIPE, text=True)
    _wait_for(resume)
    time.sleep(0.3)
    os.kill(job.pid, sig)
    _, err = job.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert job.returncode == 143 and "checkpoint saved" in err
    else:
        assert job.returncode == -signal.SIGKILL
    assert not out.exists(), "the job was killed before finishing"
    stopped_at = load_checkpoint(resume)["step"]
    assert 0 < stopped_at < 300

    rerun = subprocess.run(_train_command(manifest, recipe, out, resume), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed from {resume} at step {stopped_at}" in rerun.stderr
    assert not resume.exists()  # finished: the resume state is removed
    assert state_dicts_equal(load_checkpoint(reference)["params"], load_checkpoint(out)["params"])
    # The training log survives the interruption: every row of the uninterrupted run, same values
    # (it/s is a timing, so only its presence is compared).
    expected, resumed = pd.read_parquet(reference.with_suffix(".parquet")), pd.read_parquet(out.with_suffix(".parquet"))
    assert len(expected) == 30
    pd.testing.assert_frame_equal(resumed.drop(columns="it_per_s"), expected.drop(columns="it_per_s"))
    assert resumed.it_per_s.notna().all() and (resumed.it_per_s > 0).all()


def test_metrics_match_direct_computation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / mse))
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    assert ssim(a, a) == pytest.approx(1.0) and 0 < ssim(a, b) < 1
    # an unchanged image (the clean test case left as it is) scores the ceiling, not inf, and one
    # grey level off everywhere stays below it (48.1 dB)
    assert psnr(a, a) == PSNR_CEILING == 60.0
    one_off = np.where(a < 255, a + 1, a - 1).astype(np.uint8)
    assert psnr(a, one_off) == pytest.approx(10 * np.log10(255**2)) and psnr(a, one_off) < PSNR_CEILING


def test_tiled_inference_matches_whole_image(images, tmp_path):
    train(GROUP, images, ENTRIES, {**RECIPE, "iterations": 3}, 0, tmp_path / "m.pth", tmp_path / "r.pth", "cpu")
    model, _ = load_model(tmp_path / "m.pth")
    image = dead_leaves(96, np.random.default_rng(5))
    whole = restore(model, image, "cpu", tile=512)
    tiled = restore(model, image, "cpu", tile=40, overlap=16)
    assert whole.shape == tiled.shape == image.shape
    assert psnr(whole, tiled) > 40


def test_evaluation_table(images, tmp_path):
    train(GROUP, images, ENTRIES, {**RECIPE, "iterations": 3}, 0, tmp_path / "m.pth", tmp_path / "r.pth", "cpu")
    test_dir = tmp_path / "test"
    clean = prepare_clean_set(
        {"photos": [], "dead_leaves": {"count": 2, "size": 48}, "folder": None, "min_side": 32},
        0,
        *set_paths(test_dir / "clean"),
        dataset="test",
    )
    degraded = {}
    for name, entry in ENTRIES.items():
        degraded[name] = test_dir / "degraded" / name / "manifest.parquet"
        degrade_dataset(clean, name, entry, 0, degraded[name], degraded[name].parent / "images", "test")
    table = evaluate_model(
        tmp_path / "m.pth", {"heldout": (test_dir / "clean" / "manifest.parquet", degraded)}, list(ENTRIES), "cpu"
    )
    assert list(table.columns) == [
        "model", "trained_on", "test_set", "degradation", "image", "psnr", "ssim", "psnr_input", "gain"
    ]  # fmt: skip
    assert len(table) == 4 and set(table.trained_on) == {GROUP}
    row = table[(table.degradation == "jpeg") & (table.image == "dead_leaves_000")].iloc[0]
    model, state = load_model(tmp_path / "m.pth")
    degraded_image = io.load_png(test_dir / "degraded" / "jpeg" / "images" / "dead_leaves_000.png")
    target = io.load_png(test_dir / "clean" / "images" / "dead_leaves_000.png")
    bf16 = runs_in_bf16(state, "model", torch.device("cpu"))  # as trained: bf16 where this CPU has the kernels
    assert bf16 == (state["precision"] == "bf16" and uses_bf16("auto", torch.device("cpu")))
    assert row.psnr == pytest.approx(psnr(restore(model, degraded_image, "cpu", bf16=bf16), target))
    assert row.psnr_input == psnr(degraded_image, target)
    assert row.gain == pytest.approx(row.psnr - row.psnr_input)
    fp32 = evaluate_model(
        tmp_path / "m.pth", {"heldout": (test_dir / "clean" / "manifest.parquet", degraded)}, ["jpeg"], "cpu",
        precision="fp32",
    )  # fmt: skip
    exact = psnr(restore(load_model(tmp_path / "m.pth")[0], degraded_image, "cpu"), target)
    assert fp32[fp32.image == "dead_leaves_000"].psnr.iloc[0] == pytest.approx(exact)
    assert abs(exact - row.psnr) < 0.05  # bf16 and fp32 agree to a few hundredths of a dB
    assert not runs_in_bf16({**state, "precision": "fp32"}, "model", torch.device("cpu"))  # trained in fp32
    assert not runs_in_bf16({}, "model", torch.device("cpu"))  # published weights: no training precision
    with pytest.raises(ValueError, match="--precision"):
        runs_in_bf16(state, "bf16", torch.device("cpu"))

    # The identity as a model: exactly the PSNR of each degraded file against its clean image.
    identity = evaluate_model(
        "input", {"heldout": (test_dir / "clean" / "manifest.parquet", degraded)}, list(ENTRIES), "cpu"
    )
    assert set(identity.trained_on) == {"input"} and (identity.gain == 0).all()
    for each in identity.itertuples():
        clean_image = io.load_png(test_dir / "clean" / "images" / f"{each.image}.png")
        file = io.load_png(test_dir / "degraded" / each.degradation / "images" / f"{each.image}.png")
        assert each.psnr == each.psnr_input == psnr(file, clean_image)
    merged = table.merge(identity, on=["degradation", "image"], suffixes=("", "_identity"))
    assert (merged.psnr_input == merged.psnr_identity).all()


def test_a_log_file_gets_one_readable_line_per_n_steps_and_the_log_table_as_it_goes(images, tmp_path):
    """Not a terminal (a Slurm job's log): no progress bar, a timestamped line every N steps."""
    recipe = {**RECIPE, "iterations": 60, "checkpoint_every": 30}
    manifest = _write_manifest(tmp_path, images)
    out, resume = tmp_path / "model.pth", tmp_path / "resume.pth"
    log_file = tmp_path / "job.log"
    with open(log_file, "w") as stderr:
        command = _train_command(manifest, recipe, out, resume) + ["--progress-every", "20"]
        assert subprocess.run(command, stderr=stderr, stdout=subprocess.DEVNULL).returncode == 0
    text = log_file.read_text()
    assert "\r" not in text and "it/s]" not in text  # no tqdm bar
    lines = [line for line in text.splitlines() if " train " in line]
    assert [int(line.split("step ")[1].split("/")[0]) for line in lines] == [20, 40, 60]
    for line in lines:
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d train gaussian_noise\+jpeg: step \d+/60 loss \d\.\d{4} "
            r"lr \S+ \d+\.\d\d it/s",
            line,
        ), line


def test_the_log_table_is_written_at_each_checkpoint(images, tmp_path):
    recipe = {**RECIPE, "iterations": 40, "checkpoint_every": 20}
    log_path = tmp_path / "log.parquet"
    partial = train(
        GROUP,
        images,
        ENTRIES,
        recipe,
        0,
        tmp_path / "m.pth",
        tmp_path / "r.pth",
        "cpu",
        stop_after=20,
        log_path=log_path,
    )
    assert log_path.exists() and pd.read_parquet(log_path).step.tolist() == partial.step.tolist() == [10, 20]
