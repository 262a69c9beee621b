"""The trained routers (grids.selection.routers): seeded and deterministic, they learn what they should, and
the comparison table equals a hand computation."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from grids import io, tables
from grids.data import dead_leaves
from grids.selection.routers import (
    CNNRouter,
    LogisticRouter,
    compare_routers,
    held_out_ids,
    router_images,
    training_images,
)

FAST = {"steps": 12, "batch": 4, "crop": 24, "test_crops": 4}  # determinism only


def separable(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three groups of 20 signatures around well-separated centres in 4 dimensions."""
    rng = np.random.default_rng(seed)
    centres = {"a": [0, 0, 0, 0], "b": [4, 0, -2, 1], "c": [0, 5, 1, -3]}
    z = np.concatenate([np.asarray(c, float) + 0.5 * rng.standard_normal((20, 4)) for c in centres.values()])
    return z + [1.0, -3.0, 10.0, 0.2], np.repeat(list(centres), 20)  # shifted: the router standardises


def test_logistic_recovers_separable_labels():
    z, labels = separable()
    router = LogisticRouter.fit(z, labels, seed=0)
    assert router.groups == ["a", "b", "c"]
    p = router.predict_proba(z)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (np.array(router.groups)[p.argmax(axis=1)] == labels).all()
    held, held_labels = separable(seed=1)  # new draws around the same centres
    assert (np.array(router.groups)[router.predict_proba(held).argmax(axis=1)] == held_labels).mean() >= 0.95


