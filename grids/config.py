"""Config loading and validation: one clear error, naming the key, before any job runs.

Validation has three layers, all run by :func:`validate_config` (the workflow calls it when the
Snakefile is parsed, the CLI before it does anything):

1. names: every name that becomes a wildcard, a path component or a command-line word (degradations,
   ``selection.unseen``, test sets, baselines) matches :data:`NAME_PATTERN`; every degradation is a
   built-in or has a ``function`` (with a "did you mean");
2. the JSON schema ``config.schema.yaml`` (types, bounds, ``additionalProperties: false``);
3. meaning: ranges not inverted or empty, odd kernel sizes, folders and functions that exist.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .degradations import BUILTINS, NAMES, get_degradation
from .grouping.names import CLEAN, IDENTITY, IDENTITY_GROUP
from .io import list_image_files, unusable_files
from .options import reads_descriptor

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@cache
def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _resolve(node: dict) -> dict:
    """A schema node with its local ``$ref`` (``#/$defs/...``) followed; its own keys win."""
    if "$ref" not in node:
        return node
    target = schema()
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target), **{k: v for k, v in node.items() if k != "$ref"}}


def schema_defaults(node: dict) -> Any:
    """What a schema node states as the value of a key left out: its ``default``, or for an object
    without one, the defaults of its properties (deep copies: callers may change them)."""
    node = _resolve(node)
    if "default" in node:
        return copy.deepcopy(node["default"])
    properties = node.get("properties", {})
    return {name: schema_defaults(child) for name, child in properties.items()}


def parameter_rows(node: dict | None = None, prefix: str = "") -> list[dict[str, Any]]:
    """The parameter table the Snakemake workflow catalog renders from the schema: per key (nested
    keys dotted) its ``type``, ``default``, whether it is ``required`` and its ``description``.

    A key with a ``default`` of its own is one row (its default is the whole value); an object
    without one lists its properties beneath it. A map (an object admitting keys of any name:
    ``degradations``, ``baselines``, ``training.test_sets``) is one row, followed by the entries
    it names (the built-in degradations, each with its parameters)."""
    node = _resolve(schema() if node is None else node)
    rows = []
    for name, child in node.get("properties", {}).items():
        child = _resolve(child)
        key = prefix + name
        kind = child.get("type", "enum" if "enum" in child else [o["type"] for o in child.get("oneOf", [])])
        rows.append(
            {
                "name": key,
                "type": kind if isinstance(kind, str) else "|".join(kind),
                "required": name in node.get("required", []),
                "has_default": "default" in child,
                "default": child.get("default"),
                "description": " ".join(str(child.get("description", "")).split()),
            }
        )
        if "default" not in child and "properties" in child:
            rows += parameter_rows(child, key + ".")
    return rows


# The one home of the config's defaults is the schema (config.schema.yaml, whose `default` fields
# the Snakemake workflow catalog shows as well): these dicts are read from it, once. They are what
# validate_config fills in for a key left out; config/config.yaml (the embedded run) and
# config/README.md state the same values (tests/test_defaults.py keeps them equal). The stages
# receive complete, validated sections and merge nothing.
DEFAULT_IMAGES = schema_defaults(schema()["$defs"]["image_set"])
ASSETS = Path(__file__).with_name("assets")  # shipped inside the package (works when pip-installed)
SHIPPED_DESCRIPTOR = ASSETS / "descriptor" / "msrresnet_x4.pth"
SHIPPED_PHOTOS = ASSETS / "photos"
TRAINED_DESCRIPTOR = "results/descriptor/msrresnet_x4.pth"  # what the rule train_descriptor writes
DEFAULT_DESCRIPTOR = schema_defaults(schema()["properties"]["descriptor"])
DEFAULT_FEATURES = schema_defaults(schema()["properties"]["features"])
DEFAULT_TRAINING = schema_defaults(schema()["properties"]["training"])
DEFAULT_GROUPING = schema_defaults(schema()["properties"]["grouping"])
DEFAULT_SELECTION = schema_defaults(schema()["properties"]["selection"])
DEFAULT_VALIDATION = schema_defaults(schema()["properties"]["validation"])
# the clean set (also a test case); the degraded input scored as a model; the choice "nothing to restore"
RESERVED_SET_NAMES = {CLEAN, IDENTITY, IDENTITY_GROUP}
TABLE1_NAMES = {"input", "upper", "mixall", "grids"}  # Table 1's own psnr_* columns: not baseline names
# Keyword arguments of each backbone (kept here so the config is checked without importing torch;
# tests/test_archs.py checks them against the classes' signatures).
ARCH_PARAMETERS = {
    "srresnet": ["num_in_ch", "num_out_ch", "num_feat", "num_block"],
    "restormer": [
        "inp_channels",
        "out_channels",
        "dim",
        "num_blocks",
        "num_refinement_blocks",
        "heads",
        "ffn_expansion_factor",
        "bias",
        "LayerNorm_type",
    ],
    "rrdbnet": ["num_in_ch", "num_out_ch", "scale", "num_feat", "num_block", "num_grow_ch"],
}  # the clean set's name in the similarity tables


