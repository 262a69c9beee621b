# Config validation (at parse time) and the wiring of the run plan (grids.runplan) into the rules:
# input functions, params and wildcard constraints. What to train, evaluate and fit is decided there.
import json
import os
import re
import sys
from pathlib import Path

import pandas as pd

from snakemake.exceptions import WorkflowError

from grids import runplan
from grids.config import ConfigError, baseline_recipe, descriptor_weights, training_recipe, validate_config
from grids.grouping.names import group_members, group_pattern
from grids.grouping.stability import groups_to_retrain, replicate_models

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
BASELINES, PUBLISHED_BASELINES = PLAN.baselines, PLAN.published_baselines
REPLICATED, REPLICATE_RUNS = PLAN.replicated, PLAN.replicate_runs
VALIDATION = CONFIG["validation"]
UNTRAINED_DESCRIPTOR = "results/validation/untrained_msrresnet_x4.pth"
CLEAN_REFERENCES = "results/train/clean/manifest.parquet"  # the identity's references: the training images


def name_pattern(names):
    """A wildcard constraint matching exactly one of ``names`` (nothing when there are none)."""
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
    """A param's value: sorted-key JSON, so the same settings always read the same."""
    return json.dumps(value, sort_keys=True)


def get_images_json(wildcards):
    """The clean similarity set's `images` section."""
    return as_json(CONFIG["images"])


def get_training_images_json(wildcards):
    """The training images' section."""
    return as_json(CONFIG["training"]["images"])


def get_test_images_json(wildcards):
    """The images section of test set {test_set}."""
    return as_json(CONFIG["training"]["test_sets"][wildcards.test_set])


def get_degradation_entry(wildcards):
    """The resolved config entry of {degradation} (trained or unseen)."""
    return as_json(PLAN.entries([wildcards.degradation])[wildcards.degradation])


def get_features_json(wildcards):
    """The `features` section."""
    return as_json(CONFIG["features"])


def get_grouping_json(wildcards=None):
    """The `grouping` section."""
    return as_json(CONFIG["grouping"])


def get_recipe_json(wildcards):
    """The group models' training recipe."""
    return as_json(training_recipe(CONFIG))


def get_baseline_recipe_json(wildcards):
    """The training recipe of baseline {trained}."""
    return as_json(baseline_recipe(CONFIG, wildcards.trained))


def get_group_entries_json(wildcards):
    """The config entries of {group}'s members."""
    return as_json(PLAN.entries(group_members(wildcards.group)))


def get_published_arch(wildcards):
    """The architecture of published baseline {published}."""
    return PUBLISHED_BASELINES[wildcards.published]["arch"]


def get_published_arch_kwargs(wildcards):
    """The architecture keywords of published baseline {published}."""
    return as_json(PUBLISHED_BASELINES[wildcards.published]["arch_kwargs"])


def get_variant_features_json(wildcards):
    """The features section validation variant {variant} fits with."""
    return as_json(PLAN.variant_features(wildcards.variant))


def get_selection_json(wildcards=None):
    """The `selection` keys the selector is built from (RunPlan.selector_settings)."""
    return as_json(PLAN.selector_settings)


# --- the user's files (images, weights, functions, architectures) ------------------------------


def user_files(paths):
    """Files of the user's: relative to the working directory, so marked local, which a module's
    `prefix:` leaves alone (it moves only what rules write)."""
    return [local(str(path)) for path in paths]


def descriptor_input():
    """The descriptor weights: shipped, trained by rule train_descriptor, or a user file."""
    weights = descriptor_weights(CONFIG)
    return [weights] if PLAN.trains_descriptor else user_files([weights])


def image_files(images):
    """The image files of an images section's folder (editing one reruns the set made from it)."""
    return user_files(PLAN.image_files(images))


def arch_files(recipe):
    """The .py file of a recipe's user-defined architecture, if any."""
    return user_files(PLAN.arch_files(recipe))