def test_logistic_is_deterministic_under_a_seed():
    z, labels = separable()
    a, b, c = (LogisticRouter.fit(z, labels, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.predict_proba(z), b.predict_proba(z))
    # another seed starts elsewhere; the loss is convex, so it ends at the same optimum up to L-BFGS's tolerance
    assert not np.array_equal(a.weight, c.weight)
    np.testing.assert_allclose(a.predict_proba(z), c.predict_proba(z), atol=1e-4)


def noisy_and_blurred(n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[str], list[str]]:
    """``n`` dead-leaves images with Gaussian noise and ``n`` others blurred, with their labels and
    clean image ids (the k-th noisy and blurred images share id ``k``, as degraded copies do)."""
    rng = np.random.default_rng(seed)
    noisy = [
        np.clip(dead_leaves(size, rng) + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(n)
    ]
    blurred = [cv2.GaussianBlur(dead_leaves(size, rng), (0, 0), 2.0) for _ in range(n)]
    ids = [f"i{k}" for k in range(n)] * 2
    return noisy + blurred, ["noise"] * n + ["blur"] * n, ids


def weights(router: CNNRouter) -> list[np.ndarray]:
    return [v.detach().numpy().copy() for v in router.model.state_dict().values()]


def test_cnn_is_deterministic_under_a_seed():
    images, labels, ids = noisy_and_blurred(2, 40, seed=0)
    (a, curve_a), (b, curve_b), (c, _) = (CNNRouter.fit(images, labels, ids, seed=s, **FAST) for s in (3, 3, 4))
    pd.testing.assert_frame_equal(curve_a, curve_b)
    for x, y in zip(weights(a), weights(b)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.predict_proba(images[0]), b.predict_proba(images[0]))
    assert any(not np.array_equal(x, y) for x, y in zip(weights(a), weights(c)))
    assert not np.array_equal(a.predict_proba(images[0]), c.predict_proba(images[0]))


def test_cnn_tells_noise_from_blur():
    images, labels, ids = noisy_and_blurred(5, 64, seed=0)
    router, curve = CNNRouter.fit(
        images, labels, ids, seed=0, steps=80, batch=16, crop=32, test_crops=8, check_every=20
    )
    tables.check(curve, "selection_router_curve")
    assert curve.step.tolist() == [20, 40, 60, 80] and curve.val_loss.notna().all()
    held, truth, _ = noisy_and_blurred(6, 48, seed=1)  # other images, smaller than the training ones
    chosen = [router.groups[router.predict_proba(image).argmax()] for image in held]
    assert np.mean(np.array(chosen) == truth) >= 0.75  # chance: 0.5


def test_cnn_stops_at_its_plateau_and_keeps_its_best_checkpoint():
    """With a learning rate of 0 nothing improves after the first check: it stops after
    `patience` more checks, far below its step budget, and keeps the first check's weights."""
    images, labels, ids = noisy_and_blurred(3, 40, seed=0)
    settings = {**FAST, "steps": 1000, "check_every": 5, "patience": 2, "lr": 0.0}
    router, curve = CNNRouter.fit(images, labels, ids, seed=1, **settings)
    assert curve.step.tolist() == [5, 10, 15] and curve.best.tolist() == [True, False, False]
    fresh, _ = CNNRouter.fit(images, labels, ids, seed=1, **{**settings, "steps": 5})
    for x, y in zip(weights(router), weights(fresh)):
        np.testing.assert_array_equal(x, y)


def test_held_out_ids_take_whole_clean_images():
    held = held_out_ids([f"i{k}" for k in range(10)] * 3, 0.2, seed=0)
    assert len(held) == 2 and held == held_out_ids([f"i{k}" for k in range(10)], 0.2, seed=0)
    assert held_out_ids(["a", "a"], 0.5, 0) == set() and len(held_out_ids(["a", "b"], 0.9, 0)) == 1


def test_training_images_label_the_clean_set_as_the_identity(tmp_path):
    clean = pd.DataFrame({"image_id": ["x"], "path": [str(tmp_path / "x.png")]})
    io.write_png(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8))
    clean.to_parquet(tmp_path / "clean.parquet")
    groups = pd.DataFrame({"degradation": ["clean"], "group": ["identity"]})
    images, labels, ids = training_images([str(tmp_path / "clean.parquet")], groups)
    assert labels == ["identity"] and ids == ["x"] and images[0].shape == (8, 8, 3)


def eval_rows(model: str, psnr: dict[tuple[str, str], float]) -> list[dict]:
    return [
        {"trained_on": model, "test_set": "t", "degradation": d, "image": i, "psnr": p} for (d, i), p in psnr.items()
    ]


def small_case() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Groups jpeg and noise; images jpeg/a, jpeg/b (seen) and haze/c (unseen); three routers."""
    groups = pd.DataFrame({"degradation": ["jpeg", "gaussian_noise"], "group": ["jpeg", "noise"]})
    evaluation = pd.DataFrame(
        eval_rows("input", {("jpeg", "a"): 20.0, ("jpeg", "b"): 30.0, ("haze", "c"): 15.0})
        + eval_rows("jpeg", {("jpeg", "a"): 22.0, ("jpeg", "b"): 30.2, ("haze", "c"): 14.0})
        + eval_rows("noise", {("jpeg", "a"): 21.0, ("jpeg", "b"): 30.1, ("haze", "c"): 16.5})
    )
    keys = pd.DataFrame({"test_set": "t", "degradation": ["jpeg", "jpeg", "haze"], "image": ["a", "b", "c"]})
    keys["seen"] = [True, True, False]
    choices = {  # router -> (chosen groups, confidences, seconds)
        "grids": (["jpeg", "noise", "jpeg"], [1.0, 3.0, 2.0], 0.5),
        "logistic": (["jpeg", "jpeg", "noise"], [0.9, 0.6, 0.7], 0.5),
        "cnn": (["noise", "jpeg", "jpeg"], [0.8, 0.9, 0.4], 0.1),
    }
    frames = [
        keys.assign(router=name, chosen_group=chosen, confidence=confidence, seconds=seconds)
        for name, (chosen, confidence, seconds) in choices.items()
    ]
    return groups, evaluation, pd.concat(frames, ignore_index=True)


def test_router_images_read_the_evaluation():
    groups, evaluation, choices = small_case()
    images = router_images(choices, evaluation, groups, min_gain=0.5)
    tables.check(images, "selection_router_images")
    assert images.router.tolist() == ["grids"] * 3 + ["logistic"] * 3 + ["cnn"] * 3 + ["oracle"] * 3
    assert images.true_group.tolist()[:3] == ["jpeg", "jpeg", ""]
    grids = images[images.router == "grids"]
    assert grids.psnr.tolist() == [22.0, 30.1, 14.0]
    np.testing.assert_allclose(grids.gain, [2.0, 0.1, -1.0])
    assert grids.fails.tolist() == [False, True, True]
    oracle = images[images.router == "oracle"]
    assert oracle.chosen_group.tolist() == ["jpeg", "jpeg", "noise"] and oracle.psnr.tolist() == [22.0, 30.2, 16.5]
    assert oracle.fails.tolist() == [False, True, False] and oracle.confidence.isna().all()


def test_an_image_without_the_chosen_model_s_evaluation_is_named():
    groups, evaluation, choices = small_case()
    evaluation = evaluation[~((evaluation.trained_on == "noise") & (evaluation.image == "c"))]
    with pytest.raises(ValueError, match=r"no evaluation of 'noise' .* t/haze/c"):
        router_images(choices, evaluation, groups, min_gain=0.5)


def test_comparison_equals_a_hand_computation():
    groups, evaluation, choices = small_case()
    summary = compare_routers(router_images(choices, evaluation, groups, min_gain=0.5))
    tables.check(summary, "selection_routers")
    summary = summary.set_index("router")
    assert summary.index.tolist() == ["grids", "logistic", "cnn", "oracle"] and (summary.n == 3).all()
    # true groups: a, b -> jpeg; oracle: jpeg, jpeg, noise
    assert summary.accuracy_seen.tolist() == [0.5, 1.0, 0.5, 1.0]
    np.testing.assert_allclose(summary.oracle_agreement, [1 / 3, 1.0, 1 / 3, 1.0])
    # PSNR lost per image: grids (0, 0.1, 2.5), logistic (0, 0, 0), cnn (1, 0, 2.5)
    np.testing.assert_allclose(summary.psnr_lost, [2.6 / 3, 0.0, 3.5 / 3, 0.0])
    np.testing.assert_allclose(summary.psnr_lost_seen, [0.05, 0.0, 0.5, 0.0])
    np.testing.assert_allclose(summary.psnr_lost_unseen, [2.5, 0.0, 2.5, 0.0])
    assert summary.psnr_lost_clean.isna().all()  # no clean test image here
    np.testing.assert_allclose(
        summary.mean_psnr, [(22 + 30.1 + 14) / 3, (22 + 30.2 + 16.5) / 3, (21 + 30.2 + 14) / 3, 68.7 / 3]
    )
    # fails (gain < 0.5): grids (F, T, T); logistic (F, T, F); cnn (F, T, T); oracle (F, T, F)
    assert summary.n_fails.tolist() == [2, 1, 2, 1]
    # AUROC of the risk (grids: score 1, 3, 2; routers: 1 - confidence) for failing over helped
    assert summary.failure_auroc["grids"] == 1.0  # both failures (3, 2) above the helped image (1)
    assert summary.failure_auroc["logistic"] == 1.0  # risk 0.4 (b, fails) against 0.1 and 0.3
    assert summary.failure_auroc["cnn"] == 0.5  # risk 0.1, 0.6 (fail) against 0.2 (helped): one pair of two
    assert np.isnan(summary.failure_auroc["oracle"])
    np.testing.assert_allclose(summary.seconds_per_image[["grids", "logistic", "cnn"]], [0.5, 0.5, 0.1])
    assert np.isnan(summary.seconds_per_image["oracle"])


@pytest.mark.parametrize("column", ["psnr_lost_seen", "psnr_lost_unseen"])
def test_a_test_set_without_seen_or_unseen_images_has_nan(column):
    groups, evaluation, choices = small_case()
    keep = choices.seen if column == "psnr_lost_seen" else ~choices.seen
    summary = compare_routers(router_images(choices[keep], evaluation, groups, min_gain=0.5))
    other = "psnr_lost_unseen" if column == "psnr_lost_seen" else "psnr_lost_seen"
    assert summary[other].isna().all() and summary[column].notna().all()


def test_test_sets_keep_the_report_s_order():
    groups, evaluation, choices = small_case()
    other = {"test_set": "a_set"}
    images = router_images(
        pd.concat([choices, choices.assign(**other)], ignore_index=True),
        pd.concat([evaluation, evaluation.assign(**other)], ignore_index=True),  # a unique index, as read_parquets'
        groups,
        0.5,
    )
    assert images.test_set.tolist() == ["t"] * 12 + ["a_set"] * 12
    assert images.router.tolist()[:12] == images.router.tolist()[12:]
    assert compare_routers(images).test_set.tolist() == ["t"] * 4 + ["a_set"] * 4
