"""Stage ``degrade``: the degraded copy of the clean set for one degradation.

Writes ``{out}/images/{image_id}.png`` and ``{out}/manifest.parquet`` with one row per image
(columns: table ``degraded_manifest`` of :mod:`grids.tables`: the drawn parameters as JSON, the
seed of the image's generator, the sha256 of the PNG file). Each image's
generator is seeded from (config seed, dataset, degradation, image id), so results do not depend on job
order, and the same config gives the same bytes.

    python -m grids.degrade --clean results/clean/manifest.parquet --name jpeg \
        --entry '{"quality": [10, 40]}' --seed 0 \
        --manifest results/degraded/jpeg/manifest.parquet --images-dir results/degraded/jpeg/images
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import io, tables
from .degradations import get_degradation
from .seeds import derive_seed


def degrade_dataset(
    clean: pd.DataFrame,
    name: str,
    entry: dict,
    seed: int,
    manifest_path: str | Path,
    images_dir: str | Path,
    dataset: str = "similarity",
) -> pd.DataFrame:
    """Degrade every image of the ``clean`` manifest with ``name`` (config ``entry``): the PNGs go
    into ``images_dir``, the rows to ``manifest_path``.

    Each image's generator is seeded from (seed, dataset, degradation, image id).
    """
    images_dir = Path(images_dir)
    degradation = get_degradation(name, entry)
    rows = []
    with io.atomic_path(images_dir) as tmp_images:
        tmp_images.mkdir()
        for row in tqdm(clean.itertuples(), total=len(clean), desc=name, unit="img"):
            image = io.load_png(row.path)
            image_seed = derive_seed(seed, "degrade", dataset, name, row.image_id)
            try:
                degraded, params = degradation(image, np.random.default_rng(image_seed))
            except ValueError as err:  # a user function breaking its contract: say on which image
                raise ValueError(f"{err} (image {row.image_id}, {row.path})") from None
            path = images_dir / f"{row.image_id}.png"
            sha = io.write_png(tmp_images / path.name, degraded)
            rows.append(
                [
                    row.image_id,
                    row.source_path,
                    row.path,
                    name,
                    json.dumps(params, sort_keys=True),
                    image_seed,
                    str(path),
                    sha,
                ]
            )
    manifest = pd.DataFrame(rows, columns=tables.columns("degraded_manifest"))
    manifest["seed"] = manifest["seed"].astype("int64")
    tables.write(manifest, "degraded_manifest", manifest_path)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.degrade", description=__doc__.split("\n")[0])
    parser.add_argument("--clean", required=True, help="clean manifest.parquet")
    parser.add_argument("--name", required=True, help="degradation name")
    parser.add_argument("--entry", default="{}", help="its config entry, as JSON")
    parser.add_argument("--seed", type=int, required=True, help="the config's seed")
    parser.add_argument("--dataset", default="similarity", help="the set's name (similarity, a test set)")
    parser.add_argument("--manifest", required=True, help="the manifest to write")
    parser.add_argument("--images-dir", required=True, help="folder for the degraded PNGs")
    args = parser.parse_args(argv)
    clean = io.read_manifest(args.clean)
    manifest = degrade_dataset(
        clean, args.name, json.loads(args.entry), args.seed, args.manifest, args.images_dir, args.dataset
    )
    print(f"{args.name}: {len(manifest)} images -> {args.manifest}")
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
