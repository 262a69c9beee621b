"""The crop store: the same crops as decoding, exact resume, memory flat in the number of images;
clean sets that reference a user's files in place."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import ENTRIES, GROUP, tiny_recipe, train_command

from grids import io
from grids.checkpoint import load_checkpoint
from grids.data import dead_leaves, prepare_clean_set, set_paths
from grids.degradations import get_degradation
from grids.store import CropStore, ImageList, build_store, random_crop, store_paths
from grids.train import OnlineDegrader, train

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = tiny_recipe(30)


def folder_config(folder: Path) -> dict:
    return {"photos": [], "dead_leaves": {"count": 0, "size": 64}, "folder": str(folder), "min_side": 32}


def write_rgb(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A PNG and a JPEG that need no conversion, a grayscale PNG that does."""
    folder = tmp_path / "photos"
    folder.mkdir()
    write_rgb(folder / "leaves.png", dead_leaves(96, np.random.default_rng(1))[:80])
    write_rgb(folder / "photo.jpg", dead_leaves(72, np.random.default_rng(2)))
    assert cv2.imwrite(str(folder / "gray.png"), dead_leaves(64, np.random.default_rng(3))[..., 0])
    return folder


def test_user_files_are_not_copied_unless_converted(user_folder, tmp_path):
    out = tmp_path / "clean"
    manifest = prepare_clean_set(folder_config(user_folder), 0, *set_paths(out), threads=2).set_index("image_id")
    for name in ("leaves", "photo"):  # used in place: the file itself, hashed
        path = manifest.loc[name, "path"]
        assert path == manifest.loc[name, "source_path"] and Path(path).parent == user_folder
        assert manifest.loc[name, "sha256"] == io.hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert np.array_equal(io.load_png(path), io.read_image(path)[0])  # downstream reads what was checked
    assert manifest.loc["gray", "conversions"] == "gray->rgb"
    assert manifest.loc["gray", "path"] == str(out / "images" / "gray.png")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["gray.png"]  # the one conversion
    assert io.load_png(manifest.loc["gray", "path"]).shape == (64, 64, 3)


