"""The run plan: what a run of the workflow trains, evaluates and fits, from the validated config
alone, and from the grouping search's round tables for what the search decides.

These decisions used to live in ``workflow/rules/common.smk``, where only Snakemake could test them:
the groups and their members, the mix-all baseline, which trainings, evaluations, validation
variants and test sets a target needs, the priority and thread policy, and how the round tables are
read. ``common.smk`` wires a :class:`RunPlan` into the rules; ``grids plan``, :mod:`grids.report`
and :mod:`grids.validation` read it too. Torch-free and Snakemake-free: the workflow imports it
when it is parsed, and tests/test_runplan.py checks it against a dry run's job list.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from .config import (
    baseline_recipe,
    composite_entry,
    descriptor_photos,
    published_baselines,
    replicate_degradations,
    trained_baselines,
    training_recipe,
)
from .grouping.names import CLEAN, group_members, group_name, mix_all_group, upper_bound_groups
from .io import list_image_files
from .options import Decision, reads_descriptor
from .user_code import code_file

# The workflow's targets (workflow/Snakefile); `all` is every one of them.
TARGETS = (
    "degraded_datasets",
    "similarity_matrix",
    "upper_bounds",
    "final_models",
    "selection_report",
    "similarity_validation",
)

# What a validation variant changes in the configured `features` section (`method` changes nothing
# and is the similarity stage's own fit, results/similarity).
VARIANT_FEATURES = {
    "method": {},
    "rb16": {"kind": "descriptor", "layer": "RB16"},
    "untrained": {"kind": "descriptor"},
    "sift": {"kind": "sift"},
}


def outside(roots: tuple[str, ...], paths: Iterable[Any]) -> list[str]:
    """The ``paths`` (as written, normalised) that lie under none of ``roots`` (folders ending in
    ``/``). A path is absolute only under an absolute root, such as a module's absolute prefix."""
    found = []
    for path in map(str, paths):
        normal = os.path.normpath(path)
        absolute = os.path.isabs(normal) and not any(os.path.isabs(root) for root in roots)
        if absolute or not normal.startswith(roots):
            found.append(path)
    return found


def runnable_experiments(experiments: dict[str, list[list[str]]], degradations: list[str]) -> tuple[dict, list[str]]:
    """The experiments whose every member is a configured degradation, and a message per skipped one."""
    kept, skipped = {}, []
    for name, sides in experiments.items():
        missing = sorted({m for side in sides for m in side} - set(degradations))
        if missing:
            skipped.append(f"experiment {name} skipped: {', '.join(missing)} not among the configured degradations")
        else:
            kept[name] = [group_name(side) for side in sides]
    return kept, skipped


def experiment_groups(experiments: dict[str, list[list[str]]], degradations: list[str]) -> list[str]:
    """Canonical names of every group the runnable experiments need trained, in first-use order."""
    kept, _ = runnable_experiments(experiments, degradations)
    return list(dict.fromkeys(g for sides in kept.values() for g in sides))


