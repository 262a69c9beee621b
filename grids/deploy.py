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
from grids.deploy import announce_results, workflow_folder


configfile: "config/config.yaml"


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


def slurm_folder() -> Path:
    """The Slurm profile: ``config.yaml``, which ``--profile slurm`` reads from ``slurm/``."""
    return _shipped("slurm", "slurm", "config.yaml")


def init(directory: str | Path) -> list[Path]:
    """Write a working directory (created if needed) and return the files written. Refuses, writing
    nothing, when one of them exists already."""
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
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    for target, source in sources.items():
        shutil.copyfile(source, target)
    targets[0].write_text(SNAKEFILE.format(version=__version__))
    return targets