def function_files(names):
    """The .py files of the user-defined degradations among `names`."""
    return user_files(PLAN.function_files(names))


def get_clean_image_files(wildcards):
    """The clean similarity set's image files."""
    return image_files(CONFIG["images"])


def get_training_image_files(wildcards):
    """The training images' files."""
    return image_files(CONFIG["training"]["images"])


def get_test_image_files(wildcards):
    """Test set {test_set}'s image files."""
    return image_files(CONFIG["training"]["test_sets"][wildcards.test_set])


def get_reference_set_manifest(wildcards):
    """The images whose signatures are the selector's references of {degradation}: its degraded
    similarity set; for clean (the identity's), the training images, every clean photo the run
    holds that no test set uses."""
    if wildcards.degradation == "clean":
        return CLEAN_REFERENCES
    return set_manifest(wildcards.degradation)


def get_user_function_file(wildcards):
    """{degradation}'s function file, if user-defined."""
    return function_files([wildcards.degradation])


def get_group_function_files(wildcards):
    """The function files of {group}'s members."""
    return function_files(group_members(wildcards.group))


def get_all_function_files(wildcards):
    """The function files of every trained degradation."""
    return function_files(DEGRADATIONS)


def get_arch_files(wildcards):
    """The group models' architecture file, if user-defined."""
    return arch_files(CONFIG["training"])


def get_baseline_arch_files(wildcards):
    """Baseline {trained}'s architecture file, if user-defined."""
    return arch_files(baseline_recipe(CONFIG, wildcards.trained))


def get_published_weights(wildcards):
    """Published baseline {published}'s weights file."""
    return user_files([PUBLISHED_BASELINES[wildcards.published]["weights"]])


def get_published_arch_files(wildcards):
    """Published baseline {published}'s architecture file, if user-defined."""
    return arch_files(PUBLISHED_BASELINES[wildcards.published])


def get_descriptor_photo_files(wildcards):
    """The photos rule train_descriptor trains on (the user's)."""
    return user_files(PLAN.descriptor_photo_files())


def get_descriptor_input(wildcards):
    """The descriptor weights where the features read them (none for SIFT)."""
    return descriptor_input() if PLAN.reads_descriptor else []


def get_descriptor_train_args(wildcards):
    """The train_descriptor recipe as command-line arguments."""
    return PLAN.descriptor_train_args()


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
    """The manifest of similarity set {image_set} (clean or a degradation)."""
    if image_set == "clean":
        return "results/clean/manifest.parquet"
    return f"results/degraded/{image_set}/manifest.parquet"


def variant_matrix(variant):
    """The similarity matrix of a validation variant (the method's own: the workflow's matrix)."""
    if variant == "method":
        return "results/similarity/matrix.parquet"
    return f"results/validation/matrices/{variant}.parquet"


def evals(groups):
    """The evaluation tables of `groups`' models."""
    return expand("results/eval/{group}.parquet", group=groups)


def pairs(option, names, paths):
    """`OPTION NAME PATH` per name, from a rule's input list (in the same order)."""
    return [word for name, path in zip(names, paths) for word in (option, name, path)]


def get_test_manifests(wildcards=None, degradations=None):
    """Every test set's clean and degraded manifests (of `degradations`, default every one)."""
    return PLAN.test_manifests(degradations)


def eval_degradations(wildcards):
    """The test degradations a model ({group}, or others' models on {others}) is evaluated on."""
    return PLAN.eval_degradations(getattr(wildcards, "group", None), getattr(wildcards, "others", None))


def get_test_set_args(wildcards, input):
    """`--test-set NAME CLEAN DEGRADED...` per test set, from the rule's `tests` input."""
    return PLAN.test_set_args(input.tests)


def get_signature_args(wildcards, input):
    """`--signatures NAME FILE...` per test set, from the rule's `signatures` input."""
    return PLAN.signature_args(input.signatures)


def get_store_arrays(wildcards, output):
    """The crop store's array folder, beside its index."""
    return os.path.join(os.path.dirname(output.index), "arrays")


