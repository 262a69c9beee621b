"""The ``grids`` command: small helpers around the pipeline (the pipeline itself is Snakemake).

    grids check-config config/config.yaml      validate a config, print it with defaults filled in
    grids degradations                         list the built-in degradations and their defaults
    grids degrade IMAGE -d jpeg -o out.png     preview one degradation on one image
    grids matrix [results/similarity/matrix.parquet]   print the similarity matrix (wide)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

import numpy as np
import yaml

from . import __version__, io
from .config import ConfigError, load_config
from .degradations import BUILTINS, get_degradation

USER_ERRORS = (ConfigError, io.BadImageError, FileNotFoundError, KeyError, ValueError)


def run_stage(main: Callable[[], int]) -> int:
    """Run a stage's ``main``; a user error becomes one line on stderr and exit status 2.

    ``GRIDS_DEBUG=1`` in the environment shows the full traceback instead.
    """
    try:
        return main()
    except USER_ERRORS as err:
        if os.environ.get("GRIDS_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2


def _check_config(args) -> int:
    print(yaml.safe_dump(load_config(args.config), sort_keys=False), end="")
    return 0


def _list_degradations(args) -> int:
    for name, deg in BUILTINS.items():
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in deg.defaults.items())
        print(f"{name:15s} {deg.doc}: {params}")
    return 0


def _degrade(args) -> int:
    image, _ = io.read_image(args.image)
    entry = {}
    if args.config:
        entry = load_config(args.config)["degradations"].get(args.degradation, {})
    degradation = get_degradation(args.degradation, entry)
    out, params = degradation(image, np.random.default_rng(args.seed))
    io.write_png(args.output, out)
    print(json.dumps({"degradation": args.degradation, "params": params, "output": args.output}))
    return 0


def _matrix(args) -> int:
    import pandas as pd

    from .similarity import cluster_order, wide_matrix

    try:
        matrix = pd.read_parquet(args.path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{args.path} not found: build it with `snakemake --cores all similarity_matrix`") from None
    wide = wide_matrix(matrix, args.value)
    if args.cluster:
        order = cluster_order(wide_matrix(matrix))
        wide = wide.loc[order, order]
    print(wide.round(args.digits).to_string())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grids", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"grids {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-config", help="validate a config file")
    p.add_argument("config", nargs="?", default="config/config.yaml")
    p.set_defaults(func=_check_config)
    p = sub.add_parser("degradations", help="list the built-in degradations")
    p.set_defaults(func=_list_degradations)
    p = sub.add_parser("degrade", help="apply one degradation to one image (PNG out)")
    p.add_argument("image")
    p.add_argument("-d", "--degradation", required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help="take the degradation's parameters from this config")
    p.set_defaults(func=_degrade)
    p = sub.add_parser("matrix", help="print the similarity matrix as a square table")
    p.add_argument("path", nargs="?", default="results/similarity/matrix.parquet")
    p.add_argument("--value", default="distance_sym", choices=["distance_sym", "distance", "kl"])
    p.add_argument("--cluster", action="store_true", help="order rows by hierarchical clustering")
    p.add_argument("--digits", type=int, default=2)
    p.set_defaults(func=_matrix)
    args = parser.parse_args(argv)
    return run_stage(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
