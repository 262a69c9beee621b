"""grids: small helpers around the GRIDS pipeline (the pipeline itself is a Snakemake workflow).

    grids init DIR                             a working directory for the installed workflow
    grids run [SNAKEMAKE ARGS...]              snakemake, once its --configfile files are checked as plain YAML
    grids check-config [FILE...]               validate configs (merged over config/config.yaml), print the result
    grids degradations                         list the built-in degradations and their defaults
    grids degrade IMAGE -d jpeg -o out.png     preview one degradation on one image
    grids matrix [results/similarity/matrix.parquet]   print the similarity matrix (wide)
    grids select IMAGE... [--json]             pick the group model for images of unknown degradation
    grids restore IMAGE -o OUT [--group G]     restore with the chosen (or a given) group model
    grids plan [FILE...]                       trainings, GPU-hours, disk and RAM of a run, before it
    grids import-ncnn-rrdb P.param P.bin -o W.pth   Real-ESRGAN's ncnn weights as a BasicSR RRDBNet file

select and restore read the built workflow's results (--results, default results) and the config
it was built with (--config: like --configfile, the files merge in order over the working
directory's config/config.yaml; so do check-config and plan, which also take them as arguments).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys

import numpy as np
import yaml

from . import __version__, io
from .config import load_config
from .degradations import BUILTINS, get_degradation
from .selection.fallback import FALLBACKS
from .stage import MIN_TILE, TILE_OVERLAP, check_tile, run_stage

BASE_CONFIG = "config/config.yaml"
NO_CONFIG = (
    f"no {BASE_CONFIG} in this folder: run the command in a GRIDS working directory (make one with "
    "`grids init DIR`, or use a clone of the repository), or name config files with --config"
)


def config_files(files: list[str] | None, alone: bool = False) -> list[str]:
    """The config files in merge order, as the workflow reads them: the working directory's
    config/config.yaml first (when it exists and is not among ``files``), then ``files``, later
    ones winning. ``alone``: ``files`` only."""
    files = list(files or [])
    if alone and files:
        return files
    if not os.path.isfile(BASE_CONFIG):
        if not files:
            raise FileNotFoundError(NO_CONFIG)
        return files
    if any(os.path.exists(f) and os.path.samefile(f, BASE_CONFIG) for f in files):
        return files
    return [BASE_CONFIG, *files]


# Each numeric option: (test, what it must be). Checked before any work, so a bad value is one
# ``error:`` line naming the option instead of an IndexError, a garbage image or a nan accepted.
NUMBER_CHECKS = {
    "tile": (lambda v: v >= MIN_TILE, f"an integer >= {MIN_TILE} (tiles overlap by {TILE_OVERLAP} px)"),
    # its sign is checked against the statistic once the config is read (_selector)
    "threshold": (math.isfinite, "a finite number"),
    "instances": (lambda v: v >= 1, "an integer >= 1"),
    "digits": (lambda v: v >= 0, "an integer >= 0"),
    "seed": (lambda v: v >= 0, "an integer >= 0"),
}


def check_options(args) -> None:
    """The numeric options and ``--device`` of a parsed command line (ValueError naming the option)."""
    for name, (ok, what) in NUMBER_CHECKS.items():
        value = getattr(args, name, None)
        if value is not None and not ok(value):
            raise ValueError(f"--{name} {value}: must be {what}")
    if getattr(args, "device", None) is not None:
        from .stage import pick_device

        pick_device(args.device)


def _given_configs(args) -> list[str]:
    """check-config's and plan's config files: the arguments, then each --config, in that order."""
    return [*args.files, *(args.config or [])]


def _init(args) -> int:
    from .deploy import init

    written = init(args.directory)
    print("\n".join(str(path) for path in written))
    print(
        f"next: cd {shlex.quote(args.directory)} && snakemake --cores all similarity_matrix   "
        "(edit config/config.yaml first)",
        file=sys.stderr,
    )
    return 0


def _run(args) -> int:
    """``snakemake ARGS``, once every ``--configfile`` it would load (the profiles' included, as
    Snakemake itself reads its arguments) is read with the package's loader: Snakemake loads those
    before any line of the workflow, evaluating ``__use_yte__`` expressions, so they are refused
    here, and a YAML mistake is named with its line. The workflow checks its own config file."""
    import contextlib
    import io as text_io

    from snakemake.cli import parse_args

    from .config import read_yaml

    said = text_io.StringIO()  # Snakemake's own notes ("Using profile ..."), shown once, by Snakemake
    try:
        with contextlib.redirect_stderr(said):
            configfiles = parse_args(args.snakemake)[1].configfile or []
    except SystemExit:
        sys.stderr.write(said.getvalue())  # its usage error, as Snakemake would print it
        raise
    for path in configfiles:
        read_yaml(path)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "snakemake", *args.snakemake])
    return 0  # not reached


def _check_config(args) -> int:
    print(yaml.safe_dump(load_config(config_files(_given_configs(args), args.alone)), sort_keys=False), end="")
    return 0


def _list_degradations(args) -> int:
    for name, deg in BUILTINS.items():
        params = ", ".join(f"{k}={json.dumps(v)}" for k, v in deg.defaults.items())
        print(f"{name:15s} {deg.doc}: {params}")
    return 0


def _degrade(args) -> int:
    io.check_output_path(args.output, [args.image])
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
        raise FileNotFoundError(
            f"{args.path} not found: build it with `snakemake --cores all similarity_matrix`"
        ) from None
    wide = wide_matrix(matrix, args.value)
    if args.cluster:
        order = cluster_order(wide_matrix(matrix))
        wide = wide.loc[order, order]
    print(wide.round(args.digits).to_string())
    return 0


def _selector(args, config: dict | None = None):
    from .selection.selector import selector_from_config
    from .selection.statistics import check_threshold

    config = config or load_config(config_files(args.config))
    if args.threshold is not None:
        check_threshold(config["selection"]["statistic"], args.threshold, f"--threshold {args.threshold}")
    return selector_from_config(config, args.results, args.threshold, args.device)


def _read_input(path: str) -> np.ndarray:
    if not os.path.lexists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise io.BadImageError(f"{path}: is a folder, not an image")
    return io.read_image(path)[0]


def _read_inputs(paths: list[str]) -> dict[str, np.ndarray]:
    """Every input image, or one error that lists every bad path (before any work is done)."""
    images, problems = {}, []
    for path in paths:
        try:
            images[path] = _read_input(path)
        except (io.BadImageError, OSError) as err:
            problems.append(str(err))
    if len(problems) == 1:
        raise io.BadImageError(problems[0])
    if problems:
        raise io.BadImageError(f"{len(problems)} of {len(paths)} input images are unusable: " + "; ".join(problems))
    return images


def _expectation(choice) -> str:
    """``expect +2.1 dB (0.8 to 3.0)``: the chosen model's expected gain over the input and its
    interval, or "" where the workflow has no reference gains."""
    if choice.expected_gain is None:
        return ""
    return f"expect {choice.expected_gain:+.1f} dB ({choice.gain_low:+.1f} to {choice.gain_high:+.1f}) over the input"


def _headline(path: str, choice) -> str:
    """``photo.png: group G, expect ...``, and the members G's model did not learn, if any (a model
    that restores almost nothing of a degradation should not be trusted with it)."""
    expect = _expectation(choice)
    if choice.nothing_to_restore:
        return f"{path}: NOTHING TO RESTORE (it looks like the clean images){', ' + expect if expect else ''}"
    line = f"{path}: group {choice.group}{', ' + expect if expect else ''}"
    if choice.not_learned:
        gains = ", ".join(f"{member} ({gain:+.2f} dB)" for member, gain in choice.not_learned.items())
        line += f"; ITS MODEL DID NOT LEARN {gains} (gain over the input on the grouping test set)"
    return line


def _verdict(choice, selector) -> str:
    """``in distribution`` or the warning naming the nearest group, with the statistic's score and
    the expected drop."""
    what = f"{choice.statistic} score {choice.score:.3f}" if choice.statistic else f"distance {choice.distance:.3f}"
    if choice.nothing_to_restore:
        verdict = f"{what}; its nearest references are clean images: the input is returned unchanged"
    elif choice.in_distribution:
        verdict = f"in distribution: {what} <= {selector.threshold:.4g}"
    elif choice.statistic == "gain":
        verdict = (
            f"NOT EXPECTED TO HELP: {what} > {selector.threshold:.4g} (an expected gain below "
            f"{-selector.threshold:.4g} dB); the nearest group is {choice.group}"
        )
    else:
        verdict = (
            f"OUT OF DISTRIBUTION: {what} > {selector.threshold:.4g}, no group model was trained on anything "
            f"like it; the nearest group is {choice.group}"
        )
    if choice.expected_drop is not None and not choice.nothing_to_restore:
        verdict += f"; expected drop ≈ {choice.expected_drop:.2f} dB against a single-task model"
    return verdict


def _select(args) -> int:
    images = _read_inputs(args.images)
    selector = _selector(args)
    results = []
    for path, image in images.items():
        choice = selector.select(image)
        results.append({"image": path, **choice.as_dict()})
        if not args.json:
            print(_headline(path, choice))
            print(f"    distance {choice.distance:.3f}; {_verdict(choice, selector)}")
            for row in choice.divergences.itertuples():
                print(f"    {row.distance:8.3f}  {row.group}")
    if args.json:
        print(json.dumps(results, indent=2, allow_nan=False))  # as_dict gives null, never NaN or Infinity
    return 0


def _restore(args) -> int:
    import torch

    from .archs import size_multiple
    from .checkpoint import load_model
    from .evaluate import restore
    from .grouping.names import IDENTITY_GROUP

    if args.group and args.fallback:
        raise ValueError(
            f"--fallback {args.fallback} with --group {args.group}: a fallback replaces the chosen model of a "
            "flagged input, and --group skips the choice; give one of them"
        )
    io.check_output_path(args.output, [args.image], force=args.force)  # before the (long) restoration
    image = _read_inputs([args.image])[args.image]
    config = load_config(config_files(args.config))
    selector = _selector(args, config)
    known = selector.choice.groups
    if args.group:
        if args.group not in known:
            raise ValueError(f"--group {args.group!r} is not a final group; choose one of: {', '.join(known)}")
        group = args.group
    else:
        group = _choose(args, selector, image, config)
    if group == IDENTITY_GROUP:  # do no harm: the input's own pixels, depth and alpha included
        io.copy_as_png(args.image, args.output)
        print(json.dumps({"image": args.image, "group": IDENTITY_GROUP, "model": None, "output": args.output}))
        return 0
    path = _model_path(args.results, group, known)
    # the weights may name the config's own architecture, never code of their own
    model, state = load_model(path, selector.device, archs=[config["training"]["arch"]])
    multiple = size_multiple(model)
    check_tile(args.tile, multiple, f"{path} ({state['arch']})")
    with torch.no_grad():
        out = restore(model, image, selector.device, multiple, args.tile, TILE_OVERLAP, progress=True)
    io.write_png(args.output, out)
    print(json.dumps({"image": args.image, "group": group, "model": path, "output": args.output}))
    return 0


def _choose(args, selector, image: np.ndarray, config: dict) -> str:
    """The group model for ``image`` (the selector's choice, or the fallback's for a flagged
    input), said on stderr."""
    from .grouping.names import mix_all_group
    from .selection.fallback import Fallback

    choice = selector.select(image)
    print(_headline(args.image, choice), file=sys.stderr)
    print(f"    distance {choice.distance:.3f}; {_verdict(choice, selector)}", file=sys.stderr)
    if choice.nothing_to_restore:
        return choice.group
    selection = config["selection"]
    fallback = Fallback(
        args.fallback or selection["fallback"], selection["min_helpful_gain"], mix_all_group(config["degradations"])
    )
    if not fallback.flags(choice.in_distribution, choice.expected_gain, choice.group):
        return choice.group
    group, what = fallback.route(choice.group)
    print(f"warning: {args.image} is flagged: expect a poor restoration; writing {what}", file=sys.stderr)
    return group


def _model_path(results: str, group: str, final: list[str]) -> str:
    """A final group's export (the safetensors first: no pickle at all, the .pth beside it
    otherwise), or the mix-all model's training checkpoint (a fallback, not a final group)."""
    stem = os.path.join(results, "final", "models", group)
    path = next((stem + s for s in (".safetensors", ".pth") if os.path.isfile(stem + s)), stem + ".pth")
    if group not in final:
        path = os.path.join(results, "models", group, "model.pth")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: build it first with `snakemake --cores all final_models`")
    return path


