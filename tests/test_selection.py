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
from grids.ggd import GGD, kl_divergence, log_kl_distance
from grids.selection.report import auroc, spearman
from grids.selection.selector import distance_selector, divergences, group_ggds, image_references, load_results
from grids.selection.signatures import check_features, reference_table, self_augmented_patches
from grids.selection.statistics import nearest_threshold

ROOT = Path(__file__).resolve().parents[1]
FEATURES = {
    "kind": "descriptor",
    "layer": "conv_last_input",
    "n_patches": 48,
    "patch_size": 16,
    "pca_components": 16,
    "outlier_stds": 5.0,
    "distance": "log_kl",
}


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
    ggd = pd.DataFrame(
        {"degradation": ["clean", "a", "b", "c"], "alpha": [1.0, 0.5, 0.7, 2.0], "sigma": [1.0, 2.0, 4.0, 1.0]}
    )
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


def test_divergences_take_the_nearest_reference_of_each_group():
    refs = pd.DataFrame({"group": ["a", "a", "b", "b"], "alpha": [2.0, 0.7, 1.5, 3.0], "sigma": [5.0, 1.1, 2.0, 9.0]})
    table = divergences(refs, GGD(0.7, 1.0))
    assert table.group.tolist() == ["a", "b"]
    for row in table.itertuples():
        part = refs[refs.group == row.group]
        kl = np.asarray(kl_divergence(part.alpha.to_numpy(), part.sigma.to_numpy(), 0.7, 1.0))
        assert row.kl == pytest.approx(kl.min()) and row.distance == pytest.approx(log_kl_distance(kl.min()))


def test_image_references_map_member_images_to_their_group():
    references = pd.DataFrame(
        {
            "degradation": ["a", "a", "b", "c"],
            "image": ["x", "y", "x", "x"],
            "layer": ["conv_last_input"] * 4,
            "alpha": [1.0, 2.0, 3.0, 4.0],
            "sigma": [1.0, 1.0, 1.0, 1.0],
        }
    )
    other_layer = references.assign(layer="conv_first", alpha=9.0)  # the signature's other layers are left out
    references = pd.concat([references, other_layer], ignore_index=True)
    groups = pd.DataFrame({"degradation": ["a", "b"], "group": ["a+b", "a+b"]})
    table = image_references(references, groups, FEATURES)
    assert table.group.tolist() == ["a+b"] * 3 and table.alpha.tolist() == [1.0, 2.0, 3.0]  # c: not a final member
    with pytest.raises(ValueError, match=r"no images of \['d'\]: rebuild final_models"):
        image_references(references, pd.DataFrame({"degradation": ["d"], "group": ["d"]}), FEATURES)


def test_leave_one_out_threshold_and_defaults():
    refs = pd.DataFrame(
        {
            "group": ["a", "a", "a", "b", "c", "c"],
            "alpha": [0.5, 0.6, 0.9, 1.0, 2.0, 2.1],
            "sigma": [1.0, 1.2, 2.0, 1.0, 3.0, 3.0],
        }
    )
    nearest = []  # brute force: each reference's distance from the nearest other one of its group
    for i, r in refs.iterrows():
        others = refs[(refs.group == r.group) & (refs.index != i)]
        if len(others):
            kl = np.asarray(kl_divergence(others.alpha.to_numpy(), others.sigma.to_numpy(), r.alpha, r.sigma))
            nearest.append(log_kl_distance(kl.min()))
    assert len(nearest) == 5  # b has a single reference: no leave-one-out distance
    assert nearest_threshold(refs) == pytest.approx(np.quantile(nearest, 0.95))
    assert nearest_threshold(refs, 0.5) == pytest.approx(np.median(nearest))
    with pytest.raises(ValueError, match="set selection.threshold explicitly"):
        nearest_threshold(refs[refs.group == "b"])


KNOWN = ("gaussian_noise", "salt_pepper", "gaussian_blur", "defocus_blur")
KNOWN_GROUPS = pd.DataFrame(
    {"degradation": KNOWN, "group": ["gaussian_noise+salt_pepper"] * 2 + ["defocus_blur+gaussian_blur"] * 2}
)


