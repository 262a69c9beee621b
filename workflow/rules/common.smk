# Config validation (at parse time) and the wiring of the run plan (grids.runplan) into the rules:
# input functions, params and wildcard constraints. What to train, evaluate and fit is decided there.
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd

from snakemake.exceptions import WorkflowError

from grids import runplan
from grids.config import (
    ConfigError,
    baseline_recipe,
    descriptor_weights,
    training_recipe,
    validate_config,
)
from grids.grouping.names import group_members, group_name, group_pattern

try:
    CONFIG = validate_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None
# The report's pages (report/*.rst) read `snakemake.config`: give them the defaults filled in too.
config.update(CONFIG)
PLAN = runplan.RunPlan.from_config(CONFIG)

# Every file a rule writes lies under one of these folders of the working directory (names in
# paths are identifiers, checked with the config, so no wildcard value can leave them either).
# Used as a Snakemake module with `prefix: P`, the folders are P/results/ and so on.
OUTPUT_ROOTS = ("results/", "logs/", "benchmarks/")
PREFIX = workflow.modifier.path_modifier.prefix or ""
PREFIXED_ROOTS = tuple(PREFIX + root for root in OUTPUT_ROOTS)


def check_output_locations(rules):
    """Refuse, at parse time, a rule of this workflow whose output, log or benchmark lies outside
    OUTPUT_ROOTS, under the module prefix if any (a host workflow's own rules are its business)."""
    for each in (r for r in rules if r.module_globals is globals()):
        for path in runplan.outside(PREFIXED_ROOTS, [*each.output, *each.log, *filter(None, [each.benchmark])]):
            raise WorkflowError(f"{path} (an output of {each.name}) lies outside {', '.join(PREFIXED_ROOTS)}")


# Jobs call `python -m grids.<stage>`: put the interpreter running Snakemake (which has the
# `grids` package) first on PATH, so that a virtualenv works without being activated. With
# --use-conda, the rule's environment comes first instead.
envvars:
    "PATH",


# (one os.environ[...] per line: `snakemake --lint` reads each line for the variable it names)
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.getenv("PATH", "")])
DEGRADATIONS, UNSEEN, IMAGE_SETS = PLAN.degradations, PLAN.unseen, PLAN.image_sets
TEST_DEGRADATIONS, TEST_SETS = PLAN.test_degradations, PLAN.test_sets
# Recorded in every exported group model: which validated config the model comes from.
CONFIG_HASH = hashlib.sha256(json.dumps(CONFIG, sort_keys=True).encode()).hexdigest()
MIX_ALL = group_name(DEGRADATIONS)  # what a baseline trains on: every degradation
BASELINES, PUBLISHED_BASELINES = PLAN.baselines, PLAN.published_baselines
REPLICATED, REPLICATE_RUNS = PLAN.replicated, PLAN.replicate_runs
VALIDATION = CONFIG["validation"]
UNTRAINED_DESCRIPTOR = "results/validation/untrained_msrresnet_x4.pth"


def name_pattern(names):
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    degradation=name_pattern(TEST_DEGRADATIONS),
    image_set=name_pattern(IMAGE_SETS),
    test_set=name_pattern(TEST_SETS),
    group=group_pattern(DEGRADATIONS),
    others=group_pattern(DEGRADATIONS),
    round=r"\d+",
    baseline=name_pattern(BASELINES),
    trained=name_pattern(PLAN.trained_baselines),
    published=name_pattern(PUBLISHED_BASELINES),
    k=r"[1-9]\d*",
    variant=name_pattern(PLAN.fit_variants),


# --- params: a config section as JSON, so that editing it reruns what depends on it -------------


def as_json(value):
    return json.dumps(value, sort_keys=True)


get_images_json = lambda wildcards: as_json(CONFIG["images"])
get_training_images_json = lambda wildcards: as_json(CONFIG["training"]["images"])
get_test_images_json = lambda w: as_json(CONFIG["training"]["test_sets"][w.test_set])
get_degradation_entry = lambda w: as_json(PLAN.entries([w.degradation])[w.degradation])
get_features_json = lambda wildcards: as_json(CONFIG["features"])
get_grouping_json = lambda wildcards=None: as_json(CONFIG["grouping"])
get_recipe_json = lambda wildcards: as_json(training_recipe(CONFIG))
get_baseline_recipe_json = lambda w: as_json(baseline_recipe(CONFIG, w.trained))
get_group_entries_json = lambda w: as_json(PLAN.entries(group_members(w.group)))
get_replicate_entries_json = lambda w: as_json(PLAN.entries([w.degradation]))
get_published_arch_kwargs = lambda w: as_json(PUBLISHED_BASELINES[w.published]["arch_kwargs"])
get_variant_features_json = lambda w: as_json(PLAN.variant_features(w.variant))
# The selector is built from the `selection` section; `unseen` only decides which test sets exist,
# `router_steps` only trains the routers (rule selection_routers).
get_selection_json = lambda wildcards=None: as_json(
    {k: v for k, v in CONFIG["selection"].items() if k not in ("unseen", "router_steps")}
)

