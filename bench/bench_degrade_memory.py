"""Peak memory of ``grids degrade`` on one huge image, per degradation and image side, side by side.

    .venv/bin/python bench/bench_degrade_memory.py [--sides 2000 6000 12000] [--degradations gaussian_noise ...]

Each row is one real ``grids degrade`` command in a child process (PNG read, degrade, PNG write);
peak RSS is that child's own (``wait4``). The image is a synthetic gradient with
noise, written once per side. The uint8 image alone is ``3 * side**2`` bytes (432 MB at 12000),
one float32 copy four times that; the last column says how many such uint8 images the peak holds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from grids import io


def synthetic(side: int) -> np.ndarray:
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    image = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[None, ::-1]), -1).astype(np.uint8)
    image += np.random.default_rng(0).integers(0, 16, image.shape, dtype=np.uint8)  # wraps: fine for a test card
    return image


def peak_of(command: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one child command (``wait4`` gives that child's own peak)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed with status {child.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[2000, 6000, 12000])
    parser.add_argument("--degradations", nargs="+", default=["gaussian_noise", "poisson_noise", "jpeg"])
    args = parser.parse_args()
    print(f"{'side':>6} {'degradation':15} {'seconds':>8} {'peak GB':>8} {'x uint8 image':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for side in sorted(args.sides):
            source = Path(tmp) / f"{side}.png"
            io.write_png(source, synthetic(side))
            for name in args.degradations:
                out = Path(tmp) / f"{side}_{name}.png"
                command = [sys.executable, "-m", "grids.cli", "degrade", str(source), "-d", name, "-o", str(out)]
                seconds, peak = peak_of(command)
                print(f"{side:>6} {name:15} {seconds:8.1f} {peak:8.2f} {peak / (3 * side * side / 1e9):14.1f}")
                out.unlink()


if __name__ == "__main__":
    main()