# Names become Snakemake wildcards, folder names under results/, group names (joined by "+") and
# command-line words, so they are identifiers: lower case like the built-ins, no "/", "+", space,
# "." or shell metacharacter, hence never a path that leaves results/ nor a word a shell splits.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
NAME_RULE = "a lower-case letter, then up to 63 lower-case letters, digits or '_'"


class ConfigError(ValueError):
    """An invalid config; the message names the offending key."""


def check_name(name: object, key: str) -> None:
    """Raise :class:`ConfigError` unless ``name`` (found under config key ``key``) is an identifier."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ConfigError(
            f"config key {key}: the name {name!r} is not allowed: names must be {NAME_RULE} "
            f"(pattern {NAME_PATTERN}), since they become folder names and wildcards"
        )


def _check_names(config: dict) -> None:
    """Every name the workflow turns into a path or a wildcard, checked before anything uses it."""
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    selection = config.get("selection") if isinstance(config.get("selection"), dict) else {}
    for section, key in (
        (config.get("degradations"), "degradations"),
        (selection.get("unseen"), "selection.unseen"),
        (training.get("test_sets"), "training.test_sets"),
        (config.get("baselines"), "baselines"),
        ((config.get("validation") or {}).get("experiments"), "validation.experiments"),
    ):
        if isinstance(section, dict):
            for name in section:
                check_name(name, f"{key}.{name}")


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate_config(config: dict[str, Any], base_dir: str | Path = ".") -> dict[str, Any]:
    """Check ``config`` and return a copy with defaults filled in; raise :class:`ConfigError`.
    The checks run in this order, so that of several mistakes the same one is reported first."""
    config = copy.deepcopy(dict(config))
    _drop_null_entries(config)
    for name in RENAMED_KEYS:
        if isinstance(config.get(name), dict):
            config[name] = renamed_keys(name, config[name])
    _check_names(config)
    _check_degradation_names(config)
    _check_arch_names(config)
    check_finite(config)
    _check_schema(config)
    _seeds_section(config)
    config["images"] = _image_set(config["images"], "images", base_dir)
    _training_section(config, base_dir)
    _grouping_section(config)
    _baselines_section(config, base_dir)
    _features_section(config)
    _descriptor_section(config, base_dir)
    _degradations_section(config, base_dir)
    _validation_section(config)
    _selection_section(config, base_dir)
    return config


# Keys renamed for what they mean, the old name still accepted (with a line saying so): section ->
# {old: new}. The two `min_gain`s answered different questions: "did the model learn?" (grouping)
# and "will the restoration help?" (selection).
RENAMED_KEYS = {
    "grouping": {"min_gain": "min_learned_gain"},
    "selection": {"min_gain": "min_helpful_gain"},
}


def renamed_keys(name: str, section: dict[str, Any]) -> dict[str, Any]:
    """``section`` (config section ``name``) with its old key names replaced by the new ones, a
    deprecation warning per old key. An old key wins over the new one beside it: Snakemake merges a
    user's file over config/config.yaml, whose new key is then only the default."""
    section = dict(section)
    for old, new in RENAMED_KEYS.get(name, {}).items():
        if old in section:
            warnings.warn(
                f"config key {name}.{old} is deprecated: write {name}.{new} (its value {section[old]!r} is used)",
                FutureWarning,  # shown by default: it is meant for the user, not a developer
                stacklevel=3,
            )
            section[new] = section.pop(old)
    return section


