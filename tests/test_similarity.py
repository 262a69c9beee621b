"""Features -> PCA -> GGD -> log-KL matrix, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from grids import tables
from grids.archs import MSRResNet
from grids.config import DEFAULT_FEATURES
from grids.data import dead_leaves
from grids.degradations import get_degradation
from grids.features import crop_patches, descriptor_features, flip_signs, patch_boxes, pca_scores, set_ggd
from grids.ggd import kl_divergence
from grids.similarity import build_matrix, cluster_order, similarity_table, wide_matrix

# A complete features section, as the stages' main() fill it in (grids.config.config_section).
FEATURES = {
    **DEFAULT_FEATURES,
    "kind": "descriptor",
    "layer": "conv_last_input",
    "n_patches": 24,
    "patch_size": 8,
    "pca_components": 10,
}


@pytest.fixture(scope="module")
def tiny_net() -> MSRResNet:
    torch.manual_seed(0)
    return MSRResNet(num_feat=8, num_block=2).eval()


@pytest.fixture(scope="module")
def clean_set() -> dict[str, np.ndarray]:
    return {f"img{i}": dead_leaves(48, np.random.default_rng(i)) for i in range(3)}


def degraded(images: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    deg = get_degradation(name)
    return {k: deg(v, np.random.default_rng(1))[0] for k, v in images.items()}


def test_pca_equals_direct_svd_up_to_sign():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((40, 300)) * np.linspace(3, 0.1, 300)).astype(np.float32)
    centred = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)  # what sklearn's PCA(svd_solver="full") does
    expected = u[:, :12] * s[:12]
    got = pca_scores(torch.from_numpy(x.copy()), 12).numpy()
    signs = np.sign((got * expected).sum(axis=0))
    np.testing.assert_allclose(got * signs, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # and with the sign convention fixed (largest |u| entry positive) it is the same matrix
    np.testing.assert_allclose(got, flip_signs(u[:, :12]) * s[:12], rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    largest = np.abs(got).argmax(axis=0)
    assert (got[largest, range(12)] > 0).all()


def test_pca_rejects_too_many_components():
    with pytest.raises(ValueError, match="n_patches - 1"):
        pca_scores(torch.zeros(10, 50), 10)


def test_patch_boxes_seeded_in_bounds_and_order_free():
    sizes = {"a": (40, 60), "b": (100, 30), "c": (16, 16)}
    boxes = patch_boxes(sizes, 200, 16, seed=3)
    assert boxes == patch_boxes(dict(reversed(list(sizes.items()))), 200, 16, seed=3)
    assert boxes != patch_boxes(sizes, 200, 16, seed=4)
    for image_id, y, x in boxes:
        h, w = sizes[image_id]
        assert 0 <= y <= h - 16 and 0 <= x <= w - 16
    counts = pd.Series([b[0] for b in boxes]).value_counts()
    assert counts["b"] > counts["a"] > counts.get("c", 0)  # proportional to positions: 85x15, 25x45, 1
    with pytest.raises(ValueError, match="smaller than the 20 px patch"):
        patch_boxes(sizes, 10, 20, seed=0)


def test_features_are_per_patch_and_batch_invariant(tiny_net, clean_set):
    boxes = patch_boxes({k: v.shape[:2] for k, v in clean_set.items()}, 10, 8, seed=0)
    patches = crop_patches(clean_set, boxes, 8)
    rows = descriptor_features(tiny_net, patches, batch_size=3)
    assert rows.shape == (10, 8 * 32 * 32) and rows.dtype == torch.float32
    x = torch.from_numpy(patches[4:5]).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(
        rows[4].numpy(), tiny_net.forward_features(x).reshape(-1).detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_set_ggd_deterministic_and_separates_degradations(tiny_net, clean_set):
    fit_a, n = set_ggd(clean_set, FEATURES, seed=0, model=tiny_net)
    fit_b, _ = set_ggd(clean_set, FEATURES, seed=0, model=tiny_net)
    assert fit_a == fit_b and n == 24 * 10
    noisy, _ = set_ggd(degraded(clean_set, "gaussian_noise"), FEATURES, seed=0, model=tiny_net)
    blurred, _ = set_ggd(degraded(clean_set, "gaussian_blur"), FEATURES, seed=0, model=tiny_net)
    d_noise = kl_divergence(noisy.alpha, noisy.sigma, fit_a.alpha, fit_a.sigma)
    d_blur_noise = kl_divergence(blurred.alpha, blurred.sigma, noisy.alpha, noisy.sigma)
    assert d_noise > 0 and d_blur_noise > 0


def test_sift_ablation_runs(clean_set):
    fit, n = set_ggd(clean_set, {**FEATURES, "kind": "sift", "n_patches": 60}, seed=0)
    assert math.isfinite(fit.alpha) and fit.sigma > 0 and n > 0


def ggd_rows(values: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """``ggd.parquet`` rows (every column of the table): the given fits, fixed feature settings."""
    rows = [
        (k, a, s, 240, "conv_last_input", 24, 8, 10, "descriptor", "0" * 64, "cpu", 0.1) for k, (a, s) in values.items()
    ]
    return pd.DataFrame(rows, columns=tables.columns("similarity_ggd"))


def test_similarity_table_definition():
    ggd = ggd_rows({"clean": (0.5, 1.0), "jpeg": (0.7, 0.8), "sr": (0.72, 0.82), "noise": (1.5, 2.0)})
    table = similarity_table(ggd)
    assert list(table.columns) == ["deg_a", "deg_b", "kl", "distance", "distance_sym"]
    assert len(table) == 16
    row = table[(table.deg_a == "jpeg") & (table.deg_b == "noise")].iloc[0]
    assert row.kl == pytest.approx(kl_divergence(0.7, 0.8, 1.5, 2.0))
    assert row.distance == pytest.approx(math.log10(row.kl + 1e-5) + 5)
    back = table[(table.deg_a == "noise") & (table.deg_b == "jpeg")].iloc[0]
    assert row.kl != pytest.approx(back.kl)  # KL is not symmetric ...
    assert row.distance_sym == pytest.approx((row.distance + back.distance) / 2)  # ... the mean is
    diagonal = table[table.deg_a == table.deg_b]
    assert (diagonal.kl.abs() < 1e-12).all() and (diagonal.distance.abs() < 1e-6).all()
    wide = wide_matrix(table)
    assert list(wide.index) == list(wide.columns) == ["clean", "jpeg", "sr", "noise"]
    np.testing.assert_allclose(wide.to_numpy(), wide.to_numpy().T)
    order = cluster_order(wide)
    assert abs(order.index("jpeg") - order.index("sr")) == 1  # the two close fits are neighbours


def test_build_matrix_writes_tables_and_heatmap(tmp_path):
    files = []
    for name, fit in {"clean": (0.5, 1.0), "jpeg": (0.7, 0.8), "sr": (0.9, 0.5)}.items():
        path = tmp_path / f"{name}.parquet"
        ggd_rows({name: fit}).to_parquet(path)
        files.append(str(path))
    out = tmp_path / "out"
    matrix = build_matrix(files, out / "ggd.parquet", out / "matrix.parquet", out / "heatmap.png", out / "heatmap.svg")
    pd.testing.assert_frame_equal(matrix, pd.read_parquet(tmp_path / "out" / "matrix.parquet"))
    assert len(pd.read_parquet(tmp_path / "out" / "ggd.parquet")) == 3
    assert (tmp_path / "out" / "heatmap.png").stat().st_size > 5000
    svg = (tmp_path / "out" / "heatmap.svg").read_text()
    assert "jpeg" in svg and "log-KL" in svg


@pytest.mark.parametrize("kind", ["descriptor", "sift"])
def test_set_read_from_files_one_at_a_time_fits_the_same(tiny_net, clean_set, tmp_path, kind):
    from grids import io
    from grids.features import ImageFiles

    paths = {}
    for image_id, image in clean_set.items():
        io.write_png(tmp_path / f"{image_id}.png", image)
        paths[image_id] = str(tmp_path / f"{image_id}.png")
    features = {**FEATURES, "kind": kind, "n_patches": 60 if kind == "sift" else 24}
    files = ImageFiles(paths)
    assert files.sizes() == {k: v.shape[:2] for k, v in clean_set.items()}
    model = tiny_net if kind == "descriptor" else None
    in_memory, n = set_ggd(clean_set, features, seed=0, model=model)
    from_files, m = set_ggd(files, features, seed=0, model=model)
    assert (in_memory.alpha, in_memory.sigma, n) == (from_files.alpha, from_files.sigma, m)