# --- the user's files (images, weights, functions, architectures) ------------------------------


def user_files(paths):
    """Files of the user's: relative to the working directory, so marked local, which a module's
    `prefix:` leaves alone (it moves only what rules write)."""
    return [local(str(path)) for path in paths]


def descriptor_input():
    """The descriptor weights: shipped, trained by rule train_descriptor, or a user file."""
    weights = descriptor_weights(CONFIG)
    trained = CONFIG["descriptor"]["weights"] == "train"
    return [weights] if trained else user_files([weights])


image_files = lambda images: user_files(PLAN.image_files(images))
arch_files = lambda recipe: user_files(PLAN.arch_files(recipe))
function_files = lambda names: user_files(PLAN.function_files(names))
get_clean_image_files = lambda wildcards: image_files(CONFIG["images"])
get_training_image_files = lambda wildcards: image_files(CONFIG["training"]["images"])
get_test_image_files = lambda w: image_files(CONFIG["training"]["test_sets"][w.test_set])
get_user_function_file = lambda w: function_files([w.degradation])
get_group_function_files = lambda w: function_files(group_members(w.group))
get_all_function_files = lambda w: function_files(DEGRADATIONS)
get_arch_files = lambda wildcards: arch_files(CONFIG["training"])
get_baseline_arch_files = lambda w: arch_files(baseline_recipe(CONFIG, w.trained))
get_published_weights = lambda w: user_files([PUBLISHED_BASELINES[w.published]["weights"]])
get_published_arch_files = lambda w: arch_files(PUBLISHED_BASELINES[w.published])
get_descriptor_photo_files = lambda w: user_files(PLAN.descriptor_photo_files())
# Every architecture the config names: the ones an evaluated model file may name (a weights file
# names an architecture, never code of its own: grids.checkpoint.load_model).
CONFIG_ARCHS = sorted(
    {training_recipe(CONFIG)["arch"], *(baseline_recipe(CONFIG, name)["arch"] for name in CONFIG["baselines"])}
)
get_descriptor_input = lambda w: ([] if CONFIG["features"]["kind"] == "sift" else descriptor_input())
get_descriptor_train_args = lambda wildcards: PLAN.descriptor_train_args()


# --- the workflow's own files ------------------------------------------------------------------


def report_if_built(path, caption, category):
    """report() for a figure or page only once it exists. `snakemake --report` re-reads the
    workflow, so what a run built is registered; what it did not build yet (after one target such
    as similarity_matrix, the search's plot) is left out instead of failing the whole report.
    """
    if not os.path.exists(path):
        return path
    return report(path, caption=caption, category=category)


def side_by_side_threads(most):
    """runplan.side_by_side_threads with the cores given to this run (none on a cluster)."""
    cores = workflow.global_resources.get("_cores")
    return runplan.side_by_side_threads(most, getattr(cores, "value", cores))


def working_file(path):
    """A file a rule keeps outside its declared outputs (Snakemake deletes those when a job
    fails), under the module prefix like everything the workflow writes."""
    return PREFIX + path


def set_manifest(image_set):
    if image_set == "clean":
        return "results/clean/manifest.parquet"
    return f"results/degraded/{image_set}/manifest.parquet"


def variant_matrix(variant):
    if variant == "method":
        return "results/similarity/matrix.parquet"
    return f"results/validation/matrices/{variant}.parquet"


def evals(groups):
    return expand("results/eval/{group}.parquet", group=groups)


get_test_manifests = lambda w=None, degradations=None: PLAN.test_manifests(degradations)


def eval_degradations(wildcards):
    return PLAN.eval_degradations(getattr(wildcards, "group", None), getattr(wildcards, "others", None))


get_test_set_args = lambda w, input: PLAN.test_set_args(input.tests)
get_signature_args = lambda w, input: PLAN.signature_args(input.signatures)


def pairs(option, names, paths):
    """`OPTION NAME PATH` per name, from a rule's input list (in the same order)."""
    return [word for name, path in zip(names, paths) for word in (option, name, path)]