def _plan(args) -> int:
    """Trainings, GPU-hours, disk and RAM of a run, from the merged config (grids.plan)."""
    from .plan import load_for_plan, plan

    config, assumed = load_for_plan(config_files(_given_configs(args)))
    print(plan(config, assumed, args.instances))
    return 0


def _import_ncnn_rrdb(args) -> int:
    from .ncnn import import_rrdb

    io.check_output_path(args.output, [args.param, args.bin], kind="input file", force_option=None)
    print(json.dumps(import_rrdb(args.param, args.bin, args.output)))
    return 0


def _subcommand(sub, name: str, helptext: str, example: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with a runnable example."""
    return sub.add_parser(
        name,
        help=helptext,
        description=kwargs.pop("description", helptext[0].upper() + helptext[1:] + "."),
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


CONFIG_HELP = "config files merged in order over config/config.yaml, as with --configfile (repeat)"


def _config_arguments(p: argparse.ArgumentParser) -> None:
    """check-config's and plan's config files: as arguments, with --config (as select and restore
    take them), or both (the arguments first)."""
    p.add_argument("files", nargs="*", metavar="FILE", help=CONFIG_HELP.replace(" (repeat)", ""))
    p.add_argument("--config", action="append", metavar="FILE", help="one more config file, after the FILEs (repeat)")


def _add_init(sub) -> None:
    p = _subcommand(
        sub,
        "init",
        "write a working directory that runs the installed workflow (workflow/Snakefile, config/)",
        "grids init my_run && cd my_run && snakemake --cores all similarity_matrix",
    )
    p.add_argument(
        "directory", metavar="DIR", help="the folder to write (created if missing; its files must not exist)"
    )
    p.set_defaults(func=_init)


def _add_run(sub) -> None:
    p = _subcommand(
        sub,
        "run",
        "snakemake with the same arguments, once its --configfile files are checked as plain YAML",
        "grids run --cores all similarity_matrix --configfile my.yaml",
        add_help=False,  # --help is Snakemake's
        prefix_chars="\0",  # every word goes to Snakemake, options included
    )
    p.add_argument("snakemake", nargs=argparse.REMAINDER, metavar="SNAKEMAKE_ARGS", help="passed to snakemake as given")
    p.set_defaults(func=_run)


def _add_check_config(sub) -> None:
    p = _subcommand(
        sub,
        "check-config",
        "validate config files and print the merged config with defaults filled in",
        "grids check-config my.yaml            # my.yaml merged over config/config.yaml",
    )
    _config_arguments(p)
    p.add_argument("--alone", action="store_true", help="check the given files without config/config.yaml under them")
    p.set_defaults(func=_check_config)


def _add_degradations(sub) -> None:
    p = _subcommand(sub, "degradations", "list the built-in degradations and their defaults", "grids degradations")
    p.set_defaults(func=_list_degradations)


def _add_degrade(sub) -> None:
    p = _subcommand(
        sub,
        "degrade",
        "apply one degradation to one image (PNG out)",
        "grids degrade photo.png -d jpeg -o photo_jpeg.png --seed 3",
    )
    p.add_argument("image", help="the clean input image")
    p.add_argument("-d", "--degradation", required=True, help="a degradation's name (see grids degradations)")
    p.add_argument("-o", "--output", required=True, help="the degraded PNG to write (a missing folder is created)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the degradation's parameters (default: 0)")
    p.add_argument("--config", help="take the degradation's parameters from this config")
    p.set_defaults(func=_degrade)


def _add_matrix(sub) -> None:
    p = _subcommand(
        sub,
        "matrix",
        "print the similarity matrix as a square table",
        "grids matrix results/similarity/matrix.parquet --cluster",
    )
    p.add_argument(
        "path",
        nargs="?",
        default="results/similarity/matrix.parquet",
        help="the matrix (default: results/similarity/matrix.parquet)",
    )
    p.add_argument(
        "--value",
        default="distance_sym",
        choices=["distance_sym", "distance", "kl"],
        help="the column to show (default: distance_sym, the symmetrised log-KL distance)",
    )
    p.add_argument("--cluster", action="store_true", help="order rows by hierarchical clustering")
    p.add_argument("--digits", type=int, default=2, help="decimals shown (default: 2)")
    p.set_defaults(func=_matrix)


def _selector_arguments(p: argparse.ArgumentParser) -> None:
    """What `grids select` and `grids restore` share: the built workflow and the selector's options."""
    p.add_argument(
        "--config", action="append", metavar="FILE", help="the config the results were built with: " + CONFIG_HELP
    )
    p.add_argument("--results", default="results", help="the workflow's results folder")
    p.add_argument("--threshold", type=float, help="out-of-distribution divergence (default: selection.threshold)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def _add_select(sub) -> None:
    p = _subcommand(
        sub,
        "select",
        "choose the group model for images of unknown degradation",
        "grids select photo.png other.png --json",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="images of unknown degradation")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _selector_arguments(p)
    p.set_defaults(func=_select)


def _add_restore(sub) -> None:
    p = _subcommand(
        sub,
        "restore",
        "restore an image with the chosen (or a given) group model",
        "grids restore photo.png -o restored.png",
    )
    p.add_argument("image", help="the image to restore")
    p.add_argument("-o", "--output", required=True, help="restored PNG to write (a missing folder is created)")
    p.add_argument("--group", help="use this final group's model instead of choosing")
    p.add_argument("--tile", type=int, default=512, help="tile side (px) for large images")
    p.add_argument("--force", action="store_true", help="allow the output to replace the input image")
    p.add_argument(
        "--fallback",
        choices=FALLBACKS,
        help="for a flagged input: its chosen model (none), the mix-all model or the input unchanged "
        "(default: selection.fallback)",
    )
    _selector_arguments(p)
    p.set_defaults(func=_restore)


def _add_plan(sub) -> None:
    p = _subcommand(
        sub,
        "plan",
        "what a final_models run will train and cost, before submitting it",
        "grids plan config/paper.yaml",
    )
    _config_arguments(p)
    p.add_argument("--instances", type=int, default=200, help="simulated grouping searches")
    p.set_defaults(func=_plan)


def _add_import_ncnn_rrdb(sub) -> None:
    p = _subcommand(
        sub,
        "import-ncnn-rrdb",
        "convert an ncnn RRDBNet (Real-ESRGAN x4plus) to a BasicSR .pth",
        "grids import-ncnn-rrdb realesrgan-x4plus.param realesrgan-x4plus.bin -o weights/realesrgan_x4plus.pth",
    )
    p.add_argument("param", help="the ncnn .param file")
    p.add_argument("bin", help="the ncnn .bin file")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="the .pth to write ({params, arch, arch_kwargs}; a missing folder is created)",
    )
    p.set_defaults(func=_import_ncnn_rrdb)


# The subcommands in the order `grids --help` lists them.
SUBCOMMANDS = (
    _add_init,
    _add_run,
    _add_check_config,
    _add_degradations,
    _add_degrade,
    _add_matrix,
    _add_select,
    _add_restore,
    _add_plan,
    _add_import_ncnn_rrdb,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``grids`` command line (tests/test_commands.py parses every documented command with it)."""
    parser = argparse.ArgumentParser(
        prog="grids",
        description=__doc__.split("\n")[0],
        epilog="example:\n  grids init my_run && cd my_run && snakemake --cores all similarity_matrix\n"
        "run grids COMMAND --help for each command's options and an example",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"grids {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_stage(lambda: check_options(args) or args.func(args))


if __name__ == "__main__":
    sys.exit(main())
