"""Model cards a hub accepts (grids.cards): every card's front matter against the schema, the
shipped descriptor's safetensors and card, and what the schema refuses."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from grids.cards import check_front_matter, dataset_id, front_matter, metric, read_front_matter
from grids.checkpoint import read_safetensors
from grids.descriptor import load_descriptor
from grids.io import sha256_file

SHIPPED = Path(__file__).resolve().parents[1] / "grids" / "assets" / "descriptor"


def test_the_shipped_descriptor_ships_as_safetensors_with_a_card():
    pth = torch.load(SHIPPED / "msrresnet_x4.pth", weights_only=True)["params"]
    safe = read_safetensors(SHIPPED / "msrresnet_x4.safetensors")
    assert list(safe["params"]) == list(pth) or sorted(safe["params"]) == sorted(pth)  # keys unchanged
    assert all(torch.equal(safe["params"][k], v) for k, v in pth.items())
    assert safe["arch"] == "MSRResNet" and '"psnr_x4": 33.407' in safe["meta"]
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        same = (
            load_descriptor(SHIPPED / "msrresnet_x4.pth")(x),
            load_descriptor(SHIPPED / "msrresnet_x4.safetensors")(x),
        )
    assert torch.equal(*same)
    card = (SHIPPED / "MODEL_CARD.md").read_text()
    for name in ("msrresnet_x4.pth", "msrresnet_x4.safetensors"):
        assert sha256_file(SHIPPED / name) in card
    front = read_front_matter(card)
    check_front_matter(front)
    [result] = front["model-index"][0]["results"]
    assert [m["value"] for m in result["metrics"]] == [33.407, 32.139]  # the model, bicubic (the baseline)
    for heading in ("## Intended use", "## Limitations", "## How to load", "## Citation"):
        assert heading in card


def good_front() -> dict:
    dataset = {"type": "grids-heldout", "name": "heldout: jpeg", "config": "jpeg", "split": "test"}
    metrics = [metric("psnr", 30.0), metric("ssim", 0.9), metric("psnr", 27.0, "input")]
    return read_front_matter(
        front_matter(
            "grids-jpeg",
            ["scikit-image-astronaut"],
            [{"task": "Image restoration: jpeg", "dataset": dataset, "metrics": metrics}],
        )
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: f.pop("license"), "'license' is a required property"),
        (lambda f: f.update(datasets=["dead_leaves (synthetic, 8 images)"]), "does not match"),  # free text
        (lambda f: f["model-index"][0]["results"][0]["dataset"].update(type="heldout: jpeg"), "does not match"),
        (lambda f: f["model-index"][0]["results"][0]["metrics"].pop(), "does not contain"),  # no input baseline
        (lambda f: f.update(metrics=["accuracy"]), "is not one of"),
        (lambda f: f.update(pipeline_tag="text-generation"), "was expected"),
    ],
)
def test_the_schema_refuses_what_a_hub_would_not_read(change, problem):
    front = good_front()
    check_front_matter(copy.deepcopy(front))
    change(front)
    with pytest.raises(ValueError, match=problem):
        check_front_matter(front)


def test_dataset_ids_are_well_formed():
    assert dataset_id("grids/assets/photos") == "grids-assets-photos"
    assert dataset_id("my photos (2024)") == "my-photos-2024"
    assert dataset_id("///") == "images"
