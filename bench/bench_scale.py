"""Scale rehearsal: the real data and training stages on synthetic DF2K-shaped training sets.

    .venv/bin/python bench/bench_scale.py --n 50,200,800 --work /tmp/grids_scale

Builds N synthetic photographs of 2040x1356 px (DF2K's typical size): a random crop of one of the
shipped photos, flipped at random, upscaled bicubically and given film grain (sigma 1.5-3), so the
PNGs weigh what DIV2K's do (about 4.5 MB). The largest set is generated once; smaller ones are hard
links to its first files. For each N it runs, each as its own subprocess (so its peak RSS is its
own, from ``os.wait4``):

* ``clean set``: ``python -m grids.data`` on the folder (check every file, hash, reference it in
  place), with ``--threads`` worker processes and with 1 (fitted per-image costs give the speed-up);
* ``crop store``: ``python -m grids.store`` (decode once, write the uint8 arrays), ``--threads``;
* ``train 1 step`` and ``train 4 steps``: ``python -m grids.train --store`` with a small SRResNet
  (32 features, 4 blocks) on batch 8 x 256² crops (the paper's crop), all 11 degradations online,
  on CPU. The 1-step job's wall time bounds the time to first step (it includes the start,
  opening the store, the first step and writing the checkpoint);
* with ``--compare-decode``, ``train 1 step`` also with ``--clean``: the old path, which decodes
  the whole set into memory before its first step.

Then once, on the largest N's model: ``evaluate`` on a test set of ``--eval-images`` of the
images, degraded by jpeg and gaussian_noise (``python -m grids.data`` + ``grids.degrade``).

Prints one markdown table (wall s, peak RSS MB of the stage's processes together, MB written,
and the 1-minute load average after the stage: other work on the machine shows there), the fitted
per-image cost (least squares ``a + b N``) of the clean set and the store, their extrapolation to
N = 3,450 (DF2K), and the ratios largest / smallest N of the training job's peak RSS and time to
first step (targets: <= 1.2), and the clean set's 2-thread / 1-thread rate (target >= 1.7 on 2
cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grids import io
from grids.config import SHIPPED_PHOTOS, validate_config
from grids.store import CropStore

WIDTH, HEIGHT, DF2K = 2040, 1356, 3450
STEPS = 4  # the second training job's steps (CPU: several seconds each at batch 8 x 256²)
PHOTOS: list[np.ndarray] = []
CPU_SECONDS: list[float] = []  # per run(), in order: robust to other load on the machine, unlike wall time


def _load_photos() -> None:
    PHOTOS.extend(io.read_image(p)[0] for p in sorted(SHIPPED_PHOTOS.glob("*.jpg")))


def synthetic_photo(i: int) -> np.ndarray:
    rng = np.random.default_rng([2040, i])
    src = PHOTOS[i % len(PHOTOS)]
    h, w = src.shape[:2]
    scale = rng.uniform(0.6, 1.0)
    ch, cw = int(h * scale), int(w * scale)
    top, left = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
    crop = src[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    big = cv2.resize(np.ascontiguousarray(crop), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    big += rng.standard_normal(big.shape, dtype=np.float32) * rng.uniform(1.5, 3.0)  # grain: real PNG sizes
    return np.clip(big, 0, 255).astype(np.uint8)


def _write(args: tuple[int, str]) -> int:
    i, folder = args
    path = Path(folder) / f"{i:04d}.png"
    if not path.exists():
        with io.atomic_path(path) as tmp:
            io.write_png(tmp, synthetic_photo(i))
    return path.stat().st_size


def generate(folder: Path, n: int, workers: int) -> float:
    """``n`` images in ``folder`` (kept between runs); returns the mean file size in MB."""
    folder.mkdir(parents=True, exist_ok=True)
    with Pool(workers, initializer=_load_photos) as pool:
        sizes = pool.map(_write, [(i, str(folder)) for i in range(n)], chunksize=4)
    return float(np.mean(sizes)) / 1e6


def subset(source: Path, folder: Path, n: int) -> Path:
    """The first ``n`` images of ``source`` as hard links in ``folder`` (no extra disk)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*.png"))[:n]:
        os.link(path, folder / path.name)
    return folder


def disk_mb(*paths: Path) -> float:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return total / 1e6


def run(command: list[str], cwd: Path) -> tuple[float, float]:
    """``(wall s, peak RSS MB)`` of one stage, run as its own process. The peak is the larger of the
    process's own (``wait4``) and the sum over it and its worker processes, sampled every 50 ms (a
    sum counts shared pages once per process: it can only overstate)."""
    import psutil

    start = time.perf_counter()
    job = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(job.pid)
            while not done.is_set():
                total = 0
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total)
                time.sleep(0.05)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = job.stderr.read()
    _, status, usage = os.wait4(job.pid, 0)
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{stderr.decode()[-3000:]}")
    CPU_SECONDS.append(usage.ru_utime + usage.ru_stime)  # its own and its reaped workers' CPU time
    return wall, max(usage.ru_maxrss / 1024, peak[0] / 2**20)


