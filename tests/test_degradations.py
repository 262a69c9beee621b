"""The 11 degradations: determinism, dtype/shape, parameter ranges and the effect each must have."""

from __future__ import annotations

import io as _io
import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage.restoration import richardson_lucy

from grids.data import dead_leaves
from grids.degradations import BUILTINS, NAMES, get_degradation, kernels, reference


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """A 128x160 textured image (dead leaves) with plenty of high frequencies."""
    return dead_leaves(160, np.random.default_rng(3))[:128]


def flat(value: int, shape=(96, 96)) -> np.ndarray:
    return np.full((*shape, 3), value, np.uint8)


def hf_energy(image: np.ndarray) -> float:
    """Mean squared Laplacian: the high-frequency energy a blur must lower."""
    return float(np.mean(cv2.Laplacian(image.astype(np.float32), cv2.CV_32F) ** 2))


def test_the_papers_eleven_come_first():
    expected = (
        "gaussian_blur motion_blur rl sr ringing defocus_blur jpeg poisson_noise inpainting gaussian_noise salt_pepper"
    )
    assert NAMES[:11] == tuple(expected.split())  # the paper's order; a new built-in goes after them
    assert list(BUILTINS) == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_same_shape(name, texture):
    deg = get_degradation(name)
    out1, p1 = deg(texture, np.random.default_rng(7))
    out2, p2 = deg(texture, np.random.default_rng(7))
    assert out1.dtype == np.uint8 and out1.shape == texture.shape
    assert p1 == p2 and out1.tobytes() == out2.tobytes()
    assert not np.array_equal(out1, texture), "the degradation changed nothing"


@pytest.mark.parametrize("name", ["motion_blur", "sr", "defocus_blur", "jpeg", "inpainting", "gaussian_noise"])
def test_other_seed_other_result(name, texture):
    deg = get_degradation(name)
    out1, _ = deg(texture, np.random.default_rng(1))
    out2, _ = deg(texture, np.random.default_rng(2))
    assert not np.array_equal(out1, out2)


@pytest.mark.parametrize("name", NAMES)
def test_drawn_parameters_inside_configured_ranges(name):
    deg = get_degradation(name)
    rng = np.random.default_rng(0)
    for _ in range(200):
        params = deg.sample(rng, (100, 120))
        if name == "inpainting":
            assert 5 <= len(params["strokes"]) <= 10
            for s in params["strokes"]:
                assert 5 <= s["thickness"] <= 10 and 2 <= len(s["points"]) <= 5 and s["value"] in (0, 1)
                assert all(0 <= x < 120 and 0 <= y < 100 for x, y in s["points"])
            continue
        for key, spec in deg.params.items():
            value, configured = params[key], deg.config[key]
            assert isinstance(value, spec.kind)
            low, high = configured if isinstance(configured, (list, tuple)) else (configured, configured)
            assert low <= value <= high, (key, value, configured)


def test_integer_ranges_reach_both_ends():
    deg = get_degradation("jpeg", {"quality": [10, 12]})
    seen = {deg.sample(np.random.default_rng(i), (8, 8))["quality"] for i in range(100)}
    assert seen == {10, 11, 12}


def test_configured_values_override_defaults():
    deg = get_degradation("gaussian_blur", {"sigma": 1.5})
    assert deg.sample(np.random.default_rng(0), (8, 8)) == {"kernel_size": 15, "sigma": 1.5}
    with pytest.raises(ValueError, match="inverted range"):
        get_degradation("gaussian_blur", {"sigma": [3, 2]})
    with pytest.raises(ValueError, match="no odd integer"):
        get_degradation("gaussian_blur", {"kernel_size": [4, 4]})
    with pytest.raises(ValueError, match="unknown parameter"):
        get_degradation("gaussian_blur", {"sigmaa": 2})


# --- kernels against independent constructions ----------------------------------------------


