"""One home for the config's defaults, the schema's ``default`` fields (read into the DEFAULT_* dicts
of grids.config): what validate_config fills in, what config/config.yaml sets and what
config/README.md states agree, and the schema renders the workflow catalog's parameter table with a
default and a description for every key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from grids import config as cfg

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())

# Sections whose every key has a default, and where the embedded run deliberately differs from it.
SECTIONS = {
    "descriptor": cfg.DEFAULT_DESCRIPTOR,
    "features": cfg.DEFAULT_FEATURES,
    "training": cfg.DEFAULT_TRAINING,
    "grouping": cfg.DEFAULT_GROUPING,
    "selection": cfg.DEFAULT_SELECTION,
    "validation": cfg.DEFAULT_VALIDATION,
}
# The embedded demo also benchmarks out-of-distribution detection on unseen degradations from
# examples/ (files a pip-installed package does not have, so they cannot be the package's default),
# one of them a near miss.
EMBEDDED_ONLY = {"selection.unseen", "selection.near_misses"}


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and name not in ("training.arch_kwargs", "validation.experiments"):
            out.update(leaves(value, name + "."))
        else:
            out[name] = value
    return out


DEFAULTS = {k: v for section, tree in SECTIONS.items() for k, v in leaves(tree, section + ".").items()}
# An image set's own defaults (the keys an image-set section may leave out).
IMAGE_SET_KEYS = {"folder", "min_side"}


def test_validate_config_fills_in_exactly_the_defaults():
    minimal = {"seed": 0, "images": {"photos": ["astronaut"]}, "degradations": {"jpeg": {}}}
    filled = cfg.validate_config(minimal)
    for key, value in DEFAULTS.items():
        if key.startswith(("training.images", "training.test_sets")):
            continue  # image sets: their own defaults are filled in too (checked below)
        node = filled
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    for key in IMAGE_SET_KEYS:
        assert filled["images"][key] == cfg.DEFAULT_IMAGES[key]


def test_the_embedded_config_sets_the_defaults():
    embedded = leaves(EMBEDDED)
    differ = {k: (embedded.get(k), v) for k, v in DEFAULTS.items() if k not in EMBEDDED_ONLY and embedded.get(k) != v}
    assert not differ, differ
    for key in IMAGE_SET_KEYS:
        assert EMBEDDED["images"][key] == cfg.DEFAULT_IMAGES[key], key


def readme_defaults() -> tuple[dict[str, str], set[str]]:
    """``key -> default cell`` of config/README.md's key table where the cell states literal values
    (``a.b``, ``.c`` rows expanded), and every key the table documents."""
    rows, documented = {}, set()
    text = (ROOT / "config" / "README.md").read_text()
    for keys, default in re.findall(r"^\| (`[^|]+`) \| [^\n]* \| ([^|\n]+) \|$", text, flags=re.M):
        names = re.findall(r"`([^`]+)`", keys)
        values = re.findall(r"`([^`]+)`", default)
        full = [names[0]] + [names[0].rsplit(".", 1)[0] + n if n.startswith(".") else n for n in names[1:]]
        documented.update(full)
        if len(values) == len(full) and re.fullmatch(r"(`[^`]*`(, )?)+", default.strip()):
            rows.update(zip(full, values))
    return rows, documented


def cell_value(cell: str):
    value = yaml.safe_load(cell)
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 2e-4 as a string
        except ValueError:
            pass
    return value


def test_the_key_table_states_the_defaults():
    table, documented = readme_defaults()
    assert len(table) >= 25, sorted(table)  # the table was parsed
    embedded = leaves(EMBEDDED)
    for key, cell in table.items():
        if key in DEFAULTS and key not in EMBEDDED_ONLY:
            assert cell_value(cell) == DEFAULTS[key], (key, cell)
        elif key in embedded:
            assert cell_value(cell) == embedded[key], (key, cell)
    for key in DEFAULTS:
        if key not in EMBEDDED_ONLY and not key.startswith(
            ("training.images", "training.test_sets", "descriptor.train.photos")
        ):
            assert key in documented, f"{key} missing from config/README.md"


@pytest.mark.parametrize("flag", ["--lr", "--holdout", "--seed"])
def test_train_descriptor_takes_its_recipe_from_the_config_only(flag):
    from grids import train_descriptor

    with pytest.raises(SystemExit):
        args = [
            "--photos",
            "p",
            "--out",
            "o",
            "--iterations",
            "1",
            "--batch-size",
            "1",
            "--crop",
            "8",
            "--lr",
            "1e-4",
            "--holdout",
            "1",
            "--seed",
            "0",
        ]
        i = args.index(flag)
        train_descriptor.main(args[:i] + args[i + 2 :])


def catalog_table() -> str:
    """The parameter table as the Snakemake workflow catalog renders it from the schema."""
    lines = ["| parameter | type | default | description |", "| --- | --- | --- | --- |"]
    for row in cfg.parameter_rows():
        default = "required" if row["required"] else yaml.safe_dump(row["default"], default_flow_style=True).strip()
        default = default.removesuffix("\n...").removesuffix(" ...") if row["has_default"] or row["required"] else ""
        lines.append(f"| `{row['name']}` | {row['type']} | {default} | {row['description']} |")
    return "\n".join(lines) + "\n"


def test_the_schema_gives_every_key_a_default_and_a_description():
    rows = cfg.parameter_rows()
    names = [row["name"] for row in rows]
    sections = {name for name in names if any(other.startswith(name + ".") for other in names)}
    for row in rows:
        assert row["description"], f"{row['name']}: no description in the schema"
        # a section's default is its keys' defaults, listed beneath it
        assert row["required"] or row["has_default"] or row["name"] in sections, f"{row['name']}: no default"
    assert {"seed", "images", "degradations"} == {row["name"] for row in rows if row["required"]}
    table = catalog_table()
    assert "| `grouping.delta` | number | 0.7 |" in table
    assert "| `features.outlier_stds` | number|null | 5.0 |" in table
    assert "| `degradations` | object | required |" in table  # a map, then the built-ins it names
    assert "| `degradations.jpeg.quality` | integer|array | [10, 40] | OpenCV encoder quality, 1-100 |" in table
    for key in DEFAULTS:  # every default validate_config fills in is a row, or inside a row's value
        assert any(key == name or key.startswith(name + ".") for name in names), key


def test_the_catalog_table_states_what_validate_config_fills_in():
    flat = {row["name"]: row["default"] for row in cfg.parameter_rows() if row["has_default"]}
    for key, value in DEFAULTS.items():
        owner = max((name for name in flat if key == name or key.startswith(name + ".")), key=len)
        node = flat[owner]
        for part in key.removeprefix(owner).strip(".").split(".") if key != owner else []:
            node = node[part]
        assert node == value, key