@pytest.fixture(scope="module")
def known_sets(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """Manifests of real degraded sets (4 dead-leaves images each) of the 4 KNOWN degradations."""
    folder = tmp_path_factory.mktemp("known")
    clean = {f"img{i}": dead_leaves(64, np.random.default_rng(i)) for i in range(4)}
    manifests = {}
    for name in KNOWN:
        rows = []
        for image_id, image in clean.items():
            path = folder / name / f"{image_id}.png"
            path.parent.mkdir(exist_ok=True)
            io.write_png(path, get_degradation(name)(image, np.random.default_rng(7))[0])
            rows.append({"image_id": image_id, "path": str(path)})
        manifests[name] = pd.DataFrame(rows)
    return manifests


@pytest.fixture(scope="module")
def two_groups(known_sets):
    """Group GGDs (reference kind ``sets``): {gaussian_noise, salt_pepper} and {gaussian_blur, defocus_blur}."""
    model = load_descriptor(str(SHIPPED_DESCRIPTOR), "cpu")
    rows = []
    for name, manifest in known_sets.items():
        fit, _ = set_ggd(
            {r.image_id: io.load_png(r.path) for r in manifest.itertuples()}, FEATURES, seed=0, model=model
        )
        rows.append([name, fit.alpha, fit.sigma])
    return group_ggds(pd.DataFrame(rows, columns=["degradation", "alpha", "sigma"]), KNOWN_GROUPS)


@pytest.fixture(scope="module")
def image_refs(known_sets):
    """The same two groups as per-image references (reference kind ``images``), via the stage."""
    tables = [reference_table(name, m, str(SHIPPED_DESCRIPTOR), FEATURES, 0, "cpu") for name, m in known_sets.items()]
    table = pd.concat(tables, ignore_index=True)
    assert len(table) == 16 and table.descriptor_sha256.nunique() == 1 and (table.n_patches == 48).all()
    check_features(table, FEATURES, table.descriptor_sha256.iloc[0])
    return image_references(table, KNOWN_GROUPS, FEATURES)


@pytest.mark.parametrize("reference", ["sets", "images"])
@pytest.mark.parametrize(
    ("degradation", "expected"),
    [
        ("gaussian_noise", "gaussian_noise+salt_pepper"),
        ("salt_pepper", "gaussian_noise+salt_pepper"),
        ("gaussian_blur", "defocus_blur+gaussian_blur"),
        ("defocus_blur", "defocus_blur+gaussian_blur"),
    ],
)
def test_selection_finds_the_known_group(two_groups, image_refs, reference, degradation, expected):
    refs = two_groups if reference == "sets" else image_refs
    selector = distance_selector(refs, FEATURES, str(SHIPPED_DESCRIPTOR), threshold=4.0, device="cpu")
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
    descriptor = str(SHIPPED_DESCRIPTOR)
    strict = distance_selector(two_groups, FEATURES, descriptor, threshold=1e-6, device="cpu").select(image)
    assert not strict.in_distribution
    loose = distance_selector(two_groups, FEATURES, descriptor, threshold=100, device="cpu").select(image)
    assert loose.in_distribution and loose.distance == strict.distance


def test_features_must_match_the_results():
    ggd = pd.DataFrame(
        [
            {
                "degradation": "a",
                "alpha": 1.0,
                "sigma": 1.0,
                "n_patches": 48,
                "patch_size": 16,
                "pca_components": 16,
                "feature_kind": "descriptor",
                "descriptor_sha256": "abc",
            }
        ]
    )
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
    (tmp_path / "final").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "final" / "groups.parquet")
    with pytest.raises(FileNotFoundError, match=r"selection/references.parquet not found.*final_models"):
        load_results(tmp_path)
    (tmp_path / "selection").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "selection" / "references.parquet")
    with pytest.raises(FileNotFoundError, match=r"selection/reference_gains.parquet not found.*final_models"):
        load_results(tmp_path)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "selection" / "reference_gains.parquet")
    assert load_results(tmp_path)[4] is None  # no drop fit before the selection report has run


def test_spearman_handles_degenerate_input():
    assert spearman(np.arange(5.0), np.arange(5.0) * 2)[0] == pytest.approx(1.0)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0))[0])
    assert np.isnan(spearman(np.arange(2.0), np.arange(2.0))[0])


def grids(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grids.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow  # many `grids` commands
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
