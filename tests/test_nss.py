"""Natural-scene statistics (grids/nss.py): the pixel-level layers of a selection signature."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from scipy.ndimage import gaussian_filter

from grids.features import Signature
from grids.ggd import fit_ggd
from grids.nss import FLAT, NSS, NSS_LAYERS, expand_layers, mscn, nss_ggds


def photo() -> np.ndarray:
    return skimage.data.astronaut()[:192, :192]


def test_layer_names_and_their_expansion():
    assert len(NSS_LAYERS) == 18 and len(set(NSS_LAYERS)) == 18
    assert NSS_LAYERS[:3] == ("nss0", "nss0_h-", "nss0_h+") and NSS_LAYERS[9] == "nss1"
    assert expand_layers(["conv_first", NSS, "RB16"]) == ["conv_first", *NSS_LAYERS, "RB16"]
    assert expand_layers(["RB16"]) == ["RB16"]


def test_the_fits_by_hand():
    """MSCN as BRISQUE defines it, the horizontal products' halves mirrored, and the second scale
    the 2x2 block means: each fit equal to grids.ggd's on values computed here."""
    image = photo()
    gray = image.astype(np.float64).mean(axis=2)
    mu = gaussian_filter(gray, 7 / 6, truncate=3.0)
    sd = np.sqrt(np.abs(gaussian_filter(gray**2, 7 / 6, truncate=3.0) - mu**2))
    coefficients = (gray - mu) / (sd + 1)
    np.testing.assert_allclose(mscn(gray), coefficients)
    product = coefficients[1:-1, 1:-1] * coefficients[1:-1, :-2]  # each pixel times its left neighbour
    positive = product[product >= 0]
    fits = nss_ggds(image)
    assert fits["nss0"] == fit_ggd(coefficients, outlier_stds=None)
    want = fit_ggd(np.concatenate([positive, -positive]), outlier_stds=None)
    assert fits["nss0_h+"].alpha == pytest.approx(want.alpha) and fits["nss0_h+"].sigma == pytest.approx(want.sigma)
    half = gray.reshape(96, 2, 96, 2).mean(axis=(1, 3))
    assert fits["nss1"] == fit_ggd(mscn(half), outlier_stds=None)


def test_blur_narrows_and_noise_widens_the_coefficients():
    image = photo()
    blurred = np.stack([gaussian_filter(image[..., c].astype(float), 2.0) for c in range(3)], axis=2)
    noisy = image + np.random.default_rng(0).normal(0, 25, image.shape)
    clean, blur, noise = (nss_ggds(np.clip(x, 0, 255).round().astype(np.uint8)) for x in (image, blurred, noisy))
    assert blur["nss0"].sigma < clean["nss0"].sigma < noise["nss0"].sigma
    # blur correlates neighbours: their products lean positive (the positive half wider than the negative)
    lean = {name: fits["nss0_h+"].sigma / fits["nss0_h-"].sigma for name, fits in (("clean", clean), ("blur", blur))}
    assert lean["blur"] > lean["clean"]


def test_a_flat_or_tiny_image_gets_flat_fits_not_an_error():
    for image in (np.full((40, 40, 3), 128, np.uint8), np.zeros((3, 3, 3), np.uint8)):
        fits = nss_ggds(image)
        assert set(fits) == set(NSS_LAYERS) and fits["nss1"] == FLAT
        assert np.isfinite(Signature(fits).vector([NSS])).all()


def test_the_signature_vector_reads_nss_as_its_18_layers():
    fits = nss_ggds(photo())
    vector = Signature(fits).vector([NSS])
    assert vector.shape == (36,)
    assert vector[:2].tolist() == pytest.approx([np.log(fits["nss0"].alpha), np.log(fits["nss0"].sigma)])
