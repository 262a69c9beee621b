"""Clean images: embedded photos, a dead-leaves generator, user folders -> one checked clean set.

Stage ``clean_images``: gathers the configured sources, applies the reading rules of
:mod:`grids.io` and writes ``manifest.parquet`` (one row per image; columns: table
``clean_manifest`` of :mod:`grids.tables`). Generated and embedded images, and user
files that needed a conversion, are written as ``images/{image_id}.png``; a user file that needed
none is checked and hashed but not copied: its ``path`` is the file itself. Every problem with any
input is collected and reported in one error; nothing is written then.

    python -m grids.data --images '{"photos": ["astronaut"]}' --seed 0 --threads 4 \
        --manifest results/clean/manifest.parquet --images-dir results/clean/images \
        --checks results/clean/checks.parquet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from . import io, tables
from .seeds import rng_for

# Colour photographs bundled inside scikit-image's wheel (no download), with their licences.
EMBEDDED_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("astronaut.png", "public domain (NASA)"),
    "chelsea": ("chelsea.png", "CC0 (Stefan van der Walt)"),
    "coffee": ("coffee.png", "CC0 (Rachel Michetti)"),
    "rocket": ("rocket.jpg", "public domain (SpaceX)"),
    "hubble_deep_field": ("hubble_deep_field.jpg", "public domain (NASA/ESA)"),
    "retina": ("retina.jpg", "CC0 (Mikael Häggström)"),
    "immunohistochemistry": ("ihc.png", "no known copyright restrictions (CMMI)"),
}


# The descriptor's held-out photos, shipped in grids/assets/photos (CC licences in its manifest.csv):
# the shipped descriptor never trained on them (train_descriptor holds out every len/3-th photo),
# so they can serve as test images. 512 px on the long side.
SHIPPED_TEST_PHOTOS: dict[str, tuple[str, str]] = {
    "aitzgorri": ("lomiri1604_aitzgorri.jpg", "CC-BY-4.0, Aitzol Berasategi"),
    "free": ("lomiri1604_free.jpg", "CC-BY-SA-4.0, Peter Nerlich"),
    "sunset": ("lomiri1604_sunset.jpg", "CC-BY-4.0, Aitzol Berasategi"),
}

# The other shipped photos (the descriptor's training photos): skies, clipped highlights and dark
# regions, which the scikit-image photos and dead leaves lack and test photos have; a restoration
# model that never sees them learns to repaint such regions (bench/bench_mixed.py).
SHIPPED_TRAINING_PHOTOS: dict[str, tuple[str, str]] = {
    "bridge": ("lomiri1604_bridge.jpg", "CC-BY-SA-4.0, Sander Klootwijk"),
    "brushes": ("lomiri1604_brushes.jpg", "CC-BY-4.0, Trevor Freespace"),
    "dragonfly": ("lomiri1604_dragonfly.jpg", "CC-BY-SA-4.0, Bolly"),
    "fig_bowl": ("lomiri1604_fig_bowl.jpg", "CC-BY-4.0, Trevor Freespace"),
    "friends": ("lomiri1604_friends.jpg", "CC-BY-4.0, Aitzol Berasategi"),
    "greentock": ("lomiri1604_greentock.jpg", "CC-BY-SA-4.0, Peter Nerlich"),
    "kleiber": ("lomiri2004_kleiber.jpg", "CC-BY-SA-3.0, Lukas Baubkus"),
    "life": ("lomiri1604_life.jpg", "CC-BY-4.0, Aitzol Berasategi"),
    "picos_de_europa": ("lomiri1604_picos_de_europa.jpg", "CC-BY-4.0, Aitzol Berasategi"),
    "seeding": ("lomiri1604_seeding.jpg", "CC0-1.0, Clemens Engelhardt"),
    "wine": ("lomiri1604_wine.jpg", "CC-BY-4.0, Jakub Mede"),
}
SHIPPED_PHOTOS = {**SHIPPED_TEST_PHOTOS, **SHIPPED_TRAINING_PHOTOS}


def embedded_photo_path(name: str) -> Path:
    import skimage.data

    if name in SHIPPED_PHOTOS:
        return Path(__file__).parent / "assets" / "photos" / SHIPPED_PHOTOS[name][0]
    if name not in EMBEDDED_PHOTOS:
        choices = [*EMBEDDED_PHOTOS, *SHIPPED_PHOTOS]
        raise KeyError(f"unknown embedded photo {name!r}; choose from {', '.join(choices)}")
    return Path(skimage.data.__file__).parent / EMBEDDED_PHOTOS[name][0]


def dead_leaves(size: int, rng: np.random.Generator, r_min: float = 1.5, r_max: float | None = None) -> np.ndarray:
    """A dead-leaves image: occluding random shapes with power-law sizes, ``uint8 (size, size, 3)``.

    Radii follow ``p(r) ~ r^-3`` on ``[r_min, r_max]`` (the scale-invariant law of natural
    images); shapes are discs, ellipses and rotated rectangles with random colours (moderate
    saturation, like photographs), painted back to front until the canvas is covered many times
    over, at 2x then area-downsampled for anti-aliased edges.
    """
    r_max = r_max or size / 4
    ss = 2  # supersampling factor
    canvas = np.empty((size * ss, size * ss, 3), np.uint8)
    canvas[:] = _leaf_colour(rng)
    mean_area = math.pi * r_min**2 * r_max**2 * 2 * math.log(r_max / r_min) / (r_max**2 - r_min**2)
    n_shapes = int(6 * size * size / mean_area)  # about 6 layers deep on average
    u = rng.random(n_shapes)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    kinds = rng.choice(3, size=n_shapes, p=[0.6, 0.2, 0.2])
    centres = rng.uniform(-r_max, size + r_max, size=(n_shapes, 2))
    angles = rng.uniform(0, 180, n_shapes)
    aspects = rng.uniform(0.3, 1.0, n_shapes)
    for r, kind, (cx, cy), angle, aspect in zip(radii, kinds, centres, angles, aspects):
        colour = _leaf_colour(rng)
        centre = (int(cx * ss * 16), int(cy * ss * 16))  # 4 fractional bits
        axes = (max(1, int(r * ss * 16)), max(1, int(r * aspect * ss * 16)))
        if kind == 0:
            cv2.circle(canvas, centre, axes[0], colour, -1, cv2.LINE_AA, 4)
        elif kind == 1:
            cv2.ellipse(canvas, centre, axes, angle, 0, 360, colour, -1, cv2.LINE_AA, 4)
        else:
            box = cv2.boxPoints(((cx * ss, cy * ss), (2 * r * ss, 2 * r * aspect * ss), angle))
            cv2.fillPoly(canvas, [np.rint(box * 16).astype(np.int32)], colour, cv2.LINE_AA, 4)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)


def _leaf_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    hsv = np.array([[[rng.uniform(0, 180), rng.beta(2, 3) * 200, rng.beta(2, 2) * 255]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


@dataclass(frozen=True)
class Source:
    image_id: str
    kind: str  # "embedded" | "dead_leaves" | "folder"
    path: str  # file path, or a description for generated images


def list_sources(images_cfg: dict, seed: int, dataset: str = "similarity") -> list[Source]:
    """Every clean image the config asks for, in a fixed order; duplicate ids are an error."""
    sources = [Source(n, "embedded", str(embedded_photo_path(n))) for n in images_cfg.get("photos", [])]
    leaves = images_cfg.get("dead_leaves", {})
    for i in range(leaves.get("count", 0)):
        sources.append(
            Source(f"dead_leaves_{i:03d}", "dead_leaves", f"dead_leaves(seed={seed}, dataset={dataset}, index={i})")
        )
    if images_cfg.get("folder"):
        files, _ = io.list_image_files(images_cfg["folder"])
        sources += [Source(p.stem, "folder", str(p)) for p in files]
    seen: dict[str, Source] = {}
    clashes = []
    for s in sources:
        if s.image_id in seen:
            clashes.append(f"  image id {s.image_id!r}: {seen[s.image_id].path} and {s.path}")
        seen.setdefault(s.image_id, s)
    if clashes:
        raise io.BadImageError("duplicate image names (file stems must be unique):\n" + "\n".join(clashes))
    if not sources:
        where = images_cfg.get("folder") or "the config"
        raise io.BadImageError(f"no clean images: {where} yields none (empty folder?)")
    return sources


def load_source(
    source: Source, images_cfg: dict, seed: int, dataset: str = "similarity"
) -> tuple[np.ndarray, list[str]]:
    if source.kind == "dead_leaves":
        index = int(source.image_id.rsplit("_", 1)[1])
        size = images_cfg["dead_leaves"]["size"]
        # The dataset's name is part of the seed: training and test sets never share an image.
        return dead_leaves(size, rng_for(seed, "dead_leaves", dataset, index)), []
    return io.read_image(source.path, images_cfg.get("min_side", 1))


def set_paths(folder: str | Path) -> tuple[Path, Path, Path]:
    """The manifest, images folder and checks cache of a set kept in one folder, as the workflow
    lays out ``results/clean`` (for callers of :func:`prepare_clean_set` outside the workflow)."""
    folder = Path(folder)
    return folder / "manifest.parquet", folder / "images", folder / "checks.parquet"


def prepare_clean_set(
    images_cfg: dict,
    seed: int,
    manifest_path: str | Path,
    images_dir: str | Path,
    checks_path: str | Path | None = None,
    dataset: str = "similarity",
    threads: int = 1,
) -> pd.DataFrame:
    """Write the checked clean set: its PNGs into ``images_dir``, its rows to ``manifest_path``.

    ``dataset`` names the set (``similarity``, ``train``, a test set): generated images differ
    between datasets. Generated and embedded images are written as PNGs; a user folder's file is
    decoded and checked (the rules of :mod:`grids.io`) but referenced in place when it needed no
    conversion, and written as a PNG only when it did. Files are checked by ``threads`` processes.
    ``checks_path`` remembers the files that passed, by sha256: on a rerun (a file of the folder
    edited, added or removed) a file with the same bytes is hashed, not decoded again.
    """
    images_dir = Path(images_dir)
    sources = list_sources(images_cfg, seed, dataset)
    cache_path = Path(checks_path) if checks_path is not None else None
    min_side = images_cfg.get("min_side", 1)
    cache = {}
    if cache_path is not None and cache_path.is_file():
        table = pd.read_parquet(cache_path)
        table = table[table.min_side == min_side]
        cache = dict(zip(table.sha256, zip(table.height.astype(int), table.width.astype(int))))
    with io.atomic_path(images_dir) as tmp_images:
        tmp_images.mkdir()
        context = {
            "images_cfg": images_cfg,
            "seed": seed,
            "dataset": dataset,
            "images_dir": images_dir,
            "tmp_images": tmp_images,
            "cache": cache,
        }
        progress = {"total": len(sources), "desc": "clean images", "unit": "img"}
        if threads > 1:
            # Processes, not threads: Pillow's full decode (the check) holds the GIL for much of its
            # work, so threads barely beat one core. Each worker returns only its manifest row.
            spawn = multiprocessing.get_context("spawn")
            workers = min(threads, len(sources))
            with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_init_worker, initargs=(context,)) as pool:
                results = list(tqdm(pool.map(_check, sources), **progress))
        else:
            _init_worker(context)
            results = [_check(source) for source in tqdm(sources, **progress)]
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            raise io.BadImageError(f"{len(errors)} bad input image(s), nothing written:\n" + "\n".join(errors))
    manifest = pd.DataFrame(results, columns=tables.columns("clean_manifest"))
    in_place = manifest[(manifest.source == "folder") & (manifest.conversions == "")]
    checks = pd.DataFrame(
        {"sha256": in_place.sha256, "min_side": min_side, "height": in_place.height, "width": in_place.width}
    )
    if cache_path is not None:
        tables.write(checks.reset_index(drop=True), "clean_checks", cache_path)
    tables.write(manifest, "clean_manifest", manifest_path)
    return manifest


_WORKER: dict = {}  # what every check needs, set once per worker process


def _init_worker(context: dict) -> None:
    _WORKER.update(context)


def _check(source: Source) -> list | str:
    """A manifest row, or the message of a bad input (collected, reported together)."""
    c = _WORKER
    try:
        return _clean_row(
            source, c["images_cfg"], c["seed"], c["dataset"], c["images_dir"], c["tmp_images"], c["cache"]
        )
    except io.BadImageError as err:
        return f"  {err}"


def _clean_row(
    source: Source, images_cfg: dict, seed: int, dataset: str, images_dir: Path, tmp_images: Path, cache: dict
) -> list:
    """One manifest row; writes the PNG into ``tmp_images`` unless the user's file is used in place."""
    if source.kind == "folder":
        broken = io.broken_link(Path(source.path))
        if broken:  # the same message read_image gives
            raise io.BadImageError(f"{source.path}: {broken}")
        try:
            data = Path(source.path).read_bytes()
        except OSError as err:
            raise io.BadImageError(f"{source.path}: not a readable file ({err.strerror or err})") from None
        sha = hashlib.sha256(data).hexdigest()
        if sha in cache:  # these very bytes passed the check, needing no conversion
            height, width = cache[sha]
            return [source.image_id, source.kind, source.path, "", height, width, source.path, sha]
        image, conversions = load_source(source, images_cfg, seed, dataset)
        if not conversions:  # the file is the clean image: no second copy of the user's dataset
            return [source.image_id, source.kind, source.path, "", *image.shape[:2], source.path, sha]
    else:
        image, conversions = load_source(source, images_cfg, seed, dataset)
    path = images_dir / f"{source.image_id}.png"
    sha = io.write_png(tmp_images / path.name, image)
    return [source.image_id, source.kind, source.path, ";".join(conversions), *image.shape[:2], str(path), sha]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.data", description=__doc__.split("\n")[0])
    parser.add_argument("--images", required=True, help="the config's `images` section, as JSON")
    parser.add_argument("--seed", required=True, type=int, help="the config's `seed`")
    parser.add_argument("--dataset", default="similarity", help="the set's name (similarity, train, a test set)")
    parser.add_argument("--manifest", required=True, help="the manifest to write, e.g. results/clean/manifest.parquet")
    parser.add_argument("--images-dir", required=True, help="folder for the written PNGs, e.g. results/clean/images")
    parser.add_argument("--checks", help="cache of the user files that passed (kept between runs)")
    parser.add_argument("--threads", type=int, default=1, help="files checked at once (worker processes)")
    args = parser.parse_args(argv)
    manifest = prepare_clean_set(
        json.loads(args.images), args.seed, args.manifest, args.images_dir, args.checks, args.dataset, args.threads
    )
    written = int((manifest.path != manifest.source_path).sum())
    print(
        f"{len(manifest)} clean images -> {args.manifest} ({written} written, {len(manifest) - written} used in place)"
    )
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
