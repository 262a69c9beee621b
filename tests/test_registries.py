"""Registries that check each other: the built-in degradations against their batched forms and the
config schema, the out-of-distribution statistics and the distances against the schema's enums."""

from __future__ import annotations

import numpy as np
import pytest

from grids.config import schema
from grids.degradations import BUILTINS, NAMES, batched, get_degradation
from grids.ggd import DISTANCES, PAPER_THRESHOLD
from grids.selection import statistics as ood


def test_names_are_the_registry():
    assert NAMES == tuple(BUILTINS) and len(NAMES) == len(set(NAMES))


def test_schema_degradation_blocks_are_the_registry():
    """The schema's per-degradation blocks: one per built-in, in the registry's order, naming its
    parameters and no others (so a new built-in without a block, or a renamed parameter, fails)."""
    blocks = schema()["properties"]["degradations"]["properties"]
    assert list(blocks) == list(NAMES)
    for name, block in blocks.items():
        assert block["additionalProperties"] is False, name
        assert list(block["properties"]) == list(BUILTINS[name].params), name


def test_schema_states_each_builtin_parameter_default_and_description():
    """The workflow catalog's parameter table reads the schema; the defaults live in BUILTINS."""
    blocks = schema()["properties"]["degradations"]["properties"]
    for name, deg in BUILTINS.items():
        assert blocks[name]["description"] == deg.doc, name
        for key, param in deg.params.items():
            stated = blocks[name]["properties"][key]
            default = list(param.default) if isinstance(param.default, tuple) else param.default
            assert stated["default"] == default, f"{name}.{key}: schema {stated['default']}, BUILTINS {default}"
            assert param.doc and stated["description"] == param.doc, f"{name}.{key}"


@pytest.mark.parametrize("name", NAMES)
def test_every_builtin_has_a_batched_form(name):
    """Its `batched` field names a function of batched.py that keeps shape, device, dtype and the
    1/255 grid: a built-in without one fails here, not in the middle of a training."""
    import torch

    deg = get_degradation(name)
    assert callable(getattr(batched, deg.batched, None)), deg.batched
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    params = [deg.sample(np.random.default_rng(1), (48, 48))]
    x = batched.from_uint8_images([image])
    out = deg.apply_batch(x, params, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, batched.quantise(out))


def test_a_builtin_without_a_batched_form_cannot_be_declared():
    with pytest.raises(TypeError, match="batched"):
        type(BUILTINS["jpeg"])("new", {}, lambda image, params, rng: image)


def test_schema_statistics_are_the_registry():
    enum = schema()["properties"]["selection"]["properties"]["statistic"]["enum"]
    assert enum == list(ood.STATISTICS)


@pytest.mark.parametrize("name", list(ood.STATISTICS))
def test_every_statistic_declares_itself(name):
    cls = ood.STATISTICS[name]
    assert cls.name == name and cls.meaning.strip()
    assert isinstance(cls.reads_method_layer, bool) and isinstance(cls.against_group, bool)
    for method in ("fit", "default_threshold", "score"):
        assert getattr(cls, method) is not getattr(ood.Statistic, method), (name, method)


def test_schema_distances_are_the_registry():
    prop = schema()["properties"]["features"]["properties"]["distance"]
    assert prop["enum"] == list(DISTANCES)
    assert all(d.threshold == PAPER_THRESHOLD for d in DISTANCES.values())  # one scale for all