def get_every_trained_eval(wildcards, input):
    """Every trained model's evaluation, each once (the search may have verified an experiment's group)."""
    return sorted({*input.evals, *input.search_evals})


def get_checks_cache(wildcards, output):
    """The image checks' cache beside a set's manifest."""
    return os.path.join(os.path.dirname(output.manifest), "checks.parquet")


def get_set_manifest(wildcards):
    """The manifest of {image_set}."""
    return set_manifest(wildcards.image_set)


def get_degraded_manifests(wildcards=None):
    """Every degraded similarity set's manifest."""
    return [set_manifest(name) for name in DEGRADATIONS]


def get_all_set_manifests(wildcards=None):
    """The clean and every degraded similarity set's manifest."""
    return [set_manifest(name) for name in IMAGE_SETS]


def get_variant_set_args(wildcards, input, output):
    """`--set NAME MANIFEST OUT` per similarity set, for a variant's GGD fits."""
    sets = zip(IMAGE_SETS, input.manifests, output)
    return [word for name, manifest, out in sets for word in ("--set", name, manifest, out)]


def get_ggd_files(wildcards=None):
    """Every similarity set's GGD fit."""
    return expand("results/similarity/ggd/{image_set}.parquet", image_set=IMAGE_SETS)


def get_eval_tests(wildcards):
    """The test manifests a model's evaluation reads."""
    return get_test_manifests(degradations=eval_degradations(wildcards))


def get_upper_bound_evals(wildcards=None):
    """The evaluations of the upper-bound table: single-task models and mix-all."""
    return evals(PLAN.upper_bound_groups)


def get_validation_evals(wildcards=None):
    """The evaluations the premise covers besides the search's."""
    return evals(PLAN.validation_groups)


def get_baseline_evals(wildcards=None):
    """Every configured baseline's evaluation."""
    return expand("results/baselines/{baseline}/eval.parquet", baseline=BASELINES)


def get_baseline_args(wildcards, input):
    """`--baseline NAME EVAL` per baseline, then `--published NAME` per published one."""
    published = [word for name in PUBLISHED_BASELINES for word in ("--published", name)]
    return pairs("--baseline", BASELINES, input.baselines) + published


def reference_degradations(wildcards):
    """The degradations whose reference images {group}'s model restores (every final member's
    without a group)."""
    return PLAN.reference_degradations(getattr(wildcards, "group", None))


def get_reference_tests(wildcards):
    """The similarity sets that serve as the selection's reference images."""
    return [set_manifest(name) for name in ["clean", *reference_degradations(wildcards)]]


def get_reference_set_args(wildcards, input):
    """The reference sets as one test set named `references`."""
    return ["--test-set", "references", *input.tests]


def get_reference_evals(wildcards):
    """The input's and every final group's evaluation on the reference images."""
    groups = expand("results/eval/references/{group}.parquet", group=final_groups())
    return ["results/eval/references/input.parquet", *groups]


def get_mix_all_evals(wildcards=None):
    """The mix-all model's evaluations (none with one degradation)."""
    return PLAN.mix_all_evals()


def get_replicate_evals(wildcards=None):
    """Every replicate training's evaluation."""
    return expand("results/replicates/{run}/eval.parquet", run=REPLICATE_RUNS)


def get_replicate_args(wildcards, input):
    """`--replicate DEGRADATION EVAL` per replicate training."""
    return pairs("--replicate", [run.split("/")[0] for run in REPLICATE_RUNS], input.replicates)


def get_variant_args(wildcards, input):
    """`--variant NAME MATRIX` per validation variant."""
    return pairs("--variant", PLAN.variants, input.matrices)


def get_variant_descriptor(wildcards):
    """The descriptor variant {variant} fits with: none (SIFT), untrained, or the configured one."""
    chosen = PLAN.variant_descriptor(wildcards.variant)
    if chosen is None:
        return []
    return [UNTRAINED_DESCRIPTOR] if chosen == "untrained" else descriptor_input()