def images_json(folder: Path) -> str:
    return json.dumps({"photos": [], "dead_leaves": {"count": 0, "size": 64}, "folder": str(folder), "min_side": 256})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="50,200,800", help="training set sizes")
    parser.add_argument(
        "--work", default="/tmp/grids_scale", help="scratch folder (needs ~13 MB per image of the largest N)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of the clean set and store stages")
    parser.add_argument("--eval-images", type=int, default=2, help="test images of the evaluation (0: none)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the 1-step training job (best wall time kept)")
    parser.add_argument("--compare-decode", action="store_true", help="also time the old in-memory training start")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.n.split(","))
    work = Path(args.work)
    py = sys.executable
    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    entries = config["degradations"]
    group = "+".join(sorted(entries))
    recipe = {k: v for k, v in config["training"].items() if k not in ("images", "test_sets", "runtime")}
    recipe.update(
        arch="srresnet",
        arch_kwargs={"num_feat": 32, "num_block": 4},
        batch_size=8,
        crop=256,
        warmup=1,
        checkpoint_every=1000,
    )

    tic = time.perf_counter()
    mean_mb = generate(work / "source", sizes[-1], args.threads)
    print(
        f"generated {sizes[-1]} images of {WIDTH}x{HEIGHT} (mean PNG {mean_mb:.2f} MB) in "
        f"{time.perf_counter() - tic:.0f} s",
        flush=True,
    )
    rows, fits, loads = [], {"clean set": [], "clean set, 1 thread": [], "crop store": []}, []
    ttfs, rss_train, opened = {}, {}, {}
    for n in sizes:
        folder = subset(work / "source", work / f"folder_{n}", n)
        run_dir = work / f"run_{n}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir()
        base = [py, "-m", "grids.data", "--images", images_json(folder), "--seed", "0", "--dataset", "train"]
        thread_counts = [1, args.threads] if args.threads > 1 else [1]
        for threads in thread_counts:
            out = run_dir / f"clean_t{threads}"
            files = [
                "--manifest",
                str(out / "manifest.parquet"),
                "--images-dir",
                str(out / "images"),
                "--checks",
                str(out / "checks.parquet"),
            ]
            wall, rss = run([*base, "--threads", str(threads), *files], ROOT)
            rows.append((f"clean set ({threads} thr)", n, wall, rss, disk_mb(out)))
            fits["clean set" if threads == args.threads else "clean set, 1 thread"].append((n, wall))
            loads.append((os.getloadavg()[0], CPU_SECONDS[-1]))
            print(rows[-1], flush=True)
        manifest = run_dir / f"clean_t{args.threads}" / "manifest.parquet"
        store = run_dir / "store"
        wall, rss = run(
            [
                py,
                "-m",
                "grids.store",
                "--clean",
                str(manifest),
                "--index",
                str(store / "index.parquet"),
                "--arrays",
                str(store / "arrays"),
                "--threads",
                str(args.threads),
            ],
            ROOT,
        )
        rows.append((f"crop store ({args.threads} thr)", n, wall, rss, disk_mb(store)))
        fits["crop store"].append((n, wall))
        loads.append((os.getloadavg()[0], CPU_SECONDS[-1]))
        print(rows[-1], flush=True)
        for steps in (1, STEPS):
            out = run_dir / f"model_{steps}.pth"
            command = [
                py,
                "-m",
                "grids.train",
                "--group",
                group,
                "--store",
                str(store / "index.parquet"),
                "--degradations",
                json.dumps(entries),
                "--recipe",
                json.dumps({**recipe, "iterations": steps}),
                "--seed",
                "0",
                "--out",
                str(out),
                "--log",
                str(run_dir / f"log_{steps}.parquet"),
                "--resume",
                str(run_dir / f"resume_{steps}.pth"),
                "--device",
                "cpu",
                "--threads",
                str(args.threads),
            ]
            # the 1-step job bounds the time to first step: best of --repeat runs, other load being noise
            runs = [run(command, ROOT) for _ in range(args.repeat if steps == 1 else 1)]
            wall, rss = min(r[0] for r in runs), max(r[1] for r in runs)
            CPU_SECONDS[-len(runs) :] = [min(CPU_SECONDS[-len(runs) :])]
            label = f"train {steps} step{'s' if steps > 1 else ''} (store)"
            rows.append((label + (f", best of {len(runs)}" if len(runs) > 1 else ""), n, wall, rss, disk_mb(out)))
            loads.append((os.getloadavg()[0], CPU_SECONDS[-1]))
            print(rows[-1], flush=True)
            if steps == 1:
                ttfs[n], rss_train[n] = wall, rss
        tic = time.perf_counter()
        CropStore.open(store / "index.parquet")  # what a training job does before its first crop
        opened[n] = time.perf_counter() - tic
        if args.compare_decode:
            command[command.index("--store") : command.index("--store") + 2] = ["--clean", str(manifest)]
            command[command.index("--recipe") + 1] = json.dumps({**recipe, "iterations": 1})
            command[command.index("--resume") + 1] = str(run_dir / "resume_decode.pth")
            command[command.index("--out") + 1] = str(run_dir / "model_decode.pth")
            wall, rss = run(command, ROOT)
            rows.append(("train 1 step (decode all, old)", n, wall, rss, 0.0))
            loads.append((os.getloadavg()[0], CPU_SECONDS[-1]))
            print(rows[-1], flush=True)

    # evaluation of the largest N's 4-step model on a few 2K test images, 2 degradations
    n = sizes[-1]
    if args.eval_images:
        evaluation(args, work, n, entries, rows, loads)
    report(args, sizes, rows, loads, fits, ttfs, rss_train, opened)