@pytest.mark.parametrize("sigma", [0.8, 2.0, 3.7])
def test_gaussian_kernel_matches_opencv(sigma):
    g = cv2.getGaussianKernel(15, sigma, cv2.CV_64F)
    np.testing.assert_allclose(kernels.gaussian_kernel(15, sigma), g @ g.T, atol=1e-7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: kernels.motion_kernel(13.3, 37.0),
        lambda: kernels.disk_kernel(2.6),
        lambda: kernels.sinc_kernel(1.2, 15, 21),
    ],
)
def test_kernels_normalised_and_point_symmetric(make):
    k = make()
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-5)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)  # so correlation == convolution


def test_sinc_kernel_rings():
    k = kernels.sinc_kernel(1.2, 15, 21)
    assert k.shape == (21, 21) and k.min() < 0  # negative lobes are what makes ringing
    assert np.all(k[:3] == 0)  # zero-padded from 15 to 21
    np.testing.assert_allclose(k, k.T, atol=1e-8)


def test_disk_kernel_area():
    k = kernels.disk_kernel(3.0)
    support = (k > 0).sum()
    assert abs(support - math.pi * 9) < 12  # pixels touched ~ disk area (+ anti-aliased rim)


def test_motion_kernel_follows_angle():
    horizontal = kernels.motion_kernel(15, 0)
    vertical = kernels.motion_kernel(15, 90)
    c = horizontal.shape[0] // 2
    assert horizontal[c].sum() > 0.95 and vertical[:, c].sum() > 0.95


# --- the effect each degradation must have ---------------------------------------------------


@pytest.mark.parametrize("name", ["gaussian_blur", "motion_blur", "rl", "sr", "ringing", "defocus_blur"])
def test_blurs_lower_high_frequency_energy(name, texture):
    out, _ = get_degradation(name)(texture, np.random.default_rng(0))
    assert hf_energy(out) < 0.6 * hf_energy(texture)


def test_motion_blur_is_directional(texture):
    out = reference.motion_blur(texture, {"length": 15, "angle": 0.0})
    dx = np.abs(np.diff(out.astype(float), axis=1)).mean() / np.abs(np.diff(texture.astype(float), axis=1)).mean()
    dy = np.abs(np.diff(out.astype(float), axis=0)).mean() / np.abs(np.diff(texture.astype(float), axis=0)).mean()
    assert dx < 0.5 * dy  # horizontal motion removes horizontal gradients far more


def test_rl_equals_scikit_image(texture):
    params = {"psf_size": 5, "iterations": 1, "pad": 7}
    x = texture.astype(np.float32) / 255
    expected = np.stack(
        [
            richardson_lucy(np.pad(x[..., c], 7, mode="linear_ramp"), kernels.box_kernel(5), num_iter=1)[7:-7, 7:-7]
            for c in range(3)
        ],
        axis=-1,
    )
    out = reference.rl(texture, params)
    assert np.abs(out.astype(float) - expected * 255).max() <= 0.5 + 1e-3


def test_sr_at_scale_one_is_identity(texture):
    assert np.array_equal(reference.sr(texture, {"scale": 1.0}), texture)


def test_gaussian_noise_sigma_is_measured():
    out, params = get_degradation("gaussian_noise")(flat(128, (200, 200)), np.random.default_rng(4))
    measured = (out.astype(float) - 128).std()
    assert abs(measured - params["sigma"]) < 0.03 * params["sigma"]


def test_poisson_noise_variance_follows_intensity():
    for value in (64, 192):
        out, params = get_degradation("poisson_noise")(flat(value, (200, 200)), np.random.default_rng(5))
        x = value / 255
        expected_std = math.sqrt(x / params["peak"]) * 255
        assert abs((out.astype(float) - value).std() - expected_std) < 0.05 * expected_std
        assert abs(out.astype(float).mean() - value) < 1.0  # unbiased


def test_salt_pepper_hits_five_percent_half_white():
    image = flat(128, (100, 100))
    out, _ = get_degradation("salt_pepper")(image, np.random.default_rng(6))
    changed = np.any(out != image, axis=2)
    assert changed.sum() == 500
    assert (out[changed] == 255).all(axis=1).sum() == 250 and (out[changed] == 0).all(axis=1).sum() == 250


