"""The similarity stage on CUDA against CPU: same GGD rows, same matrix (within float tolerance).

    .venv/bin/python bench/bench_cuda_matrix.py [--out ggd_cuda_cpu.parquet]

Runs :func:`grids.similarity.fit_set` (the stage itself: images -> descriptor features -> PCA ->
GGD) for the clean set and every degraded set of ``results/`` (``snakemake degraded_datasets``
first) with the default config's feature settings, once on CUDA and once on the CPU; prints per set
alpha and sigma from both and the seconds each took, then the largest |Δ distance_sym| between the
two 12 x 12 matrices, and the CUDA matrix. ``--srga`` adds a CUDA-only pass at SRGA's scale (800
patches of 32², PCA 300) timing the whole stage per set.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch
import yaml

from grids.config import SHIPPED_DESCRIPTOR, validate_config
from grids.degradations import NAMES
from grids.similarity import CLEAN, fit_set, similarity_table, wide_matrix


def manifest(name: str) -> pd.DataFrame:
    return pd.read_parquet(
        "results/clean/manifest.parquet" if name == CLEAN else f"results/degraded/{name}/manifest.parquet"
    )


def run(features: dict, device: str, descriptor: str) -> pd.DataFrame:
    rows = [fit_set(name, manifest(name), descriptor, features, 0, device) for name in [CLEAN, *NAMES]]
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--descriptor", default=str(SHIPPED_DESCRIPTOR))
    parser.add_argument("--srga", action="store_true", help="also time the stage on CUDA at SRGA scale")
    parser.add_argument("--out", help="write every GGD row (with a scale column) to this Parquet file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check compares CUDA against the CPU")
    features = validate_config(yaml.safe_load(open("config/config.yaml")))["features"]
    run({**features, "n_patches": 32}, "cuda", args.descriptor)  # warm-up: CUDA context, cuDNN plans
    cuda, cpu = run(features, "cuda", args.descriptor), run(features, "cpu", args.descriptor)
    print(
        f"default scale ({features['n_patches']} patches of {features['patch_size']}², "
        f"PCA {features['pca_components']}); "
        f"CUDA: {torch.cuda.get_device_name()}, CPU: {torch.get_num_threads()} threads"
    )
    table = pd.DataFrame(
        {
            "set": cuda.degradation,
            "alpha cuda": cuda.alpha,
            "alpha cpu": cpu.alpha,
            "sigma cuda": cuda.sigma,
            "sigma cpu": cpu.sigma,
            "s cuda": cuda.seconds,
            "s cpu": cpu.seconds,
        }
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
    a, b = similarity_table(cuda), similarity_table(cpu)
    diff = np.abs(a.distance_sym.to_numpy() - b.distance_sym.to_numpy())
    print(
        f"max |alpha cuda - cpu| / alpha: {np.max(np.abs(cuda.alpha - cpu.alpha) / cpu.alpha):.2e}; "
        f"max |distance_sym cuda - cpu|: {diff.max():.2e} (mean {diff.mean():.2e})"
    )
    print(wide_matrix(a).round(2).to_string())
    frames = [cuda.assign(scale="default"), cpu.assign(scale="default")]
    if args.srga:
        srga = {**features, "n_patches": 800, "patch_size": 32, "pca_components": 300, "layer": "conv_last_input"}
        fit_set(CLEAN, manifest(CLEAN), args.descriptor, srga, 0, "cuda")  # warm-up at this shape
        big = run(srga, "cuda", args.descriptor)
        print(
            f"SRGA scale on CUDA, whole stage per set (images, features, PCA, fit): "
            f"median {big.seconds.median():.3f} s, max {big.seconds.max():.3f} s"
        )
        print(big[["degradation", "alpha", "sigma", "seconds"]].to_string(index=False))
        frames.append(big.assign(scale="srga"))
    if args.out:
        pd.concat(frames, ignore_index=True).to_parquet(args.out)


if __name__ == "__main__":
    main()
