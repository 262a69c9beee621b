"""The expected gain (grids.selection.gain): neighbours' mean, out-of-fold conformal interval, its coverage,
and the reference-gain table from evaluation rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from grids import tables
from grids.selection.gain import GainModel, fit_gain_model, reference_gains


def two_clusters(n_images: int = 10, seed: int = 0):
    """Two degradations far apart in a 2-D signature space: one always helped (~3 dB), one never (~0 dB)."""
    rng = np.random.default_rng(seed)
    images = np.array([f"img{i}" for i in range(n_images)] * 2)
    z = np.concatenate([rng.normal(0, 0.1, (n_images, 2)), rng.normal(5, 0.1, (n_images, 2))])
    gains = np.concatenate([rng.normal(3.0, 0.3, n_images), rng.normal(0.0, 0.05, n_images)])
    return z, gains, images


def test_prediction_is_the_mean_of_the_nearest_references_by_hand():
    z = np.array([[0.0], [1.0], [2.0], [10.0]])
    model = GainModel.fit(z, np.array([1.0, 2.0, 3.0, 9.0]), np.array(["a", "b", "c", "d"]), alpha=0.5, k=2)
    # standardised by mean 3.25 and std: the input 0.4 lies nearest to 0 and 1
    expected, low, high = model.predict(np.array([0.4]))
    assert expected == pytest.approx(1.5)
    # out of fold (k = 2, other images): a <- b, c: 2.5; b <- a, c: 2.0; c <- b, a: 1.5; d <- c, b: 2.5
    # errors 1.5, 0, 1.5, 6.5; alpha 0.5 with n = 4: the ceil(5 * 0.5) = 3rd smallest, 1.5
    assert model.q == pytest.approx(1.5)
    assert (low, high) == pytest.approx((0.0, 3.0))


def test_out_of_fold_leaves_out_every_copy_of_the_same_clean_image():
    # Reference i's neighbours may not be its own image under another degradation: with k = 1 and
    # two copies of each image side by side, a leak would give zero error (q = 0).
    z = np.array([[0.0], [0.01], [1.0], [1.01], [2.0], [2.01]])
    gains = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    images = np.array(["a", "a", "b", "b", "c", "c"])
    model = GainModel.fit(z, gains, images, alpha=0.3, k=1)
    assert model.q == pytest.approx(1.0)  # every image's nearest other image is 1 dB away


def test_the_interval_covers_new_draws_at_its_level():
    z, gains, images = two_clusters(n_images=40)
    model = GainModel.fit(z, gains, images, alpha=0.1)
    new_z, new_gains, _ = two_clusters(n_images=200, seed=1)
    predictions = np.array([model.predict(x) for x in new_z])
    covered = (new_gains >= predictions[:, 1]) & (new_gains <= predictions[:, 2])
    assert covered.mean() >= 0.85
    helped, never = predictions[:200], predictions[200:]
    assert np.all(np.abs(helped[:, 0] - 3.0) < 0.6) and np.all(np.abs(never[:, 0]) < 0.2)


def test_too_few_images_are_refused():
    with pytest.raises(ValueError, match="at least two clean images"):
        GainModel.fit(np.zeros((3, 2)), np.zeros(3), np.array(["a", "a", "a"]), alpha=0.1)


def test_reference_gains_from_evaluation_rows():
    groups = pd.DataFrame({"degradation": ["jpeg", "sr", "noise"], "group": ["jpeg+sr", "jpeg+sr", "noise"]})

    def rows(model, psnr):
        return [
            {"trained_on": model, "test_set": "references", "degradation": d, "image": i, "psnr": p}
            for (d, i), p in psnr.items()
        ]

    evaluation = pd.DataFrame(
        rows("input", {("jpeg", "a"): 20.0, ("sr", "a"): 25.0, ("noise", "a"): 18.0})
        + rows("jpeg+sr", {("jpeg", "a"): 21.0, ("sr", "a"): 27.5})
        + rows("noise", {("noise", "a"): 24.0})
    )
    table = reference_gains(evaluation, groups)
    tables.check(table, "selection_reference_gains")
    assert table.set_index("degradation").gain.to_dict() == {"jpeg": 1.0, "noise": 6.0, "sr": 2.5}
    assert table.set_index("degradation").group.to_dict() == {"jpeg": "jpeg+sr", "noise": "noise", "sr": "jpeg+sr"}
    with pytest.raises(ValueError, match=r"no reference evaluation of \['noise'\]"):
        reference_gains(evaluation[evaluation.trained_on != "noise"], groups)


def test_fit_gain_model_keeps_the_references_it_has_gains_for():
    keys = pd.DataFrame({"degradation": ["jpeg"] * 3 + ["sr"] * 3, "image": ["a", "b", "c"] * 2})
    z = np.arange(12, dtype=float).reshape(6, 2)
    gains = pd.DataFrame({"degradation": ["jpeg"] * 3, "image": ["a", "b", "c"], "gain": [1.0, 2.0, 3.0]})
    model = fit_gain_model(keys, z, gains, alpha=0.3)
    assert len(model.z) == 3 and model.gains.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="covers none"):
        fit_gain_model(keys, z, gains.assign(degradation="x"), alpha=0.3)