def test_inpainting_strokes_are_white_or_black(texture):
    out, params = get_degradation("inpainting")(texture, np.random.default_rng(8))
    changed = np.any(out != texture, axis=2)
    assert changed.mean() > 0.01
    values = out[changed]
    assert np.all((values == 0).all(axis=1) | (values == 255).all(axis=1))
    assert {s["value"] for s in params["strokes"]} <= {0, 1}


def _ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """The IJG (libjpeg) quantisation table for ``quality``: what an encoder at that quality writes."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


IJG_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ]
)  # ITU T.81 Annex K, table K.1, row-major


@pytest.mark.parametrize("seed", range(4))
def test_jpeg_quality_matches_the_encoder(seed, texture):
    deg = get_degradation("jpeg")
    out, params = deg(texture, np.random.default_rng(seed))
    data = reference.jpeg_encode(texture, params["quality"])
    with Image.open(_io.BytesIO(data)) as im:
        luma = np.array(im.quantization[0])  # Pillow returns the table in natural (row-major) order
        assert np.array_equal(np.asarray(im.convert("RGB")).shape, texture.shape)
    assert np.array_equal(luma, _ijg_table(IJG_LUMA, params["quality"]))
    assert np.array_equal(out, reference.jpeg_decode(data))


def test_lower_jpeg_quality_loses_more(texture):
    err = [np.abs(reference.jpeg(texture, {"quality": q}).astype(float) - texture).mean() for q in (10, 40, 90)]
    assert err[0] > err[1] > err[2]


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="uint8"):
        get_degradation("jpeg")(np.zeros((8, 8), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        get_degradation("jpeg")(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))


def test_unknown_degradation_names_builtins():
    with pytest.raises(KeyError, match="gaussian_blur"):
        get_degradation("gausian_blur")


@pytest.mark.parametrize("block_pixels", [1, 100, 1 << 20])
def test_noise_drawn_by_row_blocks_equals_one_draw_over_the_whole_image(monkeypatch, block_pixels):
    """The noise ops work a block of rows at a time (memory on huge images); the output is the one
    whole-image formula's, bit for bit, whatever the block size."""
    from grids.degradations import reference

    monkeypatch.setattr(reference, "BLOCK_PIXELS", block_pixels)
    image = np.random.default_rng(1).integers(0, 256, (53, 29, 3), dtype=np.uint8)
    x = image.astype(np.float32) / 255.0
    noise = np.random.default_rng(2).standard_normal(image.shape, dtype=np.float32) * (17.0 / 255.0)
    whole = np.clip(np.rint((x + noise) * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(reference.gaussian_noise(image, {"sigma": 17.0}, np.random.default_rng(2)), whole)
    shot = np.random.default_rng(3).poisson(x * 20.0).astype(np.float32) / 20.0
    whole = np.clip(np.rint(shot * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(reference.poisson_noise(image, {"peak": 20.0}, np.random.default_rng(3)), whole)


def test_a_composite_is_its_parts_in_sequence_and_deterministic():
    """CDD-11-style composites: the parts applied in order from one generator."""
    from grids.degradations import Composite

    entry = {
        "compose": [
            {"name": "gaussian_blur", "entry": {"kernel_size": 15, "sigma": [2.0, 4.0]}},
            {"name": "gaussian_noise", "entry": {"sigma": [10.0, 50.0]}},
        ]
    }
    composite = get_degradation("noisy_blur", entry)
    assert isinstance(composite, Composite)
    image = dead_leaves(64, np.random.default_rng(0))
    out, params = composite(image, np.random.default_rng(7))
    again, same = composite(image, np.random.default_rng(7))
    assert np.array_equal(out, again) and params == same
    rng = np.random.default_rng(7)
    blurred, first = get_degradation("gaussian_blur", entry["compose"][0]["entry"])(image, rng)
    expected, second = get_degradation("gaussian_noise", entry["compose"][1]["entry"])(blurred, rng)
    assert np.array_equal(out, expected)
    assert params == {"gaussian_blur": first, "gaussian_noise": second}
    json.dumps(params)  # the degraded manifest stores them as JSON
