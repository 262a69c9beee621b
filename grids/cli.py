"""The ``grids`` command: small helpers around the pipeline (the pipeline itself is Snakemake).

    grids check-config config/config.yaml      validate a config, print it with defaults filled in
    grids degradations                         list the built-in degradations and their defaults
    grids degrade IMAGE -d jpeg -o out.png     preview one degradation on one image
    grids matrix [results/similarity/matrix.parquet]   print the similarity matrix (wide)
    grids select IMAGE... [--json]             pick the group model for images of unknown degradation
    grids restore IMAGE -o OUT [--group G]     restore with the chosen (or a given) group model
    grids plan [--config FILE]...              trainings, GPU-hours, disk and RAM of a run, before it

``select`` and ``restore`` read the built workflow's results (``--results``, default ``results``)
and the config it was built with (``--config``, several files merge like ``--configfile``).
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


def _selector(args):
    from .selection import selector_from_config

    return selector_from_config(load_config(args.config or ["config/config.yaml"]), args.results, args.threshold,
                                args.device)


def _read_input(path: str) -> np.ndarray:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    return io.read_image(path)[0]


def _select(args) -> int:
    images = {path: _read_input(path) for path in args.images}  # every bad path reported before any work
    selector = _selector(args)
    results = []
    for path, image in images.items():
        choice = selector.select(image)
        results.append({"image": path, **choice.as_dict()})
        if not args.json:
            verdict = "in distribution" if choice.in_distribution else (
                f"OUT OF DISTRIBUTION (> {selector.threshold:g}): no group model was trained on anything like it")
            print(f"{path}: group {choice.group} (distance {choice.distance:.3f}, {verdict})")
            for row in choice.divergences.itertuples():
                print(f"    {row.distance:8.3f}  {row.group}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _restore(args) -> int:
    import torch

    from .evaluate import SIZE_MULTIPLE, restore
    from .train import load_model

    image = _read_input(args.image)
    selector = _selector(args)
    known = list(dict.fromkeys(selector.references.group))
    if args.group:
        if args.group not in known:
            raise ValueError(f"--group {args.group!r} is not a final group; choose one of: {', '.join(known)}")
        group = args.group
    else:
        choice = selector.select(image)
        group = choice.group
        print(f"{args.image}: group {group} (distance {choice.distance:.3f})", file=sys.stderr)
        if not choice.in_distribution:
            print(f"warning: {args.image} looks out of distribution (distance {choice.distance:.3f} > "
                  f"{selector.threshold:g}): expect a poor restoration", file=sys.stderr)
    path = os.path.join(args.results, "final", "models", f"{group}.pth")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: build it first with `snakemake --cores all final_models`")
    model, state = load_model(path, selector.device)
    with torch.no_grad():
        out = restore(model, image, selector.device, SIZE_MULTIPLE.get(state["arch"], 8), args.tile, progress=True)
    io.write_png(args.output, out)
    print(json.dumps({"image": args.image, "group": group, "model": path, "output": args.output}))
    return 0


def _plan(args) -> int:
    """Trainings, GPU-hours, disk and RAM of a run, from the merged config (grids.plan)."""
    from .plan import load_for_plan, plan

    config, assumed = load_for_plan(args.config or ["config/config.yaml"])
    print(plan(config, assumed, args.instances))
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
    for name, helptext in (("select", "choose the group model for images of unknown degradation"),
                           ("restore", "restore an image with the chosen (or a given) group model")):
        p = sub.add_parser(name, help=helptext)
        if name == "select":
            p.add_argument("images", nargs="+", metavar="IMAGE")
            p.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            p.add_argument("image")
            p.add_argument("-o", "--output", required=True, help="restored PNG")
            p.add_argument("--group", help="use this final group's model instead of choosing")
            p.add_argument("--tile", type=int, default=512, help="tile side (px) for large images")
        p.add_argument("--config", action="append", metavar="FILE",
                       help="the config the results were built with (repeat to merge; default config/config.yaml)")
        p.add_argument("--results", default="results", help="the workflow's results folder")
        p.add_argument("--threshold", type=float, help="out-of-distribution divergence (default: selection.threshold)")
        p.add_argument("--device", default="auto")
        p.set_defaults(func=_select if name == "select" else _restore)
    p = sub.add_parser("plan", help="what a final_models run will train and cost, before submitting it")
    p.add_argument("--config", action="append", metavar="FILE", help="config files, merged in order (default config/config.yaml)")
    p.add_argument("--instances", type=int, default=200, help="simulated grouping searches")
    p.set_defaults(func=_plan)
    args = parser.parse_args(argv)
    return run_stage(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
