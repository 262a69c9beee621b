# Config validation (at parse time) and the get_* helpers the rules use.
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from grids.config import (
    ConfigError,
    descriptor_photos,
    descriptor_weights,
    validate_config,
)
from grids.io import list_image_files
from grids.groups import group_members, group_name, group_pattern

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
IMAGE_SETS = [
    "clean",
    *DEGRADATIONS,
]  # the clean set is the reference row of the similarity tables


wildcard_constraints:
    degradation="|".join(re.escape(name) for name in DEGRADATIONS),
    image_set="|".join(re.escape(name) for name in IMAGE_SETS),


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


def get_descriptor_photo_files(wildcards):
    return [str(p) for p in list_image_files(descriptor_photos(CONFIG))[0]]


def get_descriptor_train_args(wildcards):
    """The train_descriptor recipe as CLI arguments (a param: editing it retrains)."""
    train = CONFIG["descriptor"]["train"]
    return (
        f"--photos {descriptor_photos(CONFIG)} --iterations {train['iterations']} "
        f"--batch-size {train['batch_size']} --crop {train['crop']} --lr {train['lr']} "
        f"--holdout {train['holdout']} --seed {CONFIG['seed']}"
    )


def get_set_manifest(wildcards):
    if wildcards.image_set == "clean":
        return "results/clean/manifest.parquet"
    return f"results/degraded/{wildcards.image_set}/manifest.parquet"


def get_descriptor_input(wildcards):
    """The descriptor weights (shipped, trained by rule train_descriptor, or a user file)."""
    return [] if CONFIG["features"]["kind"] == "sift" else [descriptor_weights(CONFIG)]


def get_features_json(wildcards):
    """The `features` section: a param, so editing it refits every set."""
    return json.dumps(CONFIG["features"], sort_keys=True)


def get_ggd_files(wildcards=None):
    return expand("results/similarity/ggd/{image_set}.parquet", image_set=IMAGE_SETS)


# --- training and evaluation ------------------------------------------------------------------

TEST_SETS = list(CONFIG["training"]["test_sets"])
MIX_ALL = group_name(
    DEGRADATIONS
)  # the mix-all baseline is the group of every degradation


wildcard_constraints:
    test_set="|".join(re.escape(name) for name in TEST_SETS),
    group=group_pattern(DEGRADATIONS),


def get_training_images_json(wildcards):
    return json.dumps(CONFIG["training"]["images"], sort_keys=True)


def get_training_image_files(wildcards):
    folder = CONFIG["training"]["images"]["folder"]
    return [str(p) for p in list_image_files(folder)[0]] if folder else []


def get_test_images_json(wildcards):
    return json.dumps(
        CONFIG["training"]["test_sets"][wildcards.test_set], sort_keys=True
    )


def get_test_image_files(wildcards):
    folder = CONFIG["training"]["test_sets"][wildcards.test_set]["folder"]
    return [str(p) for p in list_image_files(folder)[0]] if folder else []


def get_group_entries_json(wildcards):
    """The config entries of the group's degradations (a param: editing one retrains its groups)."""
    members = group_members(wildcards.group)
    return json.dumps({m: CONFIG["degradations"][m] for m in members}, sort_keys=True)


def get_group_function_files(wildcards):
    files = []
    for member in group_members(wildcards.group):
        file_part = (
            CONFIG["degradations"][member].get("function", "").rpartition(":")[0]
        )
        files += [file_part] if file_part.endswith(".py") else []
    return files


def get_recipe_json(wildcards):
    """The training recipe without the data sections (those are inputs)."""
    recipe = {
        k: v for k, v in CONFIG["training"].items() if k not in ("images", "test_sets")
    }
    return json.dumps(recipe, sort_keys=True)


def get_train_runtime(wildcards, attempt):
    """Minutes for Slurm: grows with each retry (a preempted job resumes from its checkpoint)."""
    return 60 * attempt


def get_test_manifests(wildcards=None):
    return expand(
        "results/test/{test_set}/degraded/{degradation}/manifest.parquet",
        test_set=TEST_SETS,
        degradation=DEGRADATIONS,
    ) + expand("results/test/{test_set}/clean/manifest.parquet", test_set=TEST_SETS)


def get_test_set_args(wildcards):
    return " ".join(f"--test-set {name} results/test/{name}" for name in TEST_SETS)


def get_upper_bound_evals(wildcards=None):
    groups = [*DEGRADATIONS, MIX_ALL] if len(DEGRADATIONS) > 1 else DEGRADATIONS
    return expand("results/eval/{group}.parquet", group=groups)
