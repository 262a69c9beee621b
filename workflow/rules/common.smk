# Config validation (at parse time) and the get_* helpers the rules use.
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd

from snakemake.exceptions import WorkflowError

from grids.config import (
    ConfigError,
    baseline_recipe,
    descriptor_photos,
    published_baselines,
    replicate_degradations,
    trained_baselines,
    descriptor_weights,
    training_recipe,
    validate_config,
)
from grids.io import list_image_files
from grids.user_code import code_file
from grids.grouping.names import (
    group_members,
    group_name,
    group_pattern,
    upper_bound_groups,
)

try:
    CONFIG = validate_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None
# The report's pages (report/*.rst) read `snakemake.config`: give them the defaults filled in too.
config.update(CONFIG)


# Every file a rule writes lies under one of these folders of the working directory (names in
# paths are identifiers, checked with the config, so no wildcard value can leave them either).
# Used as a Snakemake module with `prefix: P`, the folders are P/results/ and so on.
OUTPUT_ROOTS = ("results/", "logs/", "benchmarks/")
PREFIX = workflow.modifier.path_modifier.prefix or ""
PREFIXED_ROOTS = tuple(PREFIX + root for root in OUTPUT_ROOTS)


def check_output_locations(rules):
    """Refuse, at parse time, a rule of this workflow whose output, log or benchmark lies outside
    OUTPUT_ROOTS, under the module prefix if any (a host workflow's own rules are its business).
    """
    for each in rules:
        if each.module_globals is not globals():
            continue
        for path in [
            *each.output,
            *each.log,
            *([each.benchmark] if each.benchmark else []),
        ]:
            normal = os.path.normpath(str(path))
            # Absolute only under an absolute module prefix (refusing it said "/p/results/x lies
            # outside /p/results/").
            absolute = os.path.isabs(normal) and not os.path.isabs(PREFIX)
            if absolute or not normal.startswith(PREFIXED_ROOTS):
                raise WorkflowError(
                    f"{path} (an output of {each.name}) lies outside {', '.join(PREFIXED_ROOTS)}"
                )


# Jobs call `python -m grids.<stage>`: put the interpreter running Snakemake (which has the
# `grids` package) first on PATH, so that a virtualenv works without being activated. With
# --use-conda, the rule's environment comes first instead.
envvars:
    "PATH",


os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ["PATH"]]
)
DEGRADATIONS = list(CONFIG["degradations"])
# Recorded in every exported group model: which validated config the model comes from.
CONFIG_HASH = hashlib.sha256(json.dumps(CONFIG, sort_keys=True).encode()).hexdigest()
# Degradations left out of training, applied to the test sets only: the selection report checks
# that inputs like them are called out of distribution.
UNSEEN = list(CONFIG["selection"]["unseen"])
TEST_DEGRADATIONS = DEGRADATIONS + UNSEEN
ENTRIES = {**CONFIG["degradations"], **CONFIG["selection"]["unseen"]}
IMAGE_SETS = [
    "clean",
    *DEGRADATIONS,
]  # the clean set is the reference row of the similarity tables


wildcard_constraints:
    degradation="|".join(re.escape(name) for name in TEST_DEGRADATIONS),
    image_set="|".join(re.escape(name) for name in IMAGE_SETS),


def get_images_json(wildcards):
    """The `images` section: a param, so editing it reruns the clean set (and what follows)."""
    return json.dumps(CONFIG["images"], sort_keys=True)


def user_files(paths):
    """Files of the user's (images, weights, functions): relative to the working directory, so
    marked local, which a module's `prefix:` leaves alone (it moves only what rules write).
    """
    return [local(str(path)) for path in paths]


def image_files(images):
    """The image files of an images section's folder: adding, removing or touching one reruns
    the set made from it."""
    folder = images["folder"]
    return user_files(list_image_files(folder)[0]) if folder else []


def function_files(entries):
    """The .py files of the user-defined degradations among config ``entries``: a change to one
    reruns what those degradations made."""
    files = [code_file(entry.get("function", "")) for entry in entries]
    return user_files(file for file in files if file)


def report_if_built(path, caption, category):
    """report() for a figure or page only once it exists. `snakemake --report` re-reads the
    workflow, so what a run built is registered; what it did not build yet (after one target such
    as similarity_matrix, the search's plot) is left out instead of failing the whole report.
    """
    if not os.path.exists(path):
        return path
    return report(path, caption=caption, category=category)