def get_search_priority(wildcards):
    """The job's priority: the search's chain and what it waits for first (RunPlan.priority)."""
    return PLAN.priority(getattr(wildcards, "group", None), noise_floor=hasattr(wildcards, "k"))


def get_replicate_seed(wildcards):
    """The training seed of replicate {k} (RunPlan.replicate_seed)."""
    return PLAN.replicate_seed(int(wildcards.k))


def validation_test_set():
    """The test set the premise and the noise floor read."""
    return PLAN.validation_test_set()


def get_train_runtime(wildcards, attempt):
    """Minutes per attempt on a cluster, growing with each retry: a job that hits the limit or
    is preempted saves a checkpoint and the retry resumes from it. A profile's set-resources
    (slurm/config.yaml) or --set-resources train:runtime=M replaces it."""
    return 60 * attempt


# --- the noise floor and the grouping search: reading the round tables --------------------------


def get_noise_floor(wildcards=None):
    """The noise floor's table where there are replicates (else a drop's seed noise counts as 0)."""
    return ["results/grouping/noise_floor.parquet"] if REPLICATE_RUNS else []


def get_search_noise_floor(wildcards):
    """The noise floor, for the rounds that wait for it (RunPlan.search_waits_for_noise_floor)."""
    return get_noise_floor() if PLAN.search_waits_for_noise_floor else []


def get_noise_floor_arg(wildcards, input):
    """`--noise-floor TABLE` where the rule's input has one."""
    return ["--noise-floor", input.noise_floor[0]] if input.noise_floor else []


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


def final_groups():
    """The search's final partition (after its last round ran)."""
    return runplan.final_groups(read_round)


def get_round_evals(wildcards):
    """What round {round} plans from."""
    return round_evals(int(wildcards.round))


def get_all_rounds(wildcards):
    """Every round's table up to the last."""
    last = runplan.final_round(read_round)[0]
    return [f"results/grouping/rounds/{r}.parquet" for r in range(last + 1)]


def get_search_evals(wildcards):
    """The evaluations the search's last round read."""
    return round_evals(runplan.final_round(read_round)[0])


def stability_replicates():
    """The replicate models (GROUP, K) the stability across training seeds reads: the noise
    floor's and, once the search has answered, the groups it retrains and their members."""
    verified = pd.read_parquet(checkpoints.grouping_result.get().output.verified)
    replicates = CONFIG["grouping"]["replicates"]
    retrained = groups_to_retrain(verified, final_groups(), CONFIG["grouping"]["delta"], replicates["near_delta"])
    return replicate_models(retrained, REPLICATED, replicates["seeds"])


def get_stability_replicate_evals(wildcards):
    """The evaluation of every replicate model the stability reads."""
    return [f"results/replicates/{group}/seed{k}/eval.parquet" for group, k in stability_replicates()]


def get_stability_replicate_args(wildcards, input):
    """`--replicate GROUP K EVAL` per replicate model."""
    pairs_ = zip(stability_replicates(), input.replicates)
    return [w for (group, k), path in pairs_ for w in ("--replicate", group, str(k), path)]


def get_final_exports(wildcards):
    """Every final group's exported files."""
    suffixes = [".pth", ".safetensors", ".md"]
    return expand("results/final/models/{group}{suffix}", group=final_groups(), suffix=suffixes)


def get_group_export_evals(wildcards):
    """The evaluations {group}'s drops and card read: its own and its members'."""
    return evals(sorted({wildcards.group, *group_members(wildcards.group)}))


def get_table1_evals(wildcards):
    """The evaluations Table 1 reads."""
    return evals(PLAN.table1_groups(final_groups()))


def get_selection_evals(wildcards):
    """The input itself and every final group's model on every test degradation (the selection may
    choose any, or the identity)."""
    groups = final_groups()
    return ["results/eval/input.parquet", *evals(PLAN.scored_groups(groups)), *PLAN.others_evals(groups)]
