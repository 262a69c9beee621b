"""Does `grids restore` leave a clean photo alone? Eight scikit-image photos that no set of the
default run uses, through the real commands with the default settings.

    cd RUN && .venv/bin/python /path/to/bench/bench_clean_photos.py   # RUN: a built workflow (all)

For each photo (greyscale ones as RGB, alpha dropped) it runs `grids select --json` and `grids
restore` in the run's folder, as a user would, and prints the choice, the expected gain and the
PSNR of the output against the photo (60 dB: unchanged; README "Choosing the model" asks for >= 45
dB), with each command's wall seconds (Python, torch and the descriptor loading included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data

from grids import io
from grids.evaluate import psnr

PHOTOS = [
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "moon.png",
    "coins.png",
    "brick.png",
]


def as_rgb(path: Path) -> np.ndarray:
    image = io.read_image(path)[0]
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def grids(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "grids.cli", *args], capture_output=True, text=True, check=True)
    return done, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    header = f"{'photo':18s} {'size':>9s}  {'grids select':44s} {'PSNR out vs in':>14s}"
    print(f"{header} {'select s':>8s} {'restore s':>9s}")
    with tempfile.TemporaryDirectory() as folder:
        for name in PHOTOS:
            photo = Path(folder) / f"{Path(name).stem}.png"
            image = as_rgb(Path(skimage.data.data_dir) / name)
            io.write_png(photo, image)
            selected, select_s = grids("select", str(photo), "--json")
            answer = json.loads(selected.stdout)[0]
            out = Path(folder) / f"out_{photo.name}"
            _, restore_s = grids("restore", str(photo), "-o", str(out))
            said = "nothing to restore" if answer["nothing_to_restore"] else answer["group"]
            if not answer["nothing_to_restore"] and answer["expected_gain"] is not None:
                said += f", expect {answer['expected_gain']:+.1f} dB"
            size = f"{image.shape[1]}x{image.shape[0]}"
            quality = psnr(io.read_image(out)[0], image)
            print(f"{photo.stem:18s} {size:>9s}  {said:44s} {quality:14.2f} {select_s:8.2f} {restore_s:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