def test_rerun_after_editing_one_file_rechecks_it(user_folder, tmp_path):
    out = tmp_path / "clean"
    prepare_clean_set(folder_config(user_folder), 0, *set_paths(out))
    assert len(pd.read_parquet(out / "checks.parquet")) == 2  # the files used in place
    data = (user_folder / "leaves.png").read_bytes()
    (user_folder / "leaves.png").write_bytes(data[: len(data) // 2])  # edited into a broken file
    with pytest.raises(io.BadImageError, match="leaves.png"):
        prepare_clean_set(folder_config(user_folder), 0, *set_paths(out))
    write_rgb(user_folder / "leaves.png", dead_leaves(90, np.random.default_rng(9)))
    manifest = prepare_clean_set(folder_config(user_folder), 0, *set_paths(out), threads=2).set_index("image_id")
    assert tuple(manifest.loc["leaves", ["height", "width"]]) == (90, 90)


def test_bad_files_are_named_with_threads(user_folder, tmp_path):
    (user_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    write_rgb(user_folder / "small.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(io.BadImageError) as err:
        prepare_clean_set(folder_config(user_folder), 0, *set_paths(tmp_path / "out"), threads=2)
    assert "2 bad input image(s)" in str(err.value) and "broken.jpg" in str(err.value) and "small.png" in str(err.value)
    assert not (tmp_path / "out" / "manifest.parquet").exists()


@pytest.fixture
def store(user_folder, tmp_path):
    manifest = prepare_clean_set(folder_config(user_folder), 0, *set_paths(tmp_path / "clean"))
    return manifest, build_store(manifest, *store_paths(tmp_path / "store"), threads=2), tmp_path / "store"


def test_store_crops_are_the_decoded_pixels(store):
    manifest, index, _ = store
    crops = CropStore(index)
    rng = np.random.default_rng(0)
    for i, row in enumerate(manifest.itertuples()):
        image = io.read_image(row.source_path)[0]  # the reading rules, straight from the user's file
        assert crops.shape(i) == image.shape[:2]
        for _ in range(5):
            top, left = rng.integers(image.shape[0] - 31), rng.integers(image.shape[1] - 31)
            assert np.array_equal(crops.crop(i, top, left, 32), image[top : top + 32, left : left + 32])


def test_store_batches_equal_in_memory_batches(store):
    manifest, index, _ = store
    images = [io.load_png(p) for p in manifest.path]
    degradations = {name: get_degradation(name, ENTRIES[name]) for name in ENTRIES}
    a = OnlineDegrader(images, degradations, 32, torch.device("cpu")).batch(
        8, np.random.default_rng(4), torch.Generator().manual_seed(4)
    )
    b = OnlineDegrader(CropStore(index), degradations, 32, torch.device("cpu")).batch(
        8, np.random.default_rng(4), torch.Generator().manual_seed(4)
    )
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_random_crop_draws_what_the_trainers_drew_before_it_was_shared():
    """Both trainers once inlined this augmentation; the shared helper must give the same crops and
    leave the generator where they left it (resumed and re-run trainings depend on it)."""

    def inline(images, size, rng):
        image = images[rng.integers(len(images))]
        y = rng.integers(image.shape[0] - size + 1)
        x = rng.integers(image.shape[1] - size + 1)
        patch = image[y : y + size, x : x + size]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.rot90(patch, k=int(rng.integers(4)))

    shapes = np.random.default_rng(9).integers(24, 80, (6, 2))
    images = [np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8) for i, (h, w) in enumerate(shapes)]
    ours, theirs = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(200):
        crop = random_crop(ImageList(images), 24, ours)
        assert crop.flags.c_contiguous and np.array_equal(crop, inline(images, 24, theirs))
    assert ours.bit_generator.state == theirs.bit_generator.state


def test_store_is_incremental(store, user_folder, tmp_path):
    manifest, index, out = store
    before = {p.name: p.stat().st_mtime_ns for p in (out / "arrays").glob("*.npy")}
    assert len(before) == 3
    write_rgb(user_folder / "photo.jpg", dead_leaves(70, np.random.default_rng(7)))
    manifest = prepare_clean_set(folder_config(user_folder), 0, *set_paths(tmp_path / "clean"))
    index = build_store(manifest, *store_paths(out))
    after = {p.name: p.stat().st_mtime_ns for p in (out / "arrays").glob("*.npy")}
    changed = index.set_index("image_id").sha256["photo"] + ".npy"
    assert set(after) == set(before) - (set(before) - set(after)) | {changed} and len(after) == 3
    assert all(after[k] == before[k] for k in after if k != changed)  # the others were not rewritten
    assert CropStore(index).shape(list(index.image_id).index("photo")) == (70, 70)


def test_resume_with_the_store_is_exact(store, tmp_path):
    manifest, index, _ = store
    images = [io.load_png(p) for p in manifest.path]
    train(GROUP, images, ENTRIES, RECIPE, 0, tmp_path / "a.pth", tmp_path / "ra.pth", "cpu")
    train(GROUP, CropStore(index), ENTRIES, RECIPE, 0, tmp_path / "b.pth", tmp_path / "rb.pth", "cpu", stop_after=10)
    train(GROUP, CropStore(index), ENTRIES, RECIPE, 0, tmp_path / "b.pth", tmp_path / "rb.pth", "cpu")
    a, b = load_checkpoint(tmp_path / "a.pth"), load_checkpoint(tmp_path / "b.pth")
    assert a.keys() == b.keys() and all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    assert a["numpy_rng"] == b["numpy_rng"]


def _peak_rss_mb(command: list[str]) -> float:
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(job.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, job.stderr.read().decode()
    return usage.ru_maxrss / 1024  # KiB on Linux


@pytest.mark.slow  # training processes on growing stores
def test_training_memory_does_not_grow_with_the_number_of_images(tmp_path):
    # 64 images of 768x768 hold 113 MB decoded; a job that decoded its set would grow by ~100 MB.
    rss = {}
    for n in (8, 64):
        folder = tmp_path / f"set{n}"
        folder.mkdir()
        tile = dead_leaves(192, np.random.default_rng(0))
        for i in range(n):
            write_rgb(folder / f"{i:03d}.png", np.roll(np.tile(tile, (4, 4, 1)), i * 7, axis=(0, 1)))
        manifest = prepare_clean_set(folder_config(folder), 0, *set_paths(tmp_path / f"clean{n}"), threads=2)
        build_store(manifest, *store_paths(tmp_path / f"store{n}"), threads=2)
        recipe = {**RECIPE, "iterations": 20, "crop": 64, "batch_size": 8}
        store = ["--store", str(tmp_path / f"store{n}" / "index.parquet")]
        command = train_command(
            store, recipe, tmp_path / f"m{n}.pth", tmp_path / f"l{n}.parquet", tmp_path / f"r{n}.pth"
        )
        rss[n] = _peak_rss_mb(command)
    assert rss[64] < rss[8] + 40, rss  # generous: well under the 100 MB a decoded set would add
