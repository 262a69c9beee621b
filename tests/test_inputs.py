"""Bad input is part of the job: each case is converted by a documented rule or rejected by name."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from grids import io
from grids.data import dead_leaves, list_sources, prepare_clean_set, set_paths


def rgb(h=80, w=96, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray) -> Path:
    """Write with OpenCV (RGB(A) given, BGR(A) stored), keeping 16-bit and alpha as they are."""
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), array)
    return path


def folder_config(folder: Path, **extra) -> dict:
    return {"photos": [], "dead_leaves": {"count": 0, "size": 64}, "folder": str(folder), "min_side": 32, **extra}


def test_plain_rgb_png_is_read_unchanged(tmp_path):
    image = rgb()
    out, conversions = io.read_image(save(tmp_path / "a.png", image))
    assert np.array_equal(out, image) and conversions == []


def test_grayscale_becomes_rgb(tmp_path):
    gray = rgb()[..., 0]
    out, conversions = io.read_image(save(tmp_path / "g.png", gray))
    assert out.shape == (80, 96, 3) and conversions == ["gray->rgb"]
    assert all(np.array_equal(out[..., c], gray) for c in range(3))


def test_rgba_drops_alpha(tmp_path):
    image = rgb()
    rgba = np.concatenate([image, np.full((80, 96, 1), 7, np.uint8)], axis=2)
    out, conversions = io.read_image(save(tmp_path / "a.png", rgba))
    assert np.array_equal(out, image) and conversions == ["drop_alpha"]


def test_gray_alpha_drops_alpha(tmp_path):
    gray = rgb()[..., 0]
    Image.fromarray(np.stack([gray, np.full_like(gray, 9)], axis=2), mode="LA").save(tmp_path / "la.png")
    out, conversions = io.read_image(tmp_path / "la.png")
    assert all(np.array_equal(out[..., c], gray) for c in range(3)) and "drop_alpha" in conversions


def test_16_bit_becomes_8_bit_by_rounding(tmp_path):
    image8 = rgb()
    image16 = np.minimum(image8.astype(np.uint32) * 257 + 100, 65535).astype(np.uint16)  # rounds back
    out, conversions = io.read_image(save(tmp_path / "deep.png", image16))
    assert np.array_equal(out, image8) and conversions == ["16bit->8bit"]
    gray16 = np.full((40, 40), 65535, np.uint16)
    out, conversions = io.read_image(save(tmp_path / "deep_gray.png", gray16))
    assert (out == 255).all() and conversions == ["16bit->8bit", "gray->rgb"]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_is_rejected_by_name(tmp_path, suffix):
    path = save(tmp_path / f"cut{suffix}", rgb(200, 200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.BadImageError, match=f"cut{suffix}"):
        io.read_image(path)


def test_not_an_image_with_image_extension_is_rejected(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(io.BadImageError, match="notes.png"):
        io.read_image(path)


def test_too_small_is_rejected_by_name(tmp_path):
    path = save(tmp_path / "tiny.png", rgb(20, 50))
    with pytest.raises(io.BadImageError, match=r"tiny.png: 50x20 px is smaller than the minimum side 32"):
        io.read_image(path, min_side=32)


def test_non_image_files_are_skipped_and_reported(tmp_path):
    save(tmp_path / "a.png", rgb())
    (tmp_path / "README.txt").write_text("x")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    with pytest.warns(UserWarning, match=r"skipping 2 non-image file\(s\): \.DS_Store, README.txt"):
        images, skipped = io.list_image_files(tmp_path)
    assert [p.name for p in images] == ["a.png"] and len(skipped) == 2


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(io.BadImageError, match="empty folder"):
        list_sources(folder_config(tmp_path), seed=0)


def test_duplicate_stems_name_both_files(tmp_path):
    save(tmp_path / "x.png", rgb())
    save(tmp_path / "x.jpg", rgb())
    with pytest.raises(io.BadImageError, match=r"(?s)duplicate.*'x'.*x.jpg.*x.png"):
        list_sources(folder_config(tmp_path), seed=0)


def test_embedded_photo_name_clash_with_folder_is_an_error(tmp_path):
    save(tmp_path / "chelsea.png", rgb())
    with pytest.raises(io.BadImageError, match="chelsea"):
        list_sources(folder_config(tmp_path, photos=["chelsea"]), seed=0)


def test_clean_set_reports_every_bad_file_and_writes_nothing(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "good.png", rgb())
    save(src / "small.png", rgb(10, 10))
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    out = tmp_path / "out"
    with pytest.raises(io.BadImageError) as err:
        prepare_clean_set(folder_config(src), 0, *set_paths(out))
    message = str(err.value)
    assert "2 bad input image(s)" in message and "small.png" in message and "broken.jpg" in message
    assert not (out / "images").exists() and not (out / "manifest.parquet").exists()
    assert list(out.iterdir()) == []  # no temporary leftovers either


def test_clean_set_manifest_and_conversions(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    save(src / "colour.png", rgb())
    save(src / "gray.png", rgb()[..., 0])
    config = folder_config(src, photos=["chelsea"], dead_leaves={"count": 2, "size": 64})
    manifest = prepare_clean_set(config, 0, *set_paths(tmp_path / "out"))
    assert list(manifest.image_id) == ["chelsea", "dead_leaves_000", "dead_leaves_001", "colour", "gray"]
    assert list(manifest.conversions) == ["", "", "", "", "gray->rgb"]
    assert manifest.loc[manifest.image_id == "chelsea", ["height", "width"]].values.tolist() == [[300, 451]]
    for row in manifest.itertuples():
        image = io.load_png(row.path)
        assert image.shape == (row.height, row.width, 3)
    pd.testing.assert_frame_equal(manifest, io.read_manifest(tmp_path / "out" / "manifest.parquet"))


def test_dead_leaves_seeded_and_natural_looking():
    a = dead_leaves(128, np.random.default_rng(0))
    b = dead_leaves(128, np.random.default_rng(0))
    c = dead_leaves(128, np.random.default_rng(1))
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # Natural-image-like: a power spectrum falling roughly as 1/f^2 (slope between -3 and -1).
    gray = a.astype(float).mean(axis=2)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))) ** 2
    yy, xx = np.indices(spectrum.shape) - 64
    radius = np.hypot(yy, xx).astype(int)
    radial = np.bincount(radius.ravel(), spectrum.ravel()) / np.bincount(radius.ravel())
    f = np.arange(4, 50)
    slope = np.polyfit(np.log(f), np.log(radial[f]), 1)[0]
    assert -3.0 < slope < -1.0, slope


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "result.parquet"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_manifest_paths_are_relative_to_the_manifest_and_open_from_anywhere(tmp_path, monkeypatch):
    """Stored relative to the manifest's folder: the table opens from another working directory
    and after its results folder moved; an absolute path stays as it is."""
    from grids import tables

    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "degraded" / "jpeg" / "images").mkdir(parents=True)
    (tmp_path / "results" / "clean" / "images").mkdir(parents=True)
    image = np.zeros((4, 4, 3), np.uint8)
    sha = io.write_png("results/degraded/jpeg/images/a.png", image)
    io.write_png("results/clean/images/a.png", image)
    outside = str(tmp_path / "photo.png")
    frame = pd.DataFrame(
        [
            ["a", outside, "results/clean/images/a.png", "jpeg", "{}", 1, "results/degraded/jpeg/images/a.png", sha],
            ["b", outside, outside, "jpeg", "{}", 2, outside, sha],
        ],
        columns=tables.columns("degraded_manifest"),
    )
    tables.write(frame, "degraded_manifest", "results/degraded/jpeg/manifest.parquet")
    stored = pd.read_parquet("results/degraded/jpeg/manifest.parquet")
    assert stored.path.tolist() == ["images/a.png", outside]
    assert stored.clean_path.tolist() == ["../../clean/images/a.png", outside]
    assert io.read_manifest("results/degraded/jpeg/manifest.parquet").path.tolist() == frame.path.tolist()

    (tmp_path / "results").rename(tmp_path / "moved")
    monkeypatch.chdir("/")
    moved = io.read_manifest(tmp_path / "moved" / "degraded" / "jpeg" / "manifest.parquet")
    assert moved.path[0] == str(tmp_path / "moved" / "degraded" / "jpeg" / "images" / "a.png")
    assert io.load_png(moved.path[0]).shape == (4, 4, 3) and io.load_png(moved.clean_path[0]).shape == (4, 4, 3)
    assert moved.path[1] == outside


def test_a_manifest_of_the_old_layout_still_reads(tmp_path, monkeypatch):
    """Written before the paths were relative to the manifest (relative to the working directory)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "clean" / "images").mkdir(parents=True)
    io.write_png("results/clean/images/a.png", np.zeros((4, 4, 3), np.uint8))
    pd.DataFrame({"image_id": ["a"], "path": ["results/clean/images/a.png"]}).to_parquet(
        "results/clean/manifest.parquet"
    )
    assert io.read_manifest("results/clean/manifest.parquet").path.tolist() == ["results/clean/images/a.png"]