get_checks_cache = lambda w, output: os.path.join(os.path.dirname(output.manifest), "checks.parquet")
get_set_manifest = lambda wildcards: set_manifest(wildcards.image_set)
get_degraded_manifests = lambda w=None: [set_manifest(name) for name in DEGRADATIONS]
get_all_set_manifests = lambda w=None: [set_manifest(name) for name in IMAGE_SETS]
get_variant_set_args = lambda w, input, output: [
    word for name, manifest, out in zip(IMAGE_SETS, input.manifests, output) for word in ("--set", name, manifest, out)
]
get_ggd_files = lambda w=None: expand("results/similarity/ggd/{image_set}.parquet", image_set=IMAGE_SETS)
get_eval_tests = lambda w: get_test_manifests(degradations=eval_degradations(w))
get_replicate_tests = lambda w: get_test_manifests(degradations=[w.degradation])
get_upper_bound_evals = lambda w=None: evals(PLAN.upper_bound_groups)
get_validation_evals = lambda w=None: evals(PLAN.validation_groups)
get_baseline_evals = lambda w=None: expand("results/baselines/{baseline}/eval.parquet", baseline=BASELINES)
get_baseline_args = lambda w, input: pairs("--baseline", BASELINES, input.baselines) + [
    word for name in PUBLISHED_BASELINES for word in ("--published", name)
]
reference_degradations = lambda w: PLAN.reference_degradations(getattr(w, "group", None))
get_reference_tests = lambda w: [set_manifest(name) for name in ["clean", *reference_degradations(w)]]
get_reference_set_args = lambda w, input: ["--test-set", "references", *input.tests]
get_reference_evals = lambda w: ["results/eval/references/input.parquet"] + expand(
    "results/eval/references/{group}.parquet", group=final_groups()
)
get_mix_all_evals = lambda w=None: PLAN.mix_all_evals()
get_replicate_evals = lambda w=None: expand("results/replicates/{run}/eval.parquet", run=REPLICATE_RUNS)
get_replicate_args = lambda w, input: pairs(
    "--replicate", [run.split("/")[0] for run in REPLICATE_RUNS], input.replicates
)
get_variant_args = lambda w, input: pairs("--variant", PLAN.variants, input.matrices)
get_variant_descriptor = lambda w: {
    None: [],
    "untrained": [UNTRAINED_DESCRIPTOR],
    "configured": descriptor_input(),
}[PLAN.variant_descriptor(w.variant)]
get_search_priority = lambda w: PLAN.priority(getattr(w, "group", None), noise_floor=hasattr(w, "k"))
# Replicate k trains from seed `config seed + k` (the workflow's own model is k = 0).
get_replicate_seed = lambda w: CONFIG["training_seed"] + int(w.k)
validation_test_set = PLAN.validation_test_set


def get_train_runtime(wildcards, attempt):
    """Minutes per attempt on a cluster, growing with each retry: a job that hits the limit or
    is preempted saves a checkpoint and the retry resumes from it. A profile's set-resources
    (slurm/config.yaml) or --set-resources train:runtime=M replaces it."""
    return 60 * attempt


# --- the noise floor and the grouping search: reading the round tables --------------------------


# The noise floor's table where there are replicates (else a drop's seed noise counts as 0); the
# rounds wait for it only when it decides (conservative decision).
get_noise_floor = lambda w=None: ["results/grouping/noise_floor.parquet"] if REPLICATE_RUNS else []
get_search_noise_floor = lambda w: get_noise_floor() if CONFIG["grouping"]["decision"] == "conservative" else []
get_noise_floor_arg = lambda w, input: ["--noise-floor", input.noise_floor[0]] if input.noise_floor else []


def read_round(r):
    """Round r's table. Reading it needs its checkpoint to have run: until then Snakemake stops
    here and re-evaluates after it ran."""
    return pd.read_parquet(checkpoints.grouping_round.get(round=r).output[0])


def round_evals(r):
    """What round r plans from: the single-task evaluations and those of earlier requests."""
    return evals(DEGRADATIONS) + evals(runplan.requested_groups(read_round, r))


def get_previous_round(wildcards):
    r = int(wildcards.round)
    return [f"results/grouping/rounds/{r - 1}.parquet"] if r else []


final_groups = lambda: runplan.final_groups(read_round)
get_round_evals = lambda wildcards: round_evals(int(wildcards.round))
get_all_rounds = lambda w: [
    f"results/grouping/rounds/{r}.parquet" for r in range(runplan.final_round(read_round)[0] + 1)
]
get_search_evals = lambda w: round_evals(runplan.final_round(read_round)[0])
# A final group's export: its files, and the evaluations its drops and card read (its own, its members').
get_final_exports = lambda w: expand(
    "results/final/models/{group}{suffix}", group=final_groups(), suffix=[".pth", ".safetensors", ".md"]
)
get_group_export_evals = lambda w: evals(sorted({w.group, *group_members(w.group)}))
get_table1_evals = lambda w: evals(PLAN.table1_groups(final_groups()))
# The selection reads every final group's model on every test degradation (it may choose any).
get_selection_evals = lambda w: evals(PLAN.scored_groups(final_groups())) + PLAN.others_evals(final_groups())
