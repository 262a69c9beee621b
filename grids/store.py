"""Stage ``train_store``: the training images as uncompressed arrays that serve crops without decoding.

A training job draws random crops; decoding its whole training set first costs memory and start-up
time in proportion to the set (DF2K: about 28 GB and 8 minutes per job). The store is built once
per training set instead: every clean training image becomes ``{arrays}/{sha256}.npy``, an
``(H, W, 3)`` uint8 C-order ``.npy`` named by the sha256 of its clean file (the manifest's
``sha256``), so a rebuild redoes only the images that changed and drops the arrays no image uses
any more. A crop maps the file, copies the rows and columns it covers and unmaps it
(:meth:`CropStore.crop`): a job's memory is its batch and prefetch depth, whatever the number or
size of the images, and opening the store reads only the ``.npy`` headers (and checks each file's
size, so a truncated array is named at the start of a job). ``{arrays}/sha256.json`` records the
checksum of each array file as written; a rebuild rewrites an array that no longer matches it.

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
import json
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


def _array_problem(path: Path, height: int, width: int) -> str | None:
    """Why the array file ``path`` cannot be the ``height x width`` image (missing, not a ``.npy``,
    another shape or type, truncated), or None. Reads the header only."""
    try:
        shape, dtype, fortran, offset = _npy_header(path)
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as err:
        return f"not a readable .npy array ({err})"
    if shape != (height, width, 3) or dtype != np.uint8 or fortran:
        return f"array {shape} {dtype} does not match the store index ({height}x{width}x3 uint8)"
    size, expected = path.stat().st_size, offset + height * width * 3
    if size != expected:
        return f"{size} bytes where its header needs {expected} ({'truncated' if size < expected else 'extra data'})"
    return None


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# Beside the arrays: the sha256 of each array file as written ({"<name>.npy": hex}). The arrays
# are named by the sha256 of their clean PNG, which says which image an array should hold but not
# that the file still holds it; a rebuild checks each kept array against this record.
CHECKSUMS = "sha256.json"


def _read_checksums(arrays: Path) -> dict[str, str]:
    try:
        recorded = json.loads((arrays / CHECKSUMS).read_text())
    except (OSError, ValueError):
        return {}  # none yet (a store of an older version, or a build killed before the end)
    return recorded if isinstance(recorded, dict) else {}


def _build_one(row, arrays: Path, recorded: dict[str, str]) -> tuple[bool, str, str | None]:
    """Write the array of one manifest row unless a valid one is there: ``(written, sha256 of the
    array file, why an existing array was replaced or None)``."""
    target = arrays / f"{row.sha256}.npy"
    problem = _array_problem(target, row.height, row.width)
    if problem is None:
        digest = file_sha256(target)
        if digest == recorded.get(target.name):
            return False, digest, None
        # Unrecorded (a build killed after writing it) or changed since: rebuilt, not trusted.
        if target.name in recorded:
            problem = f"sha256 {digest[:12]}... differs from the {recorded[target.name][:12]}... recorded when written"
    data = Path(row.path).read_bytes()
    if hashlib.sha256(data).hexdigest() != row.sha256:
        raise io.BadImageError(f"{row.path}: changed since the clean set was built (sha256 differs): rebuild it")
    image = io.decode_clean(data, row.path)
    if image.shape != (row.height, row.width, 3):
        raise io.BadImageError(f"{row.path}: {image.shape} does not match the manifest's {row.height}x{row.width}")
    # A file object: np.save would append .npy to the temporary name. build_store removes what a
    # killed build left in the folder once, at the end (a scan per array costs 6 ms x 3,450 on DF2K).
    with io.atomic_path(target, clean_stale=False) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, image, allow_pickle=False)
        digest = file_sha256(tmp)
    replaced = None if problem in (None, "missing") else f"{target}: {problem}; rebuilt"
    return True, digest, replaced


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
    recorded = _read_checksums(arrays)
    # One write per array: two identical images share one (two writers of one file would race).
    unique = list({r.sha256: r for r in rows}.values())
    with ThreadPoolExecutor(max(1, threads)) as pool:
        built = pool.map(lambda r: _build_one(r, arrays, recorded), unique)
        results = list(tqdm(built, total=len(unique), desc="crop store", unit="img"))
    written = [w for w, _, _ in results]
    for _, _, replaced in results:
        if replaced:
            print(replaced)
    checksums = {f"{r.sha256}.npy": digest for r, (_, digest, _) in zip(unique, results)}
    with io.atomic_path(arrays / CHECKSUMS) as tmp:
        tmp.write_text(json.dumps(checksums, indent=0, sort_keys=True) + "\n")
    # Images removed or edited since the last build, and what a killed build left (an array's
    # atomic_path temporary is a folder).
    stale = [p for p in arrays.iterdir() if p.name not in checksums and p.name != CHECKSUMS]
    for path in stale:
        io.remove_path(path)
    index = pd.DataFrame(
        [[r.image_id, int(r.height), int(r.width), r.sha256, str(arrays / f"{r.sha256}.npy")] for r in rows],
        columns=tables.columns("store_index"),
    )
    tables.write(index, "store_index", index_path)
    reused = len(unique) - sum(written)
    print(f"{len(rows)} images: {sum(written)} written, {reused} reused, {len(stale)} stale removed")
    return index


REBUILD_HINT = "rebuild the store (snakemake --forcerun train_store, or python -m grids.store)"


class CropStore:
    """Crops of the images of a store index, read from disk one crop at a time."""

    def __init__(self, index: pd.DataFrame):
        self.paths = index.path.tolist()
        self.shapes = list(zip(index.height.astype(int), index.width.astype(int)))
        self.offsets = []
        for path, (h, w) in zip(self.paths, self.shapes):
            # Header and size only (the content is checked by a rebuild): cheap at every job start,
            # and a truncated array is named here instead of failing a crop deep in training.
            problem = _array_problem(Path(path), h, w)
            if problem:
                raise ValueError(f"{path}: {problem}: {REBUILD_HINT}")
            self.offsets.append(_npy_header(path)[3])

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