def side_by_side_threads(most: int, cores: int | None) -> int:
    """Threads per job where many independent jobs wait (trainings, evaluations, GGD fits, and
    the sets they need): half the ``cores`` given to a local run, at most ``most``, so two such jobs
    run at once. (All of them alike: a job wanting every core would wait behind a stream of
    half-core jobs, whatever its priority, since two cores are never free at once.) Small CPU models
    scale poorly over threads: on 2 cores two 1-thread trainings side by side finish 1.35x sooner than
    the same two run one after the other with 2 threads each (bench/RESULTS.md). A cluster run
    (no --cores: None or unbounded) gets ``most`` per job."""
    if not cores or cores >= sys.maxsize:
        return most
    return max(1, min(most, cores // 2))


# --- the round tables of the grouping search ---------------------------------------------------
# A round table (grids.tables `grouping_round`) has one row per group with an `action`: `verify`
# (train and evaluate it next) or `final` (the partition is decided; `partition` 0 is the chosen
# one). `read_round(r)` returns round r's table; in the workflow it waits for the checkpoint.


def requested_groups(read_round: Callable[[int], Any], rounds: int) -> list[str]:
    """Groups that rounds 0..rounds-1 asked to verify."""
    groups = []
    for r in range(rounds):
        table = read_round(r)
        groups += table.loc[table.action == "verify", "group"].tolist()
    return groups


def final_round(read_round: Callable[[int], Any]) -> tuple[int, Any]:
    """(index, table) of the round that answered, reading rounds until one does."""
    r = 0
    while True:
        table = read_round(r)
        if (table.action == "final").any():
            return r, table
        r += 1


def final_groups(read_round: Callable[[int], Any]) -> list[str]:
    """The groups of the chosen partition, in the final round's order."""
    _, table = final_round(read_round)
    return table.loc[(table.action == "final") & (table.partition == 0), "group"].tolist()


@dataclass(frozen=True)
class Needs:
    """What a target needs trained, evaluated and fitted before the grouping search has run: what a
    dry run lists (the search's verifications and final groups come after, from its round tables)."""

    groups: tuple[str, ...] = ()  # models of rules train and evaluate
    baselines: tuple[str, ...] = ()  # config `baselines`: trained or imported, then evaluated
    replicates: tuple[str, ...] = ()  # the noise floor's retrainings, "DEGRADATION/seedK"
    test_sets: tuple[str, ...] = ()
    test_degradations: tuple[str, ...] = ()  # the degraded sets made of each test set
    variants: tuple[str, ...] = ()  # validation variants with GGD fits of their own

    def __or__(self, other: Needs) -> Needs:
        """Both targets' needs: each field's union, sorted."""
        return Needs(**{f.name: tuple(sorted({*getattr(self, f.name), *getattr(other, f.name)})) for f in fields(self)})


class RunPlan:
    """The groups, trainings, evaluations and fits of a run of a validated ``config``."""

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.degradations = list(config["degradations"])
        # Degradations left out of training, applied to the test sets only: the selection report
        # checks that inputs like them are called out of distribution.
        self.unseen = list(config["selection"]["unseen"])
        # The clean test images are a case of their own (the identity): what a model does to an
        # input with nothing to restore.
        self.test_degradations = [*self.degradations, *self.unseen, CLEAN]
        self.image_sets = [CLEAN, *self.degradations]  # clean: the similarity tables' reference row
        # The selector's references: every trained degradation's similarity set, and the clean set
        # for the identity (the candidate "nothing to restore").
        self.reference_sets = [*self.degradations, CLEAN]
        self.test_sets = list(config["training"]["test_sets"])
        self.mix_all = mix_all_group(self.degradations)
        self.upper_bound_groups = upper_bound_groups(self.degradations)
        # Extra Table 1 rows: mix-all models trained with their own recipe, and published weights
        # evaluated as they are (never trained).
        self.baselines = list(config["baselines"])
        self.trained_baselines = trained_baselines(config)
        self.published_baselines = published_baselines(config)
        self.replicated = replicate_degradations(config)
        seeds = config["grouping"]["replicates"]["seeds"]
        self.replicate_runs = [f"{name}/seed{k}" for name in self.replicated for k in range(1, seeds + 1)]
        validation = config["validation"]
        self.experiment_groups = experiment_groups(validation["experiments"], self.degradations)
        self.variants = list(validation["variants"])
        self.fit_variants = [v for v in self.variants if v != "method"]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunPlan:
        return cls(config)

    # --- what the rules pass on, decided here so that common.smk only wires ---

    @property
    def baseline_group(self) -> str:
        """The group a trained baseline is labelled with: every degradation (the mix-all group; with
        one degradation, that degradation's name)."""
        return self.mix_all or group_name(self.degradations)

    @property
    def config_hash(self) -> str:
        """sha256 of the validated config (JSON, sorted keys): recorded in every exported group
        model, so a model names the config it comes from."""
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()

    @property
    def config_archs(self) -> list[str]:
        """Every architecture the config names, the ones an evaluated model file may name (a weights
        file names an architecture, never code of its own: grids.checkpoint.load_model)."""
        recipes = [training_recipe(self.config), *(baseline_recipe(self.config, n) for n in self.baselines)]
        return sorted({recipe["arch"] for recipe in recipes})

    @property
    def selector_settings(self) -> dict[str, Any]:
        """The ``selection`` keys the selector is built from (a param: editing one rebuilds what
        reads the selector); ``unseen`` only decides which test sets exist, ``router_steps`` only
        trains the routers (rule selection_routers)."""
        return {k: v for k, v in self.config["selection"].items() if k not in ("unseen", "router_steps")}

    def replicate_seed(self, k: int) -> int:
        """The training seed of the noise floor's replicate ``k`` (the workflow's own model is k = 0)."""
        return self.config["training_seed"] + k

    @property
    def trains_descriptor(self) -> bool:
        """Whether the descriptor's weights are trained by the workflow (rule train_descriptor), not
        shipped nor the user's file."""
        return self.config["descriptor"]["weights"] == "train"

    @property
    def reads_descriptor(self) -> bool:
        """Whether the similarity's features need the descriptor's weights (not with SIFT)."""
        return reads_descriptor(self.config["features"])

    @property
    def search_waits_for_noise_floor(self) -> bool:
        """The rounds read the noise floor only where it decides (conservative decision) and exists
        (replicates configured)."""
        return bool(self.replicate_runs) and Decision.of(self.config["grouping"]).uses_interval

    # --- what each target needs ---

    @property
    def validation_groups(self) -> list[str]:
        """The models the premise covers besides the search's: mix-all and the experiments' groups.
        Known before the search, so they train alongside its rounds instead of after them (a group
        the search also verifies is still trained once: same file)."""
        return sorted({*filter(None, [self.mix_all]), *self.experiment_groups})

    def needs(self, target: str) -> Needs:
        """What ``target`` (one of :data:`TARGETS`, or ``all``) needs before the search has run."""
        if target == "all":
            needs = Needs()
            for one in TARGETS:
                needs |= self.needs(one)
            return needs
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}: one of {', '.join(TARGETS)}, all")
        trained = Needs(test_sets=tuple(self.test_sets), test_degradations=tuple(self.degradations))
        # The search starts from the single-task models; its result waits for the noise floor.
        search = trained | Needs(groups=tuple(self.degradations), replicates=tuple(self.replicate_runs))
        every_test = Needs(test_degradations=tuple(self.test_degradations))  # the input, baselines, selector
        return {
            "degraded_datasets": Needs(),
            "similarity_matrix": Needs(),
            "upper_bounds": trained | Needs(groups=tuple(self.upper_bound_groups)),
            "final_models": search | every_test | Needs(baselines=tuple(self.baselines)),
            # the mix-all model: the failure benchmark's `mixall` fallback
            "selection_report": search | every_test | Needs(groups=tuple(filter(None, [self.mix_all]))),
            "similarity_validation": search
            | Needs(groups=tuple(self.validation_groups), variants=tuple(self.fit_variants)),
        }[target]

    # --- what the search's answer adds ---

    def table1_groups(self, final: Iterable[str]) -> list[str]:
        """Table 1's models: the final groups', the single-task ones and mix-all."""
        return sorted(set(final) | set(self.upper_bound_groups))

    def scored_groups(self, final: Iterable[str]) -> list[str]:
        """The single-task and final groups' models (the selection and the model cards read them)."""
        return sorted(set(final) | set(self.degradations))

    # --- evaluations, validation variants, priorities ---

    def eval_degradations(self, group: str | None = None, others: str | None = None) -> list[str]:
        """What a model is scored on: a group's model on its members (all that its drops, Table 1 and
        Table 2 read); a baseline (no group) on every test degradation; a final group's model on the
        rest (``others``: the selection report reads the chosen model on any test image)."""
        if others is not None:
            members = group_members(others)
            return [name for name in self.test_degradations if name not in members]
        if group is not None:
            return group_members(group)
        return list(self.test_degradations)

    def reference_degradations(self, group: str | None = None) -> list[str]:
        """The similarity sets a final model is scored on, to fit the expected gain of ``grids
        select`` (grids/selection/gain.py): its group's members; the identity's (``group`` None): every one."""
        return list(self.degradations) if group is None else group_members(group)

    def others_evals(self, groups: Iterable[str]) -> list[str]:
        """Rule evaluate_others' tables of ``groups``: of those with a test degradation outside their
        members only (a group of every trained degradation, with no unseen ones, has none, and a job
        with no degradation to score would fail)."""
        return [f"results/eval/others/{group}.parquet" for group in groups if self.eval_degradations(others=group)]

    def mix_all_evals(self) -> list[str]:
        """The mix-all model's evaluations on every test degradation (the ``mixall`` fallback's):
        its members' table and, with unseen degradations, the others'."""
        if self.mix_all is None:
            return []
        return [f"results/eval/{self.mix_all}.parquet", *self.others_evals([self.mix_all])]

    def variant_features(self, variant: str) -> dict[str, Any]:
        """The features section a variant fits with (the configured one, changed where it differs)."""
        return {**self.config["features"], **VARIANT_FEATURES[variant]}

    def variant_descriptor(self, variant: str) -> str | None:
        """The descriptor a variant's fit uses: None (SIFT), ``untrained`` or ``configured``."""
        if not reads_descriptor(self.variant_features(variant)):
            return None
        return "untrained" if variant == "untrained" else "configured"

    def priority(self, group: str | None = None, noise_floor: bool = False) -> int:
        """The search is a chain of one verification at a time; on a machine that runs two jobs at
        once, the jobs only the validation or the selection need should fill the other slot, not
        delay the chain. So 1 goes to the trainings and evaluations on the way to the chain (the
        single-task ones) and of the chain itself; 0 to the groups only the validation needs and to
        jobs of no group (baselines; the rules before the chain set their own priority 1, since a
        rule's priority is not inherited by the jobs it waits for). The noise floor and its replicates
        (``noise_floor``) get 1 only when the search waits for them (conservative decision)."""
        if noise_floor:
            return int(Decision.of(self.config["grouping"]).uses_interval)
        validation_only = set(self.experiment_groups) - set(self.upper_bound_groups)
        return int(group is not None and group not in validation_only)

    def descriptor_train_args(self) -> list[str]:
        """The train_descriptor recipe as CLI arguments (a param: editing it retrains)."""
        train = self.config["descriptor"]["train"]
        args = {
            "--photos": descriptor_photos(self.config),
            "--iterations": train["iterations"],
            "--batch-size": train["batch_size"],
            "--crop": train["crop"],
            "--lr": train["lr"],
            "--holdout": train["holdout"],
            "--seed": self.config["training_seed"],
        }
        return [str(word) for pair in args.items() for word in pair]

    # --- the user's files a job reads (editing one reruns the job) ---

    def entries(self, names: Iterable[str]) -> dict[str, dict]:
        """The resolved config entries of degradations ``names`` (trained or unseen)."""
        trained = self.config["degradations"]
        entries = {**trained, **self.config["selection"]["unseen"], CLEAN: {}}
        return {
            name: composite_entry(entries[name], trained) if "compose" in entries[name] else entries[name]
            for name in names
        }

    def function_files(self, names: Iterable[str]) -> list[str]:
        """The .py files of the user-defined degradations among ``names`` (a composite's parts too)."""
        entries = list(self.entries(names).values())
        entries += [part["entry"] for entry in entries for part in entry.get("compose", [])]
        files = [code_file(entry.get("function", "")) for entry in entries]
        return list(dict.fromkeys(file for file in files if file))

    @staticmethod
    def image_files(images: dict[str, Any]) -> list[str]:
        """The image files of an images section's folder: adding, removing or touching one reruns
        the set made from it."""
        return [str(path) for path in list_image_files(images["folder"])[0]] if images["folder"] else []

    def descriptor_photo_files(self) -> list[str]:
        """The photos rule train_descriptor trains on."""
        return self.image_files({"folder": descriptor_photos(self.config)})

    @staticmethod
    def arch_files(recipe: dict[str, Any]) -> list[str]:
        """The .py file of a user-defined architecture (a change to it retrains)."""
        return [file for file in [code_file(recipe["arch"])] if file]

    def validation_test_set(self) -> str:
        """The test set whose PSNR defines a drop (the search's, the noise floor's, Table 2's)."""
        return self.config["grouping"]["test_set"] or self.test_sets[0]

    # --- the test sets' files, and how a stage is told about them ---

    def test_manifests(self, degradations: Iterable[str] | None = None) -> list[str]:
        """Per test set, in order: its clean manifest, then one per test degradation (all of them,
        or ``degradations``): what `--test-set` of an evaluation or the selection report lists."""
        names = list(degradations or self.test_degradations)
        return [
            path
            for test_set in self.test_sets
            for path in [
                f"results/test/{test_set}/clean/manifest.parquet",
                *(f"results/test/{test_set}/degraded/{name}/manifest.parquet" for name in names),
            ]
        ]

    def test_signatures(self) -> list[str]:
        """Per test set, in order, the signature table of each test degradation (rule
        ``test_signatures``): what `--signatures` of the selection report and the routers lists."""
        return [
            f"results/selection/signatures/{test_set}/{name}.parquet"
            for test_set in self.test_sets
            for name in self.test_degradations
        ]

    def signature_args(self, files: list[str]) -> list[str]:
        """``--signatures NAME FILE...`` per test set, from files laid out as :meth:`test_signatures`."""
        return self._per_test_set("--signatures", files)

    def test_set_args(self, manifests: list[str]) -> list[str]:
        """``--test-set NAME CLEAN DEGRADED...`` per test set, from files laid out as :meth:`test_manifests`
        lays them out (a rule passes its input, where a module's prefix may have moved them)."""
        return self._per_test_set("--test-set", manifests)

    def _per_test_set(self, flag: str, files: list[str]) -> list[str]:
        """``flag NAME FILE...`` per test set: ``files`` hold one equal run per test set, in order."""
        size = len(files) // len(self.test_sets)
        runs = [files[k * size : (k + 1) * size] for k in range(len(self.test_sets))]
        return [word for name, run in zip(self.test_sets, runs) for word in (flag, name, *run)]
