"""Config validation: every mistake is one clear error naming the key, before any job runs."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from grids.config import ConfigError, _resolve, config_section, load_config, schema, validate_config
from grids.degradations import NAMES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def default() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_lists_all_eleven(default):
    config = validate_config(default)
    assert tuple(config["degradations"]) == NAMES
    assert config["degradations"]["jpeg"] == {"quality": [10, 40]}


def test_defaults_are_filled_in():
    config = validate_config({"seed": 1, "images": {"photos": ["coffee"]}, "degradations": {"jpeg": {}}})
    assert config["degradations"]["jpeg"] == {"quality": (10, 40)}
    assert config["images"]["min_side"] == 64 and config["images"]["folder"] is None
    assert config["data_seed"] == config["training_seed"] == 1  # both default to seed


def test_the_data_and_training_seeds_are_given_apart():
    base = {"seed": 1, "images": {"photos": ["coffee"]}, "degradations": {"jpeg": {}}}
    config = validate_config({**base, "training_seed": 5})
    assert (config["seed"], config["data_seed"], config["training_seed"]) == (1, 1, 5)
    config = validate_config({**base, "data_seed": 0, "training_seed": None})
    assert (config["data_seed"], config["training_seed"]) == (0, 1)
    with pytest.raises(ConfigError, match="config key training_seed: -2 is less than the minimum of 0"):
        validate_config({**base, "training_seed": -2})


def mutate(config: dict, path: str, value) -> dict:
    config = copy.deepcopy(config)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "sed",
            1,
            r"config key \(top level\): Additional properties are not allowed \('sed' was unexpected\)\. "
            r"Did you mean 'seed'\?$",
        ),
        ("images.photo", ["coffee"], r"config key images: Additional properties.*'photo'.*Did you mean 'photos'"),
        ("training.iteration", 3, r"config key training: .*'iteration'.*Did you mean 'iterations'\?$"),
        ("wholly_unknown", 1, r"'wholly_unknown' was unexpected\)$"),  # nothing close: no guess
        ("images.photos", ["lena"], r"config key images.photos.0: 'lena' is not one of"),
        ("seed", -1, r"config key seed: -1 is less than the minimum of 0"),
        (
            "degradations.gausian_blur",
            {},
            r"degradations.gausian_blur: unknown degradation.*Did you mean 'gaussian_blur'",
        ),
        ("degradations.jpeg.qualty", 30, r"config key degradations.jpeg: .*'qualty'.*Did you mean 'quality'"),
        (
            "degradations.jpeg.quality",
            [40, 10],
            r"config key degradations.jpeg: jpeg.quality: inverted range \[40, 10\]",
        ),
        ("degradations.jpeg.quality", [10, 400], r"config key degradations.jpeg.quality"),
        ("degradations.jpeg.quality", [], r"config key degradations.jpeg.quality"),
        ("degradations.gaussian_blur.kernel_size", 14, r"gaussian_blur.kernel_size: empty range.*no odd integer"),
        ("degradations.sr.scale", [3.0, 2.0], r"sr.scale: inverted range"),
        ("degradations.gaussian_noise.sigma", "big", r"config key degradations.gaussian_noise.sigma"),
        ("degradations", {}, r"config key degradations: \{\} should be non-empty"),
        ("images.folder", "/no/such/folder", r"config key images.folder: folder /no/such/folder does not exist"),
        ("degradations.haze", {"function": "nowhere.py:haze"}, r"degradations.haze:.*nowhere.py not found"),
        ("degradations.haze", {"function": "haze"}, r"config key degradations.haze.function"),
        ("grouping.replicates", {"seeds": 100000}, r"grouping.replicates.seeds: 100000 is greater than the maximum"),
        (
            "grouping.replicates",
            {"degradations": [], "seeds": 1},
            r"grouping.replicates.degradations: \[\] retrains no degradation.*set seeds: 0",
        ),
    ],
)
def test_mistakes_name_the_key(default, path, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(mutate(default, path, value))


# A name for each map of the schema (an entry's key is the user's choice), so its keys are swept too.
MAP_ENTRY = {"training.test_sets": "heldout", "baselines": "extra"}


def numeric_keys(node: dict, prefix: str = "") -> list[str]:
    """Every key of the schema that holds a number (integer or not), nested keys dotted."""
    node, found = _resolve(node), []
    for name, child in node.get("properties", {}).items():
        child, key = _resolve(child), prefix + name
        kinds = child.get("type", [])
        if {"number", "integer"} & set([kinds] if isinstance(kinds, str) else kinds):
            found.append(key)
        found += numeric_keys(child, key + ".")
        if isinstance(child.get("additionalProperties"), dict) and key in MAP_ENTRY:
            found += numeric_keys(child["additionalProperties"], f"{key}.{MAP_ENTRY[key]}.")
    return found


def set_key(config: dict, path: str, value) -> dict:
    """``config`` with the dotted key ``path`` set, creating the sections on the way."""
    config = copy.deepcopy(config)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


# The schema's numeric keys, a degradation's parameter, and one end of a range (a list index).
NUMERIC_KEYS = [*numeric_keys(schema()), "degradations.jpeg.quality", "degradations.gaussian_blur.sigma.1"]


def test_the_sweep_covers_the_schema():
    assert len(NUMERIC_KEYS) > 40 and {"grouping.delta", "selection.threshold", "baselines.extra.lr"} <= set(
        NUMERIC_KEYS
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", NUMERIC_KEYS)
def test_every_numeric_key_refuses_nan_and_infinity(default, key, value):
    """JSON Schema's bounds are all false for NaN: without a finiteness check `.nan` passed for
    grouping.delta, selection.alpha, ... with wrong results and rc 0. The config goes through YAML,
    which writes the values as `.nan`, `.inf` and `-.inf`."""
    if key.endswith(".1"):  # the high end of a [low, high] range
        config = set_key(default, key.removesuffix(".1"), [0.2, value])
    else:
        config = set_key(default, key, value)
    config = yaml.safe_load(yaml.safe_dump(config))
    expected = rf"^config key {re.escape(key)}: {value} is not a finite number$"
    with pytest.raises(ConfigError, match=expected):
        validate_config(config)
    section, _, rest = key.partition(".")
    if section in {"descriptor", "features", "grouping", "selection", "validation"} and "." not in rest:
        with pytest.raises(ConfigError, match=expected):
            config_section(section, {rest: value})  # what a stage run by hand reads


def test_no_images_at_all(default):
    config = mutate(default, "images", {"photos": [], "dead_leaves": {"count": 0}})
    with pytest.raises(ConfigError, match="config key images: no clean images"):
        validate_config(config)


def test_empty_folder(default, tmp_path):
    with pytest.raises(ConfigError, match="holds no image files"):
        validate_config(mutate(default, "images.folder", str(tmp_path)))


def test_near_misses_must_be_unseen_degradations(default):
    assert validate_config(default, base_dir=ROOT)["selection"]["near_misses"] == ["mild_blur"]
    with pytest.raises(ConfigError, match=r"selection.near_misses: \['jpeg'\] not in selection.unseen"):
        validate_config(mutate(default, "selection.near_misses", ["mild_blur", "jpeg"]), base_dir=ROOT)


def test_user_defined_degradation_resolves(default):
    config = mutate(default, "degradations.haze", {"function": "examples/haze.py:haze", "params": {"strength": 0.5}})
    with pytest.raises(ConfigError, match="selection.unseen.haze: 'haze' is a trained degradation"):
        validate_config(config, base_dir=ROOT)  # the default config keeps haze unseen
    config = mutate(config, "selection.unseen", None)
    validated = validate_config(config, base_dir=ROOT)
    assert validated["selection"]["unseen"] == {}
    assert validated["degradations"]["haze"]["function"] == "examples/haze.py:haze"


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "features.pca_components",
            256,
            r"features.pca_components: 256 must be smaller than features.n_patches \(256\)",
        ),
        ("features.patch_size", 100, r"features.patch_size: 100 px exceeds images.min_side \(64 px\)"),
        ("features.kind", "hog", r"config key features.kind: 'hog' is not one of"),
        ("features.layer", "conv_hr", r"config key features.layer"),
        ("descriptor.weights", "missing.pth", r"descriptor.weights: file missing.pth not found"),
        ("descriptor.train.crop", 30, r"config key descriptor.train.crop: 30 is not a multiple of 4"),
        (
            "degradations.clean",
            {"function": "examples/haze.py:haze"},
            r"'clean' is reserved \(clean: the clean image set",
        ),
        ("grouping.delta", -0.1, r"config key grouping.delta: -0.1 is less than the minimum of 0"),
        ("grouping.strategy", "greedy", r"config key grouping.strategy: 'greedy' is not one of"),
        (
            "grouping.test_set",
            "urban100",
            r"grouping.test_set: 'urban100' is not one of training.test_sets \(heldout\)",
        ),
        ("grouping.probes_per_round", 0, r"config key grouping.probes_per_round"),
        ("baselines.realesrnet", {"arch": "swinir"}, r"config key baselines.realesrnet.arch: 'swinir' is not one of"),
        ("baselines.realesrnet", {"crop": 512}, r"baselines.realesrnet.crop: exceeds training.images.min_side"),
        ("baselines.realesrnet", {"images": {}}, r"config key baselines.realesrnet: Additional properties.*'images'"),
        ("selection.unseen", {"jpeg": {}}, r"selection.unseen.jpeg: 'jpeg' is a trained degradation"),
        ("selection.unseen", {"fog": {}}, r"selection.unseen.fog: unknown degradation 'fog'"),
        ("selection.threshold", 0, r"config key selection.threshold"),
        ("training.arch_kwargs", {"num_feats": 8}, r"training.arch_kwargs: \['num_feats'\] not accepted by srresnet"),
        (
            "baselines.r",
            {"arch": "restormer", "arch_kwargs": {"num_feat": 8}},
            r"baselines.r.arch_kwargs: \['num_feat'\]",
        ),
    ],
)
def test_feature_and_descriptor_mistakes(default, path, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(mutate(default, path, value), base_dir=ROOT)


def test_grouping_defaults(default):
    config = validate_config({k: v for k, v in default.items() if k not in ("grouping", "baselines")})
    assert config["grouping"] == {
        "delta": 0.7,
        "strategy": "lazy",
        "probes_per_round": 1,
        "test_set": None,
        "all_partitions": False,
        "decision": "conservative",
        "min_learned_gain": 0.5,
        "bootstrap": 1000,
        "replicates": {"degradations": "all", "seeds": 2, "near_delta": 0.3},
    }
    assert config["baselines"] == {}
    restormer = validate_config(mutate(mutate(default, "training.arch", "restormer"), "training.arch_kwargs", None))
    assert restormer["training"]["arch_kwargs"] == {}  # null: the backbone's own defaults


def test_the_old_min_gain_keys_are_accepted_with_a_deprecation_line(default):
    """grouping.min_gain and selection.min_gain answered different questions; renamed for what they
    mean, the old names still work (the old one wins over the default beside it) and say so."""
    old = mutate(mutate(default, "grouping.min_gain", 0.3), "selection.min_gain", 1.5)
    with pytest.warns(FutureWarning) as caught:
        config = validate_config(old)
    assert config["grouping"]["min_learned_gain"] == 0.3 and "min_gain" not in config["grouping"]
    assert config["selection"]["min_helpful_gain"] == 1.5 and "min_gain" not in config["selection"]
    said = sorted(str(w.message) for w in caught if issubclass(w.category, FutureWarning))
    assert said == [
        "config key grouping.min_gain is deprecated: write grouping.min_learned_gain (its value 0.3 is used)",
        "config key selection.min_gain is deprecated: write selection.min_helpful_gain (its value 1.5 is used)",
    ]
    assert config_section("grouping", {"min_gain": 0.2})["min_learned_gain"] == 0.2


def test_shipped_descriptor_and_photos_resolve(default):
    from grids.config import descriptor_photos, descriptor_weights
    from grids.descriptor import load_descriptor

    config = validate_config(default)
    assert config["descriptor"]["weights"] == "shipped"
    model = load_descriptor(descriptor_weights(config))
    assert model.upscale == 4 and model.num_block == 16
    assert len(list(Path(descriptor_photos(config)).glob("*.jpg"))) >= 15
    trained = validate_config(mutate(default, "descriptor.weights", "train"))
    assert descriptor_weights(trained) == "results/descriptor/msrresnet_x4.pth"


def test_paper_config_merged_over_default(default, tmp_path):
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "0801.png"), np.zeros((100, 100, 3), np.uint8))
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    merged = {**default, **paper}
    with pytest.raises(ConfigError, match="images.folder"):
        validate_config(merged)  # the placeholder folder must be set first
    merged["images"]["folder"] = str(tmp_path)
    with pytest.raises(ConfigError, match="training.images.folder"):
        validate_config(merged)
    merged["training"]["images"]["folder"] = str(tmp_path)
    for spec in merged["training"]["test_sets"].values():
        if spec:
            spec["folder"] = str(tmp_path)
    config = validate_config(merged)
    assert list(config["training"]["test_sets"]) == ["div2k_valid", "urban100"]  # heldout: null dropped
    assert config["training"]["arch"] == "restormer" and config["training"]["arch_kwargs"] == {}
    assert config["grouping"]["delta"] == 0.7 and config["grouping"]["test_set"] == "div2k_valid"
    assert config["baselines"]["realesrnet"]["arch"] == "rrdbnet"
    assert (
        config["features"]["n_patches"],
        config["features"]["patch_size"],
        config["features"]["pca_components"],
    ) == (800, 32, 300)