def _seeds_section(config: dict[str, Any]) -> None:
    """``data_seed`` and ``training_seed``, each ``seed`` unless given: a new training of the same
    data changes the training seed alone (the schema says what each one seeds)."""
    for key in ("data_seed", "training_seed"):
        if config.get(key) is None:
            config[key] = config["seed"]


def _drop_null_entries(config: dict[str, Any]) -> None:
    """`name: null` drops an entry inherited from an earlier config file (Snakemake merges
    --configfile files key by key, so an entry cannot be deleted otherwise)."""
    for section in (
        config.get("degradations"),
        (config.get("training") or {}).get("test_sets"),
        (config.get("selection") or {}).get("unseen"),
        (config.get("validation") or {}).get("experiments"),
    ):
        if isinstance(section, dict):
            for name in [n for n, v in section.items() if v is None]:
                del section[name]


def _check_degradation_names(config: dict[str, Any]) -> None:
    """An unknown degradation, with the closest built-in name (before the schema's vaguer message)."""
    degradations = config.get("degradations")
    if not isinstance(degradations, dict):
        return
    for name, entry in degradations.items():
        if name not in BUILTINS and not (isinstance(entry, dict) and "function" in entry):
            close = difflib.get_close_matches(str(name), NAMES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"config key degradations.{name}: unknown degradation {name!r}.{hint} "
                f"Built-ins: {', '.join(NAMES)}; a user-defined one needs a 'function' key."
            )


def _check_arch_names(config: dict[str, Any]) -> None:
    """An unknown architecture of the training or a baseline, and a misplaced training.runtime."""
    for key, section in [
        ("training", config.get("training")),
        *((f"baselines.{name}", entry) for name, entry in (config.get("baselines") or {}).items()),
    ]:
        arch = section.get("arch") if isinstance(section, dict) else None
        if isinstance(arch, str) and ":" not in arch and arch not in ARCH_PARAMETERS:
            raise ConfigError(
                f"config key {key}.arch: {arch!r} is not one of {list(ARCH_PARAMETERS)} "
                "(or name a class of your own as 'file.py:Class' or 'package.module:Class')"
            )
    if isinstance(config.get("training"), dict) and "runtime" in config["training"]:
        raise ConfigError(
            "config key training.runtime: a cluster's time limit is a resource of the rule, not part of the "
            "experiment: set it in your profile (set-resources: train: runtime: MINUTES) or on the command "
            "line (--set-resources train:runtime=MINUTES)"
        )


def check_finite(value: Any, path: tuple = ()) -> None:
    """Every number in ``value`` is finite: YAML's ``.nan``, ``.inf`` and ``-.inf`` are a
    :class:`ConfigError` naming the key (JSON Schema's bounds are all false for NaN, so the schema
    alone lets it through, with wrong results and no warning)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {_key(path)}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, (*path, key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_finite(item, (*path, index))


def _check_schema(config: dict[str, Any]) -> None:
    """The schema's best-matching error, naming the key."""
    errors = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(config), key=lambda e: list(e.path))
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    message = error.message + _did_you_mean(error)
    if list(error.absolute_path)[:2] == ["validation", "experiments"] and error.validator == "minItems":
        if len(error.absolute_path) == 4:  # a group, not the pair of groups
            message = f"{error.instance} has {len(error.instance)} member(s); a group mixes 2 or more degradations"
    raise ConfigError(f"config key {_key(error.absolute_path)}: {message}")


