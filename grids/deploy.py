"""The workflow as an installed tool: ``grids init DIR`` writes a working directory that runs the
workflow shipped inside the package, the layout ``snakedeploy deploy-workflow`` writes::

    DIR/workflow/Snakefile    a Snakemake module of the installed workflow (grids/workflow/)
    DIR/config/config.yaml    the default config, to edit (with gpu.yaml, paper.yaml, README.md)
    DIR/examples/             the user code the default config names (haze.py, unseen.py, nafnet.py)
    DIR/slurm/config.yaml     the Slurm profile: ``snakemake --profile slurm final_models``

The wheel carries ``workflow/``, ``config/``, ``examples/`` and ``slurm/`` of the repository as
``grids/workflow``, ``grids/configs``, ``grids/examples`` and ``grids/slurm`` (pyproject.toml,
package-dir). In a checkout they are the repository's own folders, so one lookup serves both.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
from pathlib import Path

from . import __version__

PACKAGE = Path(__file__).resolve().parent

# The working directory's Snakefile. The module's path is looked up when Snakemake reads it, so
# upgrading the package upgrades the workflow; the config given to the module is this folder's.
SNAKEFILE = """\
# A GRIDS working directory, written by `grids init` (grids-restoration {version}).
# The workflow is the one installed with the grids package, used as a Snakemake module; edit
# config/config.yaml (or add files with --configfile) and run, from this folder:
#   snakemake --cores all similarity_matrix     # or final_models, all, ... (see the README)
#   snakemake --profile slurm final_models      # on a Slurm login node (slurm/config.yaml)
# (checked_configfile reads the config files as plain YAML before Snakemake loads them; Snakemake
# loads a --configfile before this file, so run with `grids run ...` to have those checked first.)
from grids.deploy import announce_results, checked_configfile, workflow_folder


configfile: checked_configfile(workflow, "config/config.yaml")


module grids:
    snakefile:
        str(workflow_folder() / "Snakefile")
    config:
        config


use rule * from grids


onsuccess:
    announce_results()
"""

# What a run leaves that a user reads first; the heatmap, command 1's result, last.
MAIN_RESULTS = [
    ("results/validation/table2.md", "Table 2: does a small distance mean a small loss when mixed?"),
    ("results/selection/summary.md", "which group model each test image gets, and whether it helps"),
    ("results/final/table1.md", "Table 1: PSNR per degradation, GRIDS against single-task and mix-all"),
    ("results/similarity/heatmap.png", "the similarity heatmap: smaller = more alike (README, first screen)"),
]


def announce_results() -> None:
    """After a successful run (Snakemake's ``onsuccess``), name the main results that exist, so
    that the run's last lines, printed after Snakemake's own (the log, the elapsed time), say
    where to look. Jobs run with ``--no-hooks``, so only the run the user started prints them."""
    found = [f"  {path}   {what}" for path, what in MAIN_RESULTS if Path(path).is_file()]
    if found:
        atexit.register(print, "GRIDS results:", *found, sep="\n", file=sys.stderr)


def _shipped(installed: str, checkout: str, marker: str) -> Path:
    """A folder the wheel carries inside the package, else the checkout's (next to ``grids/``)."""
    for folder in (PACKAGE / installed, PACKAGE.parent / checkout):
        if (folder / marker).is_file():
            return folder
    raise FileNotFoundError(f"{PACKAGE}: neither {installed}/ (an installed wheel) nor ../{checkout}/ (a checkout)")


def workflow_folder() -> Path:
    """The workflow's folder: ``Snakefile``, ``rules/``, ``envs/``, ``report/``, ``schemas/``."""
    return _shipped("workflow", "workflow", "Snakefile")


def config_folder() -> Path:
    """The shipped configs: ``config.yaml`` (the default), ``gpu.yaml``, ``paper.yaml``, ``README.md``."""
    return _shipped("configs", "config", "config.yaml")


def examples_folder() -> Path:
    """The example user code: ``haze.py`` and ``unseen.py`` (named by the default config), ``nafnet.py``."""
    return _shipped("examples", "examples", "haze.py")


def checked_configfile(workflow, path: str = "config/config.yaml") -> str:
    """``path``, for a Snakefile's ``configfile:``, once the package's loader has read it and the
    run's ``--configfile`` files: a YAML mistake or a key given twice names the file and the line,
    and ``__use_yte__`` is refused before Snakemake evaluates the file (a ``--configfile`` it has
    loaded already: ``grids run`` checks those first). Every layout calls it: the checkout's
    Snakefile, a ``grids init`` folder's and a host workflow's (README, "Using the workflow inside
    your own"). A file that does not exist is left to Snakemake, which names it."""
    from snakemake.exceptions import WorkflowError

    from .config import ConfigError, read_yaml

    for one in [path, *workflow.overwrite_configfiles]:
        if os.path.exists(one):
            try:
                read_yaml(one)
            except ConfigError as err:
                raise WorkflowError(f"invalid config: {err}") from None
    return path


def slurm_folder() -> Path:
    """The Slurm profile: ``config.yaml``, which ``--profile slurm`` reads from ``slurm/``."""
    return _shipped("slurm", "slurm", "config.yaml")


def init(directory: str | Path) -> list[Path]:
    """Write a working directory (created if needed) and return the files written. Refuses, writing
    nothing, when one of them exists already; one that fails midway (a full disk) removes what it
    wrote, so that a second ``grids init`` starts afresh."""
    if not str(directory).strip():
        raise ValueError("grids init: the folder's name is empty; name the folder to write (. for this one)")
    directory = Path(directory)
    sources = {
        directory / "config" / f.name: f for f in sorted(config_folder().iterdir()) if f.suffix in {".yaml", ".md"}
    }
    sources |= {directory / "examples" / f.name: f for f in sorted(examples_folder().glob("*.py"))}
    sources[directory / "slurm" / "config.yaml"] = slurm_folder() / "config.yaml"
    targets = [directory / "workflow" / "Snakefile", *sources]
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing)} already exist: choose a new folder, or remove them first")
    made: list[Path] = []  # the folders and files this call created, in order
    try:
        for folder in dict.fromkeys(t.parent for t in targets):
            for missing in [f for f in (*reversed(folder.parents), folder) if not f.exists()]:
                made.append(missing)
                missing.mkdir()
        for target, source in [(targets[0], None), *sources.items()]:
            made.append(target)
            if source is None:
                target.write_text(SNAKEFILE.format(version=__version__))
            else:
                shutil.copyfile(source, target)
    except BaseException as err:
        _remove(made)
        if isinstance(err, OSError):
            where = made[-1] if made else directory
            why = err.strerror or err
            raise OSError(f"grids init {directory}: writing {where} failed ({why}); nothing was left behind") from None
        raise
    return targets


def _remove(made: list[Path]) -> None:
    """Undo a failed :func:`init`: its files, then its (now empty) folders, newest first."""
    for path in reversed(made):
        try:
            path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
        except OSError:  # a file put there meanwhile: left as it is
            pass
