"""Out-of-distribution statistics (grids.selection.statistics), the signature they read, and the unseen benchmark's
degradations (examples/unseen.py): each statistic against a brute-force computation, the
split-conformal threshold's coverage where the truth is known, the monotone drop fit."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import isotonic_regression
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

from grids.archs import MSRResNet
from grids.data import dead_leaves
from grids.features import Signature, descriptor_features, descriptor_layer_features
from grids.ggd import GGD, kl_divergence, log_kl_distance
from grids.selection.conformal import conformal_threshold, split_images
from grids.selection.signatures import image_signature, signature_layers
from grids.selection.statistics import (
    SHRINKAGE,
    References,
    SignatureBank,
    cross_fitted_drops,
    fit_drop,
    fit_statistic,
    predict_drop,
    signature_table,
)

ROOT = Path(__file__).resolve().parents[1]
AB = {"a": "a", "b": "b"}  # degradation -> group: two single-task groups
sys.path.insert(0, str(ROOT / "examples"))
import haze  # noqa: E402
import unseen  # noqa: E402

UNSEEN = {"haze": haze.haze, **{n: getattr(unseen, n) for n in ("rain", "low_light", "colour_cast", "mild_blur")}}


@pytest.mark.parametrize("name", sorted(UNSEEN))
def test_unseen_degradations_are_deterministic(name):
    image = dead_leaves(64, np.random.default_rng(0))
    out, params = UNSEEN[name](image, np.random.default_rng(5))
    again, same = UNSEEN[name](image, np.random.default_rng(5))
    other, _ = UNSEEN[name](image, np.random.default_rng(6))
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, again)
    assert params == same and not np.array_equal(out, other)
    assert not np.array_equal(out, image)


def test_unseen_degradations_do_what_they_say():
    image = np.full((64, 64, 3), 128, np.uint8)
    dark, p = unseen.low_light(image, np.random.default_rng(0))
    assert dark.mean() == pytest.approx(128 * p["exposure"], rel=0.1)
    cast, p = unseen.colour_cast(image, np.random.default_rng(0))
    r, g, b = cast.reshape(-1, 3).mean(axis=0)
    assert g == 128 and (r > g > b if p["warm"] else r < g < b)
    rainy, _ = unseen.rain(image, np.random.default_rng(0))
    assert (rainy >= image).all() and (rainy > image).mean() > 0.01  # streaks only add light
    edge = np.zeros((32, 32, 3), np.uint8)
    edge[:, 16:] = 255
    soft, p = unseen.mild_blur(edge, np.random.default_rng(0))
    assert 0.8 <= p["sigma"] <= 1.4 and 0 < soft[0, 15, 0] < 255


@pytest.fixture(scope="module")
def tiny_net() -> MSRResNet:
    torch.manual_seed(0)
    return MSRResNet(num_feat=8, num_block=3).eval()


def test_forward_layers_equals_one_layer_at_a_time(tiny_net):
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    layers = ["conv_first", "RB2", "body.0", "conv_last_input"]
    with torch.no_grad():
        maps = tiny_net.forward_layers(x, layers)
        for layer in layers:
            torch.testing.assert_close(maps[layer], tiny_net.forward_features(x, layer), rtol=0, atol=0)
        assert set(tiny_net.forward_layers(x, ["conv_first"])) == {"conv_first"}
    patches = np.random.default_rng(0).integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    rows = descriptor_layer_features(tiny_net, patches, layers, batch_size=2)
    for layer in layers:
        torch.testing.assert_close(rows[layer], descriptor_features(tiny_net, patches, layer, batch_size=2))


def test_signature_holds_every_layer_and_the_method_one(tiny_net):
    features = {"kind": "descriptor", "layer": "conv_last_input", "n_patches": 24, "patch_size": 12}
    features |= {"pca_components": 8, "outlier_stds": None, "distance": "log_kl"}
    image = dead_leaves(48, np.random.default_rng(3))
    signature = image_signature(image, features, tiny_net, 0, "cpu", ["conv_first", "RB3"])
    assert (
        list(signature) == signature_layers(features, ["conv_first", "RB3"]) == ["conv_first", "RB3", "conv_last_input"]
    )
    alone = image_signature(image, features, tiny_net, 0, "cpu")
    assert alone["conv_last_input"] == signature["conv_last_input"]  # the method's GGD does not depend on the others
    assert all(isinstance(signature[k], GGD) for k in signature)  # (alpha, sigma) per layer
    vector = signature.vector(["conv_first", "RB3"])
    expected = [math.log(v) for k in ("conv_first", "RB3") for v in (signature[k].alpha, signature[k].sigma)]
    assert vector.tolist() == pytest.approx(expected, rel=1e-14)  # numpy's log and math.log may differ by an ulp


def test_conformal_threshold_rank():
    scores = np.arange(1.0, 20.0)  # n = 19: rank ceil(20 * 0.95) = 19
    assert conformal_threshold(scores[::-1], 0.05) == 19.0
    assert conformal_threshold(scores, 0.5) == 10.0  # ceil(20 * 0.5) = 10
    assert conformal_threshold(scores[:10], 0.05) == math.inf  # rank 11 > n: no finite threshold


def test_split_conformal_coverage_on_known_distributions():
    """In distribution, 1 - alpha <= coverage <= 1 - alpha + 1/(n + 1) on average over splits
    (continuous scores); a shifted distribution is mostly flagged."""
    alpha, n, trials, covered, flagged = 0.1, 39, 400, [], []
    rng = np.random.default_rng(0)
    for _ in range(trials):
        bank_z = rng.normal(size=(60, 3))
        bank = SignatureBank.fit(bank_z, np.array(["g"] * 60))
        calibration = rng.normal(size=(n, 3))
        limit = conformal_threshold([bank.knn(z) for z in calibration], alpha)
        covered.append(bank.knn(rng.normal(size=3)) <= limit)
        flagged.append(bank.knn(rng.normal(size=3) + 4.0) > limit)
    coverage = np.mean(covered)
    spread = 3 * math.sqrt(0.1 * 0.9 / trials)
    assert 1 - alpha - spread <= coverage <= 1 - alpha + 1 / (n + 1) + spread
    assert np.mean(flagged) > 0.95


def _references(rng) -> pd.DataFrame:
    """Two degradations x 8 images x 2 layers; degradation b sits apart from a."""
    rows = []
    for degradation, shift in (("a", 0.0), ("b", 1.0)):
        for image in range(8):
            for layer in ("L1", "L2"):
                a, s = np.exp(rng.normal(shift, 0.1)), np.exp(rng.normal(0, 0.1))
                rows.append([degradation, f"i{image}", layer, a, s])
    return pd.DataFrame(rows, columns=["degradation", "image", "layer", "alpha", "sigma"])


def test_knn_and_mahalanobis_against_brute_force():
    refs = _references(np.random.default_rng(0))
    sig = Signature({"L1": GGD(1.3, 0.9), "L2": GGD(1.1, 1.2)})
    z_input = np.log([1.3, 0.9, 1.1, 1.2])
    keys, z = signature_table(refs, ["L1", "L2"])
    calibration = keys.image.isin(split_images(list(keys.image), 0)).to_numpy()
    assert calibration.sum() == 8 and keys[calibration].image.nunique() == 4  # half of the ids, every degradation
    proper, groups = z[~calibration], keys.degradation.to_numpy()[~calibration]
    mean, std = proper.mean(axis=0), proper.std(axis=0)
    standard, q = (proper - mean) / std, (z_input - mean) / std
    centred = np.concatenate([standard[groups == g] - standard[groups == g].mean(0) for g in ("a", "b")])
    cov = (1 - SHRINKAGE) * centred.T @ centred / (len(centred) - 2) + SHRINKAGE * np.eye(4)
    expected = {
        "knn": min(np.linalg.norm(q - r) for r in standard),  # the nearest reference of any degradation
        "mahalanobis": min(
            scipy_mahalanobis(q, standard[groups == g].mean(axis=0), np.linalg.inv(cov)) for g in ("a", "b")
        ),
    }
    for name in ("knn", "mahalanobis"):
        statistic = fit_statistic(name, References(rows=refs, group_of=AB, layer="L2", layers=["L1", "L2"], alpha=0.2))
        for group in ("a", "b"):  # the chosen group does not matter: every trained degradation counts
            assert statistic.score(sig, group) == pytest.approx(expected[name], rel=1e-9)
        assert len(statistic.calibration_scores) == 8
        assert statistic.threshold == conformal_threshold(statistic.calibration_scores, 0.2)


def test_paper_and_nearest_statistics_against_brute_force():
    refs = _references(np.random.default_rng(1))
    sets = pd.DataFrame({"group": ["a", "b"], "alpha": [1.0, 2.7], "sigma": [1.0, 1.1]})
    paper = fit_statistic("paper", References(rows=refs, group_of=AB, layer="L2", layers=["L1", "L2"], set_ggds=sets))
    nearest = fit_statistic(
        "nearest",
        References(rows=refs, group_of={"a": "ab", "b": "ab"}, layer="L2", layers=["L1"], set_ggds=sets.iloc[:0]),
    )
    sig = Signature({"L1": GGD(9.0, 9.0), "L2": GGD(1.2, 0.8)})  # paper and nearest read L2 alone
    assert paper.threshold == 4.0
    assert paper.score(sig, "b") == pytest.approx(log_kl_distance(kl_divergence(2.7, 1.1, 1.2, 0.8)))
    l2 = refs[refs.layer == "L2"]
    kl = np.asarray(kl_divergence(l2.alpha.to_numpy(), l2.sigma.to_numpy(), 1.2, 0.8))
    assert nearest.score(sig, "ab") == pytest.approx(log_kl_distance(kl.min()))
    with pytest.raises(ValueError, match="unknown statistic"):
        fit_statistic("vgg", References(rows=refs, group_of={"a": "a"}, layer="L2", layers=["L2"]))
    override = fit_statistic("knn", References(rows=refs, group_of=AB, layer="L2", layers=["L1", "L2"]), threshold=2.5)
    assert override.threshold == 2.5


def test_gain_statistic_is_minus_the_mean_gain_of_the_five_nearest_references():
    refs = _references(np.random.default_rng(2))
    keys, z = signature_table(refs, ["L1", "L2"])
    gains = keys.assign(gain=np.where(keys.degradation == "a", 3.0, 0.1) + np.arange(len(keys)) * 0.01)
    fitted_on = References(
        rows=refs, group_of=AB, layer="L2", layers=["L1", "L2"], alpha=0.2, gains=gains, min_gain=0.5
    )
    statistic = fit_statistic("gain", fitted_on)
    assert statistic.threshold == -0.5 and not statistic.reads_method_layer
    sig = Signature({"L1": GGD(1.3, 0.9), "L2": GGD(1.1, 1.2)})
    standard = (z - z.mean(axis=0)) / z.std(axis=0)
    q = (np.log([1.3, 0.9, 1.1, 1.2]) - z.mean(axis=0)) / z.std(axis=0)
    nearest = np.argsort(np.linalg.norm(standard - q, axis=1))[:5]
    for group in ("a", "b"):  # the chosen group does not matter: the neighbours decide
        assert statistic.score(sig, group) == pytest.approx(-gains.gain.to_numpy()[nearest].mean(), rel=1e-9)
    with pytest.raises(ValueError, match="needs the references' gains"):
        fit_statistic("gain", References(rows=refs, group_of=AB, layer="L2", layers=["L1", "L2"]))


def test_drop_fit_is_monotone_and_exact_on_monotone_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 5, 60)
    y = 0.5 * x + rng.normal(0, 0.7, 60)
    knots = fit_drop(x, y)
    grid = np.linspace(-1, 6, 200)
    assert (np.diff(predict_drop(knots, grid)) >= -1e-12).all()
    order = np.argsort(x)
    blocks = isotonic_regression(y[order]).x  # scipy's fit: each knot holds one block's value
    assert set(np.round(knots["drop"], 9)) == set(np.round(blocks, 9))
    increasing = fit_drop(np.arange(5.0), np.array([0.0, 0.1, 0.5, 0.6, 2.0]))
    np.testing.assert_allclose(predict_drop(increasing, np.arange(5.0)), [0.0, 0.1, 0.5, 0.6, 2.0])
    assert predict_drop(increasing, 10.0) == 2.0 and predict_drop(increasing, -3.0) == 0.0  # flat outside


def test_cross_fitted_drops_never_see_their_image():
    images = np.repeat([f"i{k}" for k in range(6)], 3)
    x = np.tile([0.0, 1.0, 2.0], 6) + np.repeat(np.arange(6) * 0.1, 3)
    y = x * 2
    predicted = cross_fitted_drops(images, x, y, seed=0)
    held = np.isin(images, sorted(split_images(list(images), 0)))
    expected = np.where(
        held, predict_drop(fit_drop(x[~held], y[~held]), x), predict_drop(fit_drop(x[held], y[held]), x)
    )
    np.testing.assert_allclose(predicted, expected)