def _did_you_mean(error: jsonschema.ValidationError) -> str:
    """For an unknown key, the closest key the schema allows there."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return ""
    known = list(error.schema.get("properties", {}))
    unknown = [str(key) for key in error.instance if key not in known]
    close = difflib.get_close_matches(unknown[0], known, n=1) if unknown else []
    return f". Did you mean {close[0]!r}?" if close else ""


def _training_section(config: dict[str, Any], base_dir: str | Path) -> None:
    """`training` with its defaults, its image sets resolved; test photos kept out of training."""
    given = config.get("training", {})
    training = config["training"] = {**DEFAULT_TRAINING, **given}
    if ("arch" in given and "arch_kwargs" not in given) or training["arch_kwargs"] is None:
        training["arch_kwargs"] = {}  # the default sizes belong to the default architecture
    _check_arch_kwargs(training, "training", base_dir)
    training["images"] = _image_set(training["images"], "training.images", base_dir)
    training["test_sets"] = {
        name: _image_set(spec, f"training.test_sets.{name}", base_dir) for name, spec in training["test_sets"].items()
    }
    for name, spec in training["test_sets"].items():
        shared = sorted(set(spec["photos"]) & set(training["images"]["photos"]))
        if shared:
            raise ConfigError(f"config key training.test_sets.{name}.photos: {shared} also in training.images.photos")
        in_references = sorted(set(spec["photos"]) & set(config["images"]["photos"]))
        if in_references:  # the selection's references are the degraded `images` sets
            warnings.warn(
                f"config key training.test_sets.{name}.photos: {in_references} also in images.photos, whose "
                "degraded sets are the selection's references: the selection report then scores these test "
                "images against their own content, and its accuracy and out-of-distribution numbers are optimistic",
                stacklevel=3,
            )
    if training["crop"] > training["images"]["min_side"]:
        raise ConfigError(
            f"config key training.crop: {training['crop']} px exceeds training.images.min_side "
            f"({training['images']['min_side']} px)"
        )


def _grouping_section(config: dict[str, Any]) -> None:
    grouping = config["grouping"] = {**DEFAULT_GROUPING, **config.get("grouping", {})}
    training = config["training"]
    if grouping["test_set"] is not None and grouping["test_set"] not in training["test_sets"]:
        raise ConfigError(
            f"config key grouping.test_set: {grouping['test_set']!r} is not one of training.test_sets "
            f"({', '.join(training['test_sets'])})"
        )
    grouping["replicates"] = _replicates(grouping["replicates"], list(config["degradations"]))
    _check_same_size(training, "training")


def _baselines_section(config: dict[str, Any], base_dir: str | Path) -> None:
    """Each baseline: published weights checked, or the training recipe with its overrides."""
    training = config["training"]
    config["baselines"] = dict(config.get("baselines") or {})
    for name, overrides in config["baselines"].items():
        if name in TABLE1_NAMES:
            raise ConfigError(
                f"config key baselines.{name}: the name is taken by Table 1's own column psnr_{name}; choose another"
            )
        if "arch" in overrides and overrides.get("arch_kwargs") is None:
            overrides["arch_kwargs"] = {}
        if "weights" in overrides:
            _check_published(name, overrides, training, base_dir)
            continue
        _check_arch_kwargs({**training, **overrides}, f"baselines.{name}", base_dir)
        _check_same_size({**training, **overrides}, f"baselines.{name}")
        if overrides.get("crop", training["crop"]) > training["images"]["min_side"]:
            raise ConfigError(f"config key baselines.{name}.crop: exceeds training.images.min_side")


def _features_section(config: dict[str, Any]) -> None:
    features = config["features"] = {**DEFAULT_FEATURES, **config.get("features", {})}
    if reads_descriptor(features) and features["n_patches"] < 2:
        raise ConfigError("config key features.n_patches: need at least 2 patches for a PCA")
    if features["pca_components"] >= features["n_patches"]:
        raise ConfigError(
            f"config key features.pca_components: {features['pca_components']} must be smaller than "
            f"features.n_patches ({features['n_patches']}): centred PCA has rank n_patches - 1"
        )
    images = config["images"]
    if features["patch_size"] > images["min_side"]:
        raise ConfigError(
            f"config key features.patch_size: {features['patch_size']} px exceeds images.min_side "
            f"({images['min_side']} px), so an accepted image could be too small to crop"
        )


def _descriptor_section(config: dict[str, Any], base_dir: str | Path) -> None:
    descriptor = {**DEFAULT_DESCRIPTOR, **config.get("descriptor", {})}
    descriptor["train"] = {**DEFAULT_DESCRIPTOR["train"], **descriptor.get("train", {})}
    config["descriptor"] = descriptor
    if descriptor["weights"] not in ("shipped", "train") and not (Path(base_dir) / descriptor["weights"]).is_file():
        raise ConfigError(
            f"config key descriptor.weights: file {descriptor['weights']} not found "
            "(or use 'shipped', or 'train' to train it with the rule train_descriptor)"
        )
    if descriptor["train"]["photos"] != "shipped" and not (Path(base_dir) / descriptor["train"]["photos"]).is_dir():
        raise ConfigError(f"config key descriptor.train.photos: folder {descriptor['train']['photos']} does not exist")


def _degradations_section(config: dict[str, Any], base_dir: str | Path) -> None:
    for name, entry in config["degradations"].items():
        if name in RESERVED_SET_NAMES:
            raise ConfigError(
                f"config key degradations.{name}: the name {name!r} is reserved (clean: the clean image set and "
                "test case; input: the degraded input scored as a model; identity: nothing to restore)"
            )
        config["degradations"][name] = _resolve_degradation(name, entry, f"degradations.{name}", base_dir)


def _validation_section(config: dict[str, Any]) -> None:
    validation = config["validation"] = {**DEFAULT_VALIDATION, **config.get("validation", {})}
    validation["experiments"] = dict(validation["experiments"] or {})
    for name, sides in validation["experiments"].items():
        _check_experiment(name, sides, config)


def _selection_section(config: dict[str, Any], base_dir: str | Path) -> None:
    """`selection`: the unseen degradations resolved, kept out of training; their near misses."""
    selection = config["selection"] = {**DEFAULT_SELECTION, **config.get("selection", {})}
    selection["unseen"] = dict(selection["unseen"] or {})
    for name, entry in selection["unseen"].items():
        if name in config["degradations"] or name in RESERVED_SET_NAMES:
            raise ConfigError(
                f"config key selection.unseen.{name}: {name!r} is a trained degradation (or reserved); "
                "unseen degradations must be left out of `degradations`"
            )
        key = f"selection.unseen.{name}"
        if isinstance(entry, dict) and "compose" in entry:  # kept as given; the degrade stage gets the parts
            _resolve_degradation(name, composite_entry(entry, config["degradations"], key), key, base_dir)
            continue
        selection["unseen"][name] = _resolve_degradation(name, entry, key, base_dir)
    if not selection["unseen"]:  # `unseen: null` turns the benchmark off, its near misses with it
        selection["near_misses"] = []
    strangers = [name for name in selection["near_misses"] if name not in selection["unseen"]]
    if strangers:
        raise ConfigError(f"config key selection.near_misses: {strangers} not in selection.unseen")


def composite_entry(entry: dict, degradations: dict[str, dict], key: str = "selection.unseen") -> dict:
    """An unseen degradation ``{compose: [a, b, ...]}`` (trained degradations applied in sequence,
    each with its trained parameter ranges) as the degrade stage takes it: ``{compose: [{name,
    entry}, ...]}``. A ConfigError naming ``key`` for anything else."""
    parts = entry.get("compose")
    extra = sorted(set(entry) - {"compose"})
    if extra:
        raise ConfigError(f"config key {key}: a composite takes only `compose` (its parts keep their own), not {extra}")
    if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(part, str) for part in parts):
        raise ConfigError(f"config key {key}.compose: expected a list of two or more trained degradation names")
    for part in parts:
        if part not in degradations:
            close = difflib.get_close_matches(part, sorted(degradations), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"trained: {', '.join(degradations)}"
            raise ConfigError(f"config key {key}.compose: {part!r} is not a trained degradation; {hint}")
    return {"compose": [{"name": part, "entry": degradations[part]} for part in parts]}


def _replicates(given: dict, degradations: list[str]) -> dict:
    """``grouping.replicates`` with its defaults, its degradations checked."""
    replicates = {**DEFAULT_GROUPING["replicates"], **given}
    if replicates["degradations"] == [] and replicates["seeds"]:
        raise ConfigError(
            "config key grouping.replicates.degradations: [] retrains no degradation, so there would be no "
            f"noise floor despite seeds: {replicates['seeds']}; name degradations (null: the first three) or "
            "set seeds: 0 to turn the noise floor off"
        )
    named = [] if replicates["degradations"] in (None, "all") else replicates["degradations"]
    strangers = [name for name in named if name not in degradations]
    if strangers:
        raise ConfigError(f"config key grouping.replicates.degradations: {strangers} not among `degradations`")
    return replicates


def replicate_degradations(config: dict[str, Any]) -> list[str]:
    """The degradations the noise floor retrains (all; null: the first three configured); none without seeds."""
    replicates = config["grouping"]["replicates"]
    if not replicates["seeds"]:
        return []
    chosen = replicates["degradations"]
    if chosen == "all":
        return list(config["degradations"])
    return list(config["degradations"])[:3] if chosen is None else list(chosen)


def training_recipe(config: dict[str, Any]) -> dict[str, Any]:
    """What a model's training depends on besides its data and degradations: the training section
    without ``images`` and ``test_sets`` (the rules pass those as files). A change retrains."""
    return {k: v for k, v in config["training"].items() if k not in ("images", "test_sets")}


def group_iterations(recipe: dict[str, Any], n_members: int) -> int:
    """Optimisation steps of a model trained on ``n_members`` degradations.

    ``training.iterations`` is a single-task model's budget. With ``group_budget: fixed`` every
    model trains that long (the paper's rule: at its 600k steps every model has converged). With
    ``per_member`` a group of k trains k times as long, capped at ``max_iterations``: far from
    convergence, a group given one member's budget shows each member a k-th of the samples, and
    its drop would measure that, not the conflict between its members.
    """
    if recipe.get("group_budget", "fixed") == "fixed":
        return recipe["iterations"]
    steps = recipe["iterations"] * n_members
    cap = recipe.get("max_iterations")
    return steps if cap is None else max(recipe["iterations"], min(steps, cap))


def baseline_recipe(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The recipe of Table 1's baseline ``name``: the training recipe with the baseline's
    overrides (:func:`validate_config` gave an overriding ``arch`` its own ``arch_kwargs``)."""
    return {**training_recipe(config), **config["baselines"][name]}


def config_section(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """One section (``grouping``, ``features``, ...) checked against the schema, with its defaults
    filled in: for a stage run by hand with a partial section (the rules pass whole ones)."""
    defaults = {
        "descriptor": DEFAULT_DESCRIPTOR,
        "features": DEFAULT_FEATURES,
        "grouping": DEFAULT_GROUPING,
        "selection": DEFAULT_SELECTION,
        "validation": DEFAULT_VALIDATION,
    }[name]
    given = renamed_keys(name, given)
    check_finite(given, (name,))
    errors = list(jsonschema.Draft202012Validator(schema()["properties"][name]).iter_errors(given))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"config key {_key([name, *error.absolute_path])}: {error.message}")
    return {**defaults, **given}


def _resolve_degradation(name: str, entry: dict, key: str, base_dir: str | Path) -> dict:
    """The entry with a built-in's defaults filled in (a user-defined one as given); a degradation
    that cannot be built is a ConfigError naming ``key``."""
    try:
        deg = get_degradation(name, entry, base_dir)
    except (ValueError, KeyError, FileNotFoundError, ImportError, SyntaxError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ConfigError(f"config key {key}: {message}") from None
    return dict(deg.config) if name in BUILTINS else entry


def _check_arch_kwargs(recipe: dict, key: str, base_dir: str | Path = ".") -> None:
    """The architecture exists and accepts ``arch_kwargs`` (a user's class: importable, a
    ``torch.nn.Module``, its signature binds them; built-ins are checked without importing torch)."""
    if recipe["arch"] not in ARCH_PARAMETERS:
        _check_user_arch(recipe, key, base_dir)
        return
    unknown = sorted(set(recipe["arch_kwargs"]) - set(ARCH_PARAMETERS[recipe["arch"]]))
    if unknown:
        raise ConfigError(
            f"config key {key}.arch_kwargs: {unknown} not accepted by {recipe['arch']} "
            f"(accepted: {', '.join(ARCH_PARAMETERS[recipe['arch']])}); set arch_kwargs: null for its defaults"
        )


def _check_same_size(recipe: dict, key: str) -> None:
    """A model trained here restores at the input's size: RRDBNet only at scale 1."""
    if recipe["arch"] == "rrdbnet" and recipe["arch_kwargs"].get("scale", 1) != 1:
        raise ConfigError(
            f"config key {key}.arch_kwargs: a trained rrdbnet restores at the input's size, so it needs scale: 1 "
            "(a published x4 model is a baseline with weights: FILE instead)"
        )


def _check_published(name: str, entry: dict, training: dict, base_dir: str | Path) -> None:
    """A published-weights baseline: only what evaluating it needs, its file present. Its
    architecture defaults to the training one (with its sizes, unless it names its own)."""
    key = f"baselines.{name}"
    extra = sorted(set(entry) - {"weights", "arch", "arch_kwargs"})
    if extra:
        raise ConfigError(
            f"config key {key}: published weights are evaluated, not trained, so {extra} do not apply "
            "(a published baseline takes weights, arch and arch_kwargs)"
        )
    weights = Path(base_dir) / entry["weights"]
    if weights.is_dir():
        raise ConfigError(
            f"config key {key}.weights: {entry['weights']} is a folder; give the weights file (.pth or .safetensors)"
        )
    if not weights.is_file():
        raise ConfigError(
            f"config key {key}.weights: file {entry['weights']} not found (for Real-ESRGAN x4plus: "
            "bash scripts/fetch_realesrgan.sh)"
        )
    entry.setdefault("arch", training["arch"])
    entry.setdefault("arch_kwargs", training["arch_kwargs"])
    _check_arch_kwargs(entry, key, base_dir)


def published_baselines(config: dict[str, Any]) -> dict[str, dict]:
    """The baselines that name published weights: evaluated as they are, never trained."""
    return {name: entry for name, entry in config["baselines"].items() if "weights" in entry}


def trained_baselines(config: dict[str, Any]) -> dict[str, dict]:
    """The baselines trained here: a mix-all model with their recipe overrides."""
    return {name: entry for name, entry in config["baselines"].items() if "weights" not in entry}


def _check_user_arch(recipe: dict, key: str, base_dir: str | Path) -> None:
    import inspect

    from .archs import check_arch_contract, resolve_arch

    try:
        cls = resolve_arch(recipe["arch"], base_dir)
    except (ImportError, OSError, ValueError, SyntaxError) as err:
        raise ConfigError(f"config key {key}.arch: {err}") from None
    try:
        inspect.signature(cls).bind(**recipe["arch_kwargs"])
    except TypeError as err:
        raise ConfigError(
            f"config key {key}.arch_kwargs: {recipe['arch']} does not accept {recipe['arch_kwargs']}: {err}"
        ) from None
    # Built and run once on a tiny input, so a class that breaks its contract fails here, naming
    # it, rather than in a training job (this runs the user's code, as the README says).
    try:
        check_arch_contract(cls, recipe["arch"], recipe["arch_kwargs"])
    except ValueError as err:
        raise ConfigError(f"config key {key}.arch: {err}") from None


def _check_experiment(name: str, sides: list[list[str]], config: dict) -> None:
    """Two different groups of equal size (the schema holds each to 2+ distinct names) whose members
    are degradations. A built-in left out of ``degradations`` (or an unseen one) is a known name:
    the experiment is skipped, saying so, when the workflow runs; any other name is a mistake."""
    key = f"config key validation.experiments.{name}"
    known = set(NAMES) | set(config["degradations"]) | set((config.get("selection") or {}).get("unseen") or {})
    for member in (m for side in sides for m in side):
        if member not in known:
            close = difflib.get_close_matches(member, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"built-ins are {', '.join(NAMES)}"
            raise ConfigError(f"{key}: {member!r} is not a degradation (neither built-in nor configured); {hint}")
    if len(sides[0]) != len(sides[1]):
        raise ConfigError(
            f"{key}: its two groups have {len(sides[0])} and {len(sides[1])} members; an experiment compares "
            "groups of equal size"
        )
    if set(sides[0]) == set(sides[1]):
        same = ", ".join(sorted(sides[0]))
        raise ConfigError(f"{key}: its two groups are the same ({same}); an experiment compares two different groups")


def _image_set(spec: dict, key: str, base_dir: str | Path) -> dict:
    """An image-set section with defaults filled in; its folder must exist and hold images."""
    images = {**DEFAULT_IMAGES, **spec}
    images["dead_leaves"] = {**DEFAULT_IMAGES["dead_leaves"], **images["dead_leaves"]}
    if images["folder"]:
        folder = Path(base_dir) / images["folder"]
        if not folder.is_dir():
            raise ConfigError(f"config key {key}.folder: folder {folder} does not exist")
        files = list_image_files(folder)[0]
        if not files:
            raise ConfigError(f"config key {key}.folder: folder {folder} holds no image files")
        problems = unusable_files(files)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise ConfigError(f"config key {key}.folder: {len(problems)} unusable entries: {shown}")
    if not images["photos"] and not images["dead_leaves"]["count"] and not images["folder"]:
        raise ConfigError(f"config key {key}: no clean images (no photos, dead_leaves.count 0, no folder)")
    return images


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last one silently, so a repeated ``seed:`` would change the run unnoticed)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let PyYAML report it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, name: str) -> Any:
    """``text`` as YAML, rejecting duplicate keys; an error is a :class:`ConfigError` naming
    ``name`` (the file) and the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{name}, line {mark.line + 1}, column {mark.column + 1}" if mark else name
        what = " ".join(part for part in (err.context, err.problem) if part)
        kind = "" if what.startswith("duplicate key") else "not valid YAML: "
        raise ConfigError(f"config file {where}: {kind}{what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {name}: not valid YAML ({err})") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping: a missing file, a YAML mistake, a duplicate key or a top level
    that is not a mapping is a :class:`ConfigError` naming the file (and the line)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path}: is a folder, not a file")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path}: cannot be read ({err})") from None
    config = parse_yaml(text, str(path))
    if not isinstance(config, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys, got {type(config).__name__}")
    if "__use_yte__" in config:
        # With it, Snakemake's loader evaluates the file's ?-expressions as Python: a config that runs
        # code. Refused, so config/config.yaml (read here before Snakemake reads it) never does.
        raise ConfigError(
            f"config file {path}: __use_yte__ makes Snakemake run the file's YTE expressions as Python code; "
            "GRIDS configs are plain YAML: remove the key (and any ?-expressions)"
        )
    return config


def merge_configs(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base`` key by key, recursing into mappings: what Snakemake does with
    several ``--configfile`` files."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_configs(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | list[str | Path], base_dir: str | Path = ".") -> dict[str, Any]:
    """Read, merge (later files win, as with ``snakemake --configfile A B``) and validate."""
    config: dict[str, Any] = {}
    for one in [path] if isinstance(path, (str, Path)) else path:
        config = merge_configs(config, read_yaml(one))
    return validate_config(config, base_dir)


def descriptor_weights(config: dict[str, Any]) -> str:
    """The weights file the features stage uses (``shipped``, ``train`` or a path, resolved)."""
    weights = config["descriptor"]["weights"]
    return {"shipped": str(SHIPPED_DESCRIPTOR), "train": TRAINED_DESCRIPTOR}.get(weights, weights)


def descriptor_photos(config: dict[str, Any]) -> str:
    photos = config["descriptor"]["train"]["photos"]
    return str(SHIPPED_PHOTOS) if photos == "shipped" else photos
