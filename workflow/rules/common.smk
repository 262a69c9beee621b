# Config validation (at parse time) and the get_* helpers the rules use.
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from grids.config import ConfigError, validate_config
from grids.io import list_image_files

try:
    CONFIG = validate_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None


# Jobs call `python -m grids.<stage>`: put the interpreter running Snakemake (which has the
# `grids` package) first on PATH, so that a virtualenv works without being activated. With
# --use-conda, the rule's environment comes first instead.
envvars:
    "PATH",


os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ["PATH"]]
)
DEGRADATIONS = list(CONFIG["degradations"])


wildcard_constraints:
    degradation="|".join(re.escape(name) for name in DEGRADATIONS),


def get_images_json(wildcards):
    """The `images` section: a param, so editing it reruns the clean set (and what follows)."""
    return json.dumps(CONFIG["images"], sort_keys=True)


def get_clean_image_files(wildcards):
    """The user folder's image files: adding, removing or touching one reruns the clean set."""
    folder = CONFIG["images"]["folder"]
    return [str(p) for p in list_image_files(folder)[0]] if folder else []


def get_degradation_entry(wildcards):
    """One degradation's resolved config: a param, so editing it reruns only that degradation."""
    return json.dumps(CONFIG["degradations"][wildcards.degradation], sort_keys=True)


def get_user_function_file(wildcards):
    """The .py file of a user-defined degradation (a change to it reruns that degradation)."""
    entry = CONFIG["degradations"][wildcards.degradation]
    file_part = entry.get("function", "").rpartition(":")[0]
    return [file_part] if file_part.endswith(".py") else []


def get_degraded_manifests(wildcards=None):
    return expand(
        "results/degraded/{degradation}/manifest.parquet", degradation=DEGRADATIONS
    )