def side_by_side_threads(most):
    """Threads per job where many independent jobs wait (trainings, evaluations, GGD fits, and
    the sets they need): half the cores given to a local run, at most `most`, so two such jobs run
    at once. (All of them alike: a job wanting every core would wait behind a stream of
    half-core jobs, whatever its priority, since two cores are never free at once.) Small CPU models
    scale poorly over threads: on 2 cores two 1-thread trainings side by side finish 1.35x sooner than
    the same two run one after the other with 2 threads each (bench/RESULTS.md). A cluster run
    (no --cores) gets `most` per job."""
    cores = workflow.global_resources.get("_cores")
    cores = getattr(cores, "value", cores)
    if not cores or cores >= sys.maxsize:
        return most
    return max(1, min(most, cores // 2))


def working_file(path):
    """A file a rule keeps outside its declared outputs (Snakemake deletes those when a job
    fails), under the module prefix like everything the workflow writes."""
    return PREFIX + path


def get_checks_cache(wildcards, output):
    """The clean-set stage's cache of user files that passed, beside the set's manifest."""
    return os.path.join(os.path.dirname(output.manifest), "checks.parquet")


def get_clean_image_files(wildcards):
    return image_files(CONFIG["images"])


def get_degradation_entry(wildcards):
    """One degradation's resolved config: a param, so editing it reruns only that degradation."""
    return json.dumps(ENTRIES[wildcards.degradation], sort_keys=True)


def get_user_function_file(wildcards):
    return function_files([ENTRIES[wildcards.degradation]])


def get_degraded_manifests(wildcards=None):
    return expand(
        "results/degraded/{degradation}/manifest.parquet", degradation=DEGRADATIONS
    )


def get_descriptor_photo_files(wildcards):
    return user_files(list_image_files(descriptor_photos(CONFIG))[0])


def get_descriptor_train_args(wildcards):
    """The train_descriptor recipe as CLI arguments (a param: editing it retrains)."""
    train = CONFIG["descriptor"]["train"]
    args = {
        "--photos": descriptor_photos(CONFIG),
        "--iterations": train["iterations"],
        "--batch-size": train["batch_size"],
        "--crop": train["crop"],
        "--lr": train["lr"],
        "--holdout": train["holdout"],
        "--seed": CONFIG["seed"],
    }
    return [str(word) for pair in args.items() for word in pair]


def get_all_set_manifests(wildcards=None):
    """Every image set's manifest, in IMAGE_SETS order."""
    return [set_manifest(name) for name in IMAGE_SETS]


def get_variant_set_args(wildcards, input, output):
    """`--set NAME MANIFEST OUT` per image set, from the rule's input.manifests and outputs."""
    return [
        word
        for name, manifest, out in zip(IMAGE_SETS, input.manifests, output)
        for word in ("--set", name, manifest, out)
    ]


def set_manifest(image_set):
    if image_set == "clean":
        return "results/clean/manifest.parquet"
    return f"results/degraded/{image_set}/manifest.parquet"


def get_set_manifest(wildcards):
    return set_manifest(wildcards.image_set)


def descriptor_input():
    """The descriptor weights: shipped, trained by rule train_descriptor, or a user file."""
    weights = descriptor_weights(CONFIG)
    return (
        [weights]
        if CONFIG["descriptor"]["weights"] == "train"
        else user_files([weights])
    )


def get_descriptor_input(wildcards):
    return [] if CONFIG["features"]["kind"] == "sift" else descriptor_input()


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
    others=group_pattern(DEGRADATIONS),


def get_training_images_json(wildcards):
    return json.dumps(CONFIG["training"]["images"], sort_keys=True)


def get_training_image_files(wildcards):
    return image_files(CONFIG["training"]["images"])


def get_test_images_json(wildcards):
    return json.dumps(
        CONFIG["training"]["test_sets"][wildcards.test_set], sort_keys=True
    )


def get_test_image_files(wildcards):
    return image_files(CONFIG["training"]["test_sets"][wildcards.test_set])


def get_group_entries_json(wildcards):
    """The config entries of the group's degradations (a param: editing one retrains its groups)."""
    members = group_members(wildcards.group)
    return json.dumps({m: CONFIG["degradations"][m] for m in members}, sort_keys=True)


def arch_files(recipe):
    """The .py file of a user-defined architecture (a change to it retrains)."""
    file = code_file(recipe["arch"])
    return user_files([file]) if file else []


def get_arch_files(wildcards):
    return arch_files(CONFIG["training"])


def get_baseline_arch_files(wildcards):
    return arch_files(baseline_recipe(CONFIG, wildcards.trained))


def get_group_function_files(wildcards):
    return function_files(
        [CONFIG["degradations"][m] for m in group_members(wildcards.group)]
    )


def get_all_function_files(wildcards):
    return function_files(CONFIG["degradations"].values())


def get_recipe_json(wildcards):
    """The training recipe (a param: editing it retrains)."""
    return json.dumps(training_recipe(CONFIG), sort_keys=True)


def get_train_runtime(wildcards, attempt):
    """Minutes per attempt on a cluster, growing with each retry: a job that hits the limit or
    is preempted saves a checkpoint and the retry resumes from it. A profile's set-resources
    (slurm/config.yaml) or --set-resources train:runtime=M replaces it."""
    return 60 * attempt


def get_test_manifests(wildcards=None, degradations=None):
    """Per test set, in order: its clean manifest, then one per test degradation (all of them, or
    `degradations`)."""
    return [
        path
        for name in TEST_SETS
        for path in [
            f"results/test/{name}/clean/manifest.parquet",
            *expand(
                f"results/test/{name}/degraded/{{degradation}}/manifest.parquet",
                degradation=degradations or TEST_DEGRADATIONS,
            ),
        ]
    ]


def eval_degradations(wildcards):
    """What a model is scored on: a group's model on its members (all that its drops, Table 1 and
    Table 2 read); a baseline on every test degradation; a final group's model on the rest by rule
    evaluate_others (the selection report reads the chosen model on any test image)."""
    if hasattr(wildcards, "others"):
        members = group_members(wildcards.others)
        return [name for name in TEST_DEGRADATIONS if name not in members]
    if hasattr(wildcards, "group"):
        return group_members(wildcards.group)
    return TEST_DEGRADATIONS


def get_eval_tests(wildcards):
    return get_test_manifests(degradations=eval_degradations(wildcards))


def get_replicate_tests(wildcards):
    return get_test_manifests(degradations=[wildcards.degradation])


def get_test_set_args(wildcards, input):
    """`--test-set NAME CLEAN DEGRADED...` per test set, from the rule's input.tests (which
    get_test_manifests lays out per test set)."""
    size = len(input.tests) // len(TEST_SETS)
    return [
        word
        for i, name in enumerate(TEST_SETS)
        for word in ("--test-set", name, *input.tests[i * size : (i + 1) * size])
    ]


def get_upper_bound_evals(wildcards=None):
    return expand(
        "results/eval/{group}.parquet", group=upper_bound_groups(DEGRADATIONS)
    )


# --- grouping search --------------------------------------------------------------------------

# Extra Table 1 rows: mix-all models trained with their own recipe, and published weights
# evaluated as they are (never trained).
BASELINES = CONFIG["baselines"]
TRAINED_BASELINES = trained_baselines(CONFIG)
PUBLISHED_BASELINES = published_baselines(CONFIG)


def name_pattern(names):
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    round=r"\d+",
    baseline=name_pattern(BASELINES),
    trained=name_pattern(TRAINED_BASELINES),
    published=name_pattern(PUBLISHED_BASELINES),


def get_grouping_json(wildcards=None):
    """The `grouping` section: a param, so changing delta replans (trainings are reused)."""
    return json.dumps(CONFIG["grouping"], sort_keys=True)


def get_single_task_evals(wildcards=None):
    return expand("results/eval/{group}.parquet", group=DEGRADATIONS)


def requested_groups(rounds):
    """Groups that rounds 0..rounds-1 asked to verify. Reading a round's table needs its
    checkpoint to have run: until then Snakemake stops here and re-evaluates after it ran.
    """
    groups = []
    for r in range(rounds):
        table = pd.read_parquet(checkpoints.grouping_round.get(round=r).output[0])
        groups += table.loc[table.action == "verify", "group"].tolist()
    return groups


def round_evals(r):
    """What round r plans from: the single-task evaluations and those of earlier requests."""
    groups = requested_groups(r)
    return get_single_task_evals() + expand(
        "results/eval/{group}.parquet", group=groups
    )


def get_round_evals(wildcards):
    return round_evals(int(wildcards.round))


# --- the noise floor: single-task models retrained from other seeds ------------------------------

REPLICATED = replicate_degradations(CONFIG)
REPLICATE_RUNS = [
    f"{name}/seed{k}"
    for name in REPLICATED
    for k in range(1, CONFIG["grouping"]["replicates"]["seeds"] + 1)
]


wildcard_constraints:
    k=r"[1-9]\d*",


def get_replicate_entries_json(wildcards):
    return json.dumps(
        {wildcards.degradation: CONFIG["degradations"][wildcards.degradation]},
        sort_keys=True,
    )


def get_replicate_seed(wildcards):
    """Replicate k trains from seed `config seed + k` (the workflow's own model is k = 0)."""
    return CONFIG["seed"] + int(wildcards.k)


def get_replicate_evals(wildcards=None):
    return expand("results/replicates/{run}/eval.parquet", run=REPLICATE_RUNS)


def get_replicate_args(wildcards, input):
    """`--replicate DEGRADATION EVAL` per replicate, from the rule's input.replicates."""
    return [
        word
        for run, path in zip(REPLICATE_RUNS, input.replicates)
        for word in ("--replicate", run.split("/")[0], path)
    ]


def get_noise_floor(wildcards=None):
    """The noise floor's table, where there are replicates (else a drop's seed noise counts as 0)."""
    return ["results/grouping/noise_floor.parquet"] if REPLICATE_RUNS else []


def get_search_noise_floor(wildcards):
    """The rounds wait for the noise floor only when it decides (conservative decision)."""
    return get_noise_floor() if CONFIG["grouping"]["decision"] == "conservative" else []


def get_noise_floor_arg(wildcards, input):
    """`--noise-floor FILE` where the rule's input has the noise floor, else nothing."""
    return ["--noise-floor", input.noise_floor[0]] if input.noise_floor else []


def get_previous_round(wildcards):
    r = int(wildcards.round)
    return [f"results/grouping/rounds/{r - 1}.parquet"] if r else []


def final_round():
    """(index, table) of the round that answered, running rounds until one does."""
    r = 0
    while True:
        table = pd.read_parquet(checkpoints.grouping_round.get(round=r).output[0])
        if (table.action == "final").any():
            return r, table
        r += 1


def get_all_rounds(wildcards):
    last, _ = final_round()
    return [f"results/grouping/rounds/{r}.parquet" for r in range(last + 1)]


def get_search_evals(wildcards):
    return round_evals(final_round()[0])


def final_groups():
    _, table = final_round()
    return table.loc[
        (table.action == "final") & (table.partition == 0), "group"
    ].tolist()


def get_final_models(wildcards):
    return expand("results/models/{group}/model.pth", group=final_groups())


def get_final_model_args(wildcards, input):
    """`--model GROUP FILE` per final group, from the rule's input.models (in group order)."""
    return [
        word
        for group, model in zip(final_groups(), input.models)
        for word in ("--model", group, model)
    ]


def get_table1_evals(wildcards):
    groups = set(final_groups()) | set(DEGRADATIONS) | {MIX_ALL}
    return expand("results/eval/{group}.parquet", group=sorted(groups))


def get_baseline_evals(wildcards=None):
    return expand("results/baselines/{baseline}/eval.parquet", baseline=BASELINES)


def get_baseline_args(wildcards, input):
    """`--baseline NAME EVAL` per baseline, from the rule's input.baselines (in config order),
    and `--published NAME` for those that are published weights."""
    return [
        w
        for name, evaluation in zip(BASELINES, input.baselines)
        for w in ("--baseline", name, evaluation)
    ] + [w for name in PUBLISHED_BASELINES for w in ("--published", name)]


def get_baseline_recipe_json(wildcards):
    """The training recipe with the baseline's overrides (e.g. arch: rrdbnet)."""
    return json.dumps(baseline_recipe(CONFIG, wildcards.trained), sort_keys=True)


def get_published_weights(wildcards):
    return user_files([PUBLISHED_BASELINES[wildcards.published]["weights"]])


def get_published_arch_files(wildcards):
    return arch_files(PUBLISHED_BASELINES[wildcards.published])


def get_published_arch_kwargs(wildcards):
    return json.dumps(
        PUBLISHED_BASELINES[wildcards.published]["arch_kwargs"], sort_keys=True
    )


def get_selection_json(wildcards=None):
    """The `selection` section the selector is built from (statistic, layers, alpha, threshold,
    reference); `unseen` only decides which test sets exist."""
    section = {k: v for k, v in CONFIG["selection"].items() if k != "unseen"}
    return json.dumps(section, sort_keys=True)


def get_selection_evals(wildcards):
    """Evaluations of the single-task models and of every final group's model, on every test
    degradation (the chosen model may be any final group's)."""
    groups = set(final_groups()) | set(DEGRADATIONS)
    return expand("results/eval/{group}.parquet", group=sorted(groups)) + expand(
        "results/eval/others/{others}.parquet", others=final_groups()
    )


def get_export_evals(wildcards):
    """What the model cards read: the single-task and final groups' evaluations on their members."""
    groups = set(final_groups()) | set(DEGRADATIONS)
    return expand("results/eval/{group}.parquet", group=sorted(groups))


# --- similarity validation (Table 2 and the premise report) ------------------------------------

from grids.validation import experiment_groups

VALIDATION = CONFIG["validation"]
VALIDATION_GROUPS = experiment_groups(VALIDATION["experiments"], DEGRADATIONS)
# Variants other than the method itself get their own fits; `method` is results/similarity.
FIT_VARIANTS = [v for v in VALIDATION["variants"] if v != "method"]


wildcard_constraints:
    variant="|".join(re.escape(name) for name in FIT_VARIANTS) or "(?!)",


def variant_features(variant):
    """The features section a variant fits with (the configured one, changed where it differs)."""
    features = dict(CONFIG["features"])
    if variant == "rb16":
        features.update(kind="descriptor", layer="RB16")
    elif variant == "untrained":
        features.update(kind="descriptor")
    elif variant == "sift":
        features.update(kind="sift")
    return features


UNTRAINED_DESCRIPTOR = "results/validation/untrained_msrresnet_x4.pth"


def get_variant_descriptor(wildcards):
    kind = variant_features(wildcards.variant)["kind"]
    if kind == "sift":
        return []
    if wildcards.variant == "untrained":
        return [UNTRAINED_DESCRIPTOR]
    return descriptor_input()


def get_variant_features_json(wildcards):
    return json.dumps(variant_features(wildcards.variant), sort_keys=True)


def variant_matrix(variant):
    if variant == "method":
        return "results/similarity/matrix.parquet"
    return f"results/validation/matrices/{variant}.parquet"


def get_variant_args(wildcards, input):
    """`--variant NAME MATRIX` per variant, from the rule's input.matrices (in variant order)."""
    return [
        w
        for variant, matrix in zip(VALIDATION["variants"], input.matrices)
        for w in ("--variant", variant, matrix)
    ]


def get_validation_evals():
    """The models the premise covers besides the search's: mix-all and the experiments' groups.
    Known when the DAG is built, so they train alongside the search's rounds instead of after them
    (a group the search also verifies is still trained once: same file)."""
    return expand(
        "results/eval/{group}.parquet", group=sorted({MIX_ALL, *VALIDATION_GROUPS})
    )


def validation_test_set():
    return CONFIG["grouping"]["test_set"] or TEST_SETS[0]


# The search is a chain of one verification at a time; on a machine that runs two jobs at once,
# the jobs only the validation or the selection need should fill the other slot, not delay the
# chain. So priority 1 goes to everything on the way to the chain (clean and degraded sets, the
# crop store, the similarity GGD fits, the single-task trainings) and to the chain itself; 0 to
# the rest. (A rule's priority is not inherited by the jobs it waits for: each rule sets its own.)
VALIDATION_ONLY_GROUPS = {MIX_ALL, *VALIDATION_GROUPS} - set(
    upper_bound_groups(DEGRADATIONS)
)


def get_search_priority(wildcards):
    """Priority 1 for the single-task and search trainings (and their evaluations), 0 for the
    groups only the validation needs and for the baselines."""
    group = getattr(wildcards, "group", None)
    if group is None and hasattr(
        wildcards, "k"
    ):  # a replicate: the conservative search waits for it
        return int(CONFIG["grouping"]["decision"] == "conservative")
    return int(group is not None and group not in VALIDATION_ONLY_GROUPS)
