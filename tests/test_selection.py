"""Adaptive model selection (grids.selection) and the `grids select` / `grids restore` commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from grids import io
from grids.config import SHIPPED_DESCRIPTOR
from grids.data import dead_leaves
from grids.degradations import get_degradation
from grids.descriptor import load_descriptor
from grids.features import set_ggd
from grids.ggd import GGD
from grids.selection import (
    Selector,
    auroc,
    check_features,
    divergences,
    group_ggds,
    load_results,
    self_augmented_patches,
    spearman,
)

ROOT = Path(__file__).resolve().parents[1]
FEATURES = {"kind": "descriptor", "layer": "conv_last_input", "n_patches": 48, "patch_size": 16,
            "pca_components": 16, "outlier_stds": 5.0}


def test_self_augmented_patches_are_flipped_crops():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    patches = self_augmented_patches(image, 64, 16, seed=3)
    assert patches.shape == (64, 16, 16, 3) and patches.dtype == np.uint8
    np.testing.assert_array_equal(patches, self_augmented_patches(image, 64, 16, seed=3))  # deterministic
    assert not np.array_equal(patches, self_augmented_patches(image, 64, 16, seed=4))
    windows = np.lib.stride_tricks.sliding_window_view(image, (16, 16, 3))[..., 0, :, :, :].reshape(-1, 16, 16, 3)
    found = {"plain": 0, "flipped": 0}
    for patch in patches:
        variants = [patch, patch[:, ::-1], patch[::-1], patch[::-1, ::-1]]
        match = [k for k, v in enumerate(variants) if (windows == v).all(axis=(1, 2, 3)).any()]
        assert match, "every patch is a crop of the image, possibly flipped"
        found["plain" if match[0] == 0 else "flipped"] += 1
    assert found["plain"] > 5 and found["flipped"] > 30  # 3 of 4 patches are flipped on average


def test_small_images_are_padded_with_a_warning():
    image = np.random.default_rng(0).integers(0, 256, (10, 30, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="smaller than the 16 px patches"):
        patches = self_augmented_patches(image, 8, 16)
    assert patches.shape == (8, 16, 16, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        self_augmented_patches(np.zeros((16, 16, 3), np.uint8), 4, 16)  # exactly the patch size: no warning


def test_group_ggd_is_the_mean_of_its_members():
    ggd = pd.DataFrame({"degradation": ["clean", "a", "b", "c"], "alpha": [1.0, 0.5, 0.7, 2.0],
                        "sigma": [1.0, 2.0, 4.0, 1.0]})
    groups = pd.DataFrame({"degradation": ["a", "b", "c"], "group": ["a+b", "a+b", "c"]})
    table = group_ggds(ggd, groups)
    assert table.group.tolist() == ["a+b", "c"]
    assert table.alpha.tolist() == pytest.approx([0.6, 2.0]) and table.sigma.tolist() == pytest.approx([3.0, 1.0])
    with pytest.raises(ValueError, match=r"no fit for \['d'\]"):
        group_ggds(ggd, pd.DataFrame({"degradation": ["d"], "group": ["d"]}))


def test_divergences_rank_the_groups():
    groups = pd.DataFrame({"group": ["near", "far", "same"], "alpha": [0.8, 2.0, 0.7], "sigma": [1.1, 5.0, 1.0]})
    table = divergences(groups, GGD(0.7, 1.0))
    assert table.group.tolist() == ["same", "near", "far"]
    assert table.distance.iloc[0] == pytest.approx(0.0, abs=1e-9)  # identical distributions -> 0
    assert table.distance.is_monotonic_increasing


@pytest.fixture(scope="module")
def two_groups():
    """Group GGDs from real degraded sets: {gaussian_noise, salt_pepper} and {gaussian_blur, defocus_blur}."""
    model = load_descriptor(str(SHIPPED_DESCRIPTOR), "cpu")
    clean = {f"img{i}": dead_leaves(64, np.random.default_rng(i)) for i in range(4)}
    rows = []
    for name in ("gaussian_noise", "salt_pepper", "gaussian_blur", "defocus_blur"):
        deg = get_degradation(name)
        images = {k: deg(v, np.random.default_rng(7))[0] for k, v in clean.items()}
        fit, _ = set_ggd(images, FEATURES, seed=0, model=model)
        rows.append([name, fit.alpha, fit.sigma])
    ggd = pd.DataFrame(rows, columns=["degradation", "alpha", "sigma"])
    groups = pd.DataFrame({"degradation": ggd.degradation,
                           "group": ["gaussian_noise+salt_pepper"] * 2 + ["defocus_blur+gaussian_blur"] * 2})
    return group_ggds(ggd, groups)


@pytest.mark.parametrize(("degradation", "expected"), [
    ("gaussian_noise", "gaussian_noise+salt_pepper"),
    ("salt_pepper", "gaussian_noise+salt_pepper"),
    ("gaussian_blur", "defocus_blur+gaussian_blur"),
    ("defocus_blur", "defocus_blur+gaussian_blur"),
])
def test_selection_finds_the_known_group(two_groups, degradation, expected):
    selector = Selector(two_groups, FEATURES, str(SHIPPED_DESCRIPTOR), threshold=4.0, device="cpu")
    image = get_degradation(degradation)(dead_leaves(96, np.random.default_rng(50)), np.random.default_rng(9))[0]
    choice = selector.select(image)
    assert choice.group == expected
    assert choice.divergences.group.iloc[0] == expected and len(choice.divergences) == 2
    assert choice.in_distribution == (choice.distance <= 4.0)
    assert selector.select(image).distance == choice.distance  # same image, same answer
    as_json = json.loads(json.dumps(choice.as_dict()))
    assert as_json["group"] == expected and set(as_json["divergences"]) == set(two_groups.group)


def test_threshold_decides_the_verdict(two_groups):
    image = get_degradation("gaussian_noise")(dead_leaves(96, np.random.default_rng(5)), np.random.default_rng(1))[0]
    strict = Selector(two_groups, FEATURES, str(SHIPPED_DESCRIPTOR), threshold=1e-6, device="cpu").select(image)
    assert not strict.in_distribution
    loose = Selector(two_groups, FEATURES, str(SHIPPED_DESCRIPTOR), threshold=100, device="cpu").select(image)
    assert loose.in_distribution and loose.distance == strict.distance


def test_features_must_match_the_results():
    ggd = pd.DataFrame([{"degradation": "a", "alpha": 1.0, "sigma": 1.0, "n_patches": 48, "patch_size": 16,
                         "pca_components": 16, "feature_kind": "descriptor", "descriptor_sha256": "abc"}])
    check_features(ggd, FEATURES, "abc")
    with pytest.raises(ValueError, match=r"features.n_patches is 32 but .* fitted with 48"):
        check_features(ggd, {**FEATURES, "n_patches": 32}, "abc")
    with pytest.raises(ValueError, match="descriptor weights changed"):
        check_features(ggd, FEATURES, "def")


def test_missing_results_name_the_target(tmp_path):
    with pytest.raises(FileNotFoundError, match="similarity_matrix"):
        load_results(tmp_path)
    (tmp_path / "similarity").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "similarity" / "ggd.parquet")
    with pytest.raises(FileNotFoundError, match="final_models"):
        load_results(tmp_path)


def test_spearman_handles_degenerate_input():
    assert spearman(np.arange(5.0), np.arange(5.0) * 2)[0] == pytest.approx(1.0)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0))[0])
    assert np.isnan(spearman(np.arange(2.0), np.arange(2.0))[0])


def grids(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grids.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_bad_inputs(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copytree(ROOT / "examples", tmp_path / "examples")  # the default config's unseen haze
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    good = tmp_path / "in.png"
    io.write_png(good, dead_leaves(64, np.random.default_rng(0)))
    (tmp_path / "fake.png").write_text("not an image")

    missing = grids("select", "nowhere.png", cwd=tmp_path)
    assert missing.returncode == 2 and "error: nowhere.png: no such file" in missing.stderr
    fake = grids("select", str(good), "fake.png", cwd=tmp_path)
    assert fake.returncode == 2 and "fake.png" in fake.stderr
    unbuilt = grids("select", str(good), cwd=tmp_path)
    assert unbuilt.returncode == 2
    assert "results/similarity/ggd.parquet not found" in unbuilt.stderr and "similarity_matrix" in unbuilt.stderr
    restore = grids("restore", str(good), "-o", str(tmp_path / "out.png"), cwd=tmp_path)
    assert restore.returncode == 2 and "similarity_matrix" in restore.stderr
    assert not (tmp_path / "out.png").exists()
    no_config = grids("select", str(good), "--config", "missing.yaml", cwd=tmp_path)
    assert no_config.returncode == 2 and "config file missing.yaml not found" in no_config.stderr
    usage = grids("restore", str(good), cwd=tmp_path)  # -o is required
    assert usage.returncode == 2 and "--output" in usage.stderr


def test_auroc():
    assert auroc(np.array([5.0, 6.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([5.0])) == 0.0
    assert auroc(np.array([3.0]), np.array([3.0])) == 0.5
    assert np.isnan(auroc(np.array([]), np.array([1.0])))