def evaluation(args, work: Path, n: int, entries: dict, rows: list, loads: list) -> None:
    py = sys.executable
    test = work / f"run_{n}" / "test"
    folder = subset(work / "source", work / "test_folder", args.eval_images)
    run(
        [
            py,
            "-m",
            "grids.data",
            "--images",
            images_json(folder),
            "--seed",
            "0",
            "--dataset",
            "test-bench",
            "--manifest",
            str(test / "clean" / "manifest.parquet"),
            "--images-dir",
            str(test / "clean" / "images"),
        ],
        ROOT,
    )
    for name in ("jpeg", "gaussian_noise"):
        run(
            [
                py,
                "-m",
                "grids.degrade",
                "--clean",
                str(test / "clean" / "manifest.parquet"),
                "--name",
                name,
                "--entry",
                json.dumps(entries[name]),
                "--seed",
                "0",
                "--dataset",
                "test-bench",
                "--manifest",
                str(test / "degraded" / name / "manifest.parquet"),
                "--images-dir",
                str(test / "degraded" / name / "images"),
            ],
            ROOT,
        )
    wall, rss = run(
        [
            py,
            "-m",
            "grids.evaluate",
            "--model",
            str(work / f"run_{n}" / f"model_{STEPS}.pth"),
            "--test-set",
            "bench",
            str(test / "clean" / "manifest.parquet"),
            str(test / "degraded" / "jpeg" / "manifest.parquet"),
            str(test / "degraded" / "gaussian_noise" / "manifest.parquet"),
            "--degradations",
            "jpeg",
            "gaussian_noise",
            "--out",
            str(test / "eval.parquet"),
            "--device",
            "cpu",
            "--threads",
            str(args.threads),
        ],
        ROOT,
    )
    rows.append(
        (f"evaluate ({args.eval_images} images x 2 degradations)", n, wall, rss, disk_mb(test / "eval.parquet"))
    )
    loads.append((os.getloadavg()[0], CPU_SECONDS[-1]))


def report(args, sizes, rows, loads, fits, ttfs, rss_train, opened) -> None:
    print(
        f"\n{os.cpu_count()} CPU threads, {args.threads} stage threads (clean set: worker processes; store: threads); "
        "training SRResNet 32/4, batch 8 x 256², "
        f"11 degradations online, CPU fp32\n"
    )
    print("| stage | N | wall s | CPU s | peak RSS MB | MB written | load after |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (stage, n, wall, rss, mb), (load, cpu) in zip(rows, loads):
        print(f"| {stage} | {n} | {wall:.1f} | {cpu:.1f} | {rss:.0f} | {mb:.1f} | {load:.1f} |")
    print()
    for stage, points in fits.items():
        x, y = np.array(points, float).T
        b, a = np.polyfit(x, y, 1) if len(x) > 1 else (y[0] / x[0], 0.0)
        store_mb = [r[4] for r in rows if r[0].startswith("crop store")]
        extra = ""
        if stage == "crop store":
            per_image = store_mb[-1] / sizes[-1]
            extra = f"; disk {per_image:.2f} MB/image -> {per_image * DF2K / 1e3:.1f} GB at N = {DF2K}"
        print(
            f"{stage}: {a:.1f} s + {b:.3f} s/image ({1 if '1 thread' in stage else args.threads} threads) "
            f"-> {(a + b * DF2K) / 60:.1f} min at "
            f"N = {DF2K}{extra}"
        )
    lo, hi = sizes[0], sizes[-1]
    print(
        f"training job, N {lo} -> {hi}: peak RSS {rss_train[lo]:.0f} -> {rss_train[hi]:.0f} MB "
        f"(ratio {rss_train[hi] / rss_train[lo]:.3f}), time to first step {ttfs[lo]:.1f} -> {ttfs[hi]:.1f} s "
        f"(ratio {ttfs[hi] / ttfs[lo]:.3f}); targets <= 1.2"
    )
    print(
        "opening the store (CropStore.open, in this process): "
        + ", ".join(f"N = {n}: {opened[n] * 1e3:.1f} ms" for n in sizes)
    )
    if args.threads > 1:
        slope = {k: np.polyfit(*np.array(v, float).T, 1)[0] for k, v in fits.items() if len(v) > 1}
        if len(slope) == 3:
            print(
                f"clean set: {args.threads} threads run {slope['clean set, 1 thread'] / slope['clean set']:.2f}x the "
                "1-thread rate per image (fitted slopes; target >= 1.7 on 2 cores)"
            )


if __name__ == "__main__":
    main()
