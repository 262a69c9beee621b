"""Stage ``train_store``: the training images as uncompressed arrays that serve crops without decoding.

A training job draws random crops; decoding its whole training set first costs memory and start-up
time in proportion to the set (DF2K: about 28 GB and 8 minutes per job). The store is built once
per training set instead: every clean training image becomes ``{arrays}/{sha256}.npy``, an
``(H, W, 3)`` uint8 C-order ``.npy`` named by the sha256 of its clean file (the manifest's
``sha256``), so a rebuild redoes only the images that changed and drops the arrays no image uses
any more. A crop maps the file, copies the rows and columns it covers and unmaps it
(:meth:`CropStore.crop`): a job's memory is its batch and prefetch depth, whatever the number or
size of the images, and opening the store reads only the ``.npy`` headers.

Output ``--index`` (``index.parquet``), one row per image in manifest order (table ``store_index`` of
:mod:`grids.tables`; ``path`` is the ``.npy``, relative to the working directory). The arrays are not declared
outputs of the rule, so Snakemake keeps them between builds (that is the cache); ``index.parquet``
is what a training job reads.

    python -m grids.store --clean results/train/clean/manifest.parquet --index results/train/store/index.parquet \
        --arrays results/train/store/arrays --threads 4
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import io, tables


def _npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """``(shape, dtype, fortran_order, data offset)`` of a ``.npy`` file, reading only its header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        return shape, dtype, fortran, f.tell()


def _array_ok(path: Path, height: int, width: int) -> bool:
    try:
        shape, dtype, fortran, offset = _npy_header(path)
    except (OSError, ValueError):
        return False
    size_ok = path.stat().st_size == offset + height * width * 3
    return shape == (height, width, 3) and dtype == np.uint8 and not fortran and size_ok


def _build_one(row, arrays: Path) -> bool:
    """Write the array of one manifest row unless a valid one is there; True if it was written."""
    target = arrays / f"{row.sha256}.npy"
    if _array_ok(target, row.height, row.width):
        return False
    data = Path(row.path).read_bytes()
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise io.BadImageError(f"{row.path}: changed since the clean set was built (sha256 differs): rebuild it")
    image = io.decode_clean(data, row.path)
    if image.shape != (row.height, row.width, 3):
        raise io.BadImageError(f"{row.path}: {image.shape} does not match the manifest's {row.height}x{row.width}")
    # A file object: np.save would append .npy to the temporary name.
    with io.atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, image, allow_pickle=False)
    return True


def store_paths(folder: str | Path) -> tuple[Path, Path]:
    """The index and array folder of a store kept in one folder, as the workflow lays out
    ``results/train/store`` (for callers of :func:`build_store` outside the workflow)."""
    folder = Path(folder)
    return folder / "index.parquet", folder / "arrays"


def build_store(
    manifest: pd.DataFrame, index_path: str | Path, arrays_dir: str | Path, threads: int = 1
) -> pd.DataFrame:
    """Build (or bring up to date) the crop store of the clean set ``manifest``: its arrays in
    ``arrays_dir`` (a folder only this store uses: arrays no image needs are removed), its index
    at ``index_path``.

    Images are decoded and written on ``threads`` threads (decoding, hashing and file writes
    release the GIL). Returns the index table.
    """
    arrays = Path(arrays_dir)
    arrays.mkdir(parents=True, exist_ok=True)
    rows = list(manifest.itertuples())
    with ThreadPoolExecutor(max(1, threads)) as pool:
        written = list(
            tqdm(pool.map(lambda r: _build_one(r, arrays), rows), total=len(rows), desc="crop store", unit="img")
        )
    needed = {f"{r.sha256}.npy" for r in rows}
    stale = [p for p in arrays.iterdir() if p.name not in needed]
    for path in stale:  # images removed or edited since the last build
        path.unlink()
    index = pd.DataFrame(
        [[r.image_id, int(r.height), int(r.width), r.sha256, str(arrays / f"{r.sha256}.npy")] for r in rows],
        columns=tables.columns("store_index"),
    )
    tables.write(index, "store_index", index_path)
    print(f"{len(rows)} images: {sum(written)} written, {len(rows) - sum(written)} reused, {len(stale)} stale removed")
    return index


class CropStore:
    """Crops of the images of a store index, read from disk one crop at a time."""

    def __init__(self, index: pd.DataFrame):
        self.paths = index.path.tolist()
        self.shapes = list(zip(index.height.astype(int), index.width.astype(int)))
        self.offsets = []
        for path, (h, w) in zip(self.paths, self.shapes):
            shape, dtype, fortran, offset = _npy_header(path)
            if shape != (h, w, 3) or dtype != np.uint8 or fortran:
                raise ValueError(
                    f"{path}: array {shape} {dtype} does not match the store index ({h}x{w}x3 uint8): rebuild the store"
                )
            self.offsets.append(offset)

    @classmethod
    def open(cls, index_path: str | Path) -> CropStore:
        return cls(pd.read_parquet(index_path))

    def __len__(self) -> int:
        return len(self.paths)

    def shape(self, i: int) -> tuple[int, int]:
        return self.shapes[i]

    def crop(self, i: int, top: int, left: int, size: int) -> np.ndarray:
        """``uint8 (size, size, 3)``: rows ``top..top+size``, columns ``left..left+size`` of image ``i``."""
        h, w = self.shapes[i]
        # Mapped for this crop only: the pages it touched leave the process with the mapping.
        mapped = np.memmap(self.paths[i], np.uint8, "r", offset=self.offsets[i], shape=(h, w, 3))
        patch = np.array(mapped[top : top + size, left : left + size])
        del mapped
        return patch


class ImageList:
    """In-memory images with the interface of :class:`CropStore` (tests, benchmarks, small sets)."""

    def __init__(self, images: list[np.ndarray]):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def shape(self, i: int) -> tuple[int, int]:
        return self.images[i].shape[:2]

    def crop(self, i: int, top: int, left: int, size: int) -> np.ndarray:
        return self.images[i][top : top + size, left : left + size]


def random_crop(images: CropStore | ImageList, size: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 (size, size, 3)``, C-contiguous: a random crop of a random image, flipped left-right
    with probability 1/2, then rotated by a random multiple of 90 degrees.

    The training augmentation of both trainers (:mod:`grids.train`, :mod:`grids.train_descriptor`).
    The random numbers are drawn in one fixed order (image, top, left, flip, rotation), so a seeded
    run sees the same crops whether they come from memory or from a store, and a resumed run the
    same crops as an uninterrupted one.
    """
    index = rng.integers(len(images))
    height, width = images.shape(index)
    top = rng.integers(height - size + 1)
    left = rng.integers(width - size + 1)
    patch = images.crop(index, top, left, size)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.ascontiguousarray(np.rot90(patch, k=int(rng.integers(4))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.store", description=__doc__.split("\n")[0])
    parser.add_argument("--clean", required=True, help="clean training manifest.parquet")
    parser.add_argument("--index", required=True, help="the index to write, e.g. results/train/store/index.parquet")
    parser.add_argument("--arrays", required=True, help="the store's array folder, e.g. results/train/store/arrays")
    parser.add_argument("--threads", type=int, default=1, help="images decoded and written at once")
    args = parser.parse_args(argv)
    index = build_store(io.read_manifest(args.clean), args.index, args.arrays, args.threads)
    print(f"{len(index)} images -> {args.index}")
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
