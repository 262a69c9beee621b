"""The descriptor trainer: recipe pieces and a tiny real run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from grids import io
from grids.cards import check_front_matter
from grids.data import dead_leaves
from grids.descriptor import load_descriptor
from grids.io import sha256_file
from grids.train_descriptor import downscale, learning_rate, psnr, random_batch, train_descriptor


def test_learning_rate_is_a_cosine_of_the_step():
    assert learning_rate(0, 100, 2e-4) == pytest.approx(2e-4)
    assert learning_rate(50, 100, 2e-4) == pytest.approx((2e-4 + 2e-6) / 2)
    assert learning_rate(100, 100, 2e-4) == pytest.approx(2e-6)
    rates = [learning_rate(s, 100, 2e-4) for s in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_learning_rate_is_the_restoration_schedule_without_warmup():
    """Same schedule as grids.train.learning_rate (warm-up 0, floor 1/100); only the rounding differs."""
    from grids.train import learning_rate as restoration_rate

    recipe = {"lr": 2e-4, "iterations": 600, "warmup": 0, "min_lr_ratio": 0.01}
    for step in range(0, 650, 7):
        assert learning_rate(step, 600, 2e-4) == pytest.approx(restoration_rate(step, recipe), rel=1e-12, abs=0)


def test_downscale_is_bicubic_x4_on_the_8_bit_grid():
    hr = torch.rand(2, 3, 32, 48)
    lr = downscale(hr)
    assert lr.shape == (2, 3, 8, 12)
    assert torch.equal(lr, torch.round(lr * 255) / 255)
    flat = torch.full((1, 3, 16, 16), 128 / 255)
    assert torch.allclose(downscale(flat), torch.full((1, 3, 4, 4), 128 / 255))


def test_random_batch_seeded():
    photos = [dead_leaves(40, np.random.default_rng(i)) for i in range(2)]
    a = random_batch(photos, 4, 16, np.random.default_rng(0))
    b = random_batch(photos, 4, 16, np.random.default_rng(0))
    assert a.shape == (4, 16, 16, 3) and np.array_equal(a, b)


def test_psnr_matches_definition():
    a = torch.zeros(1, 3, 16, 16)
    b = torch.full((1, 3, 16, 16), 10 / 255)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 100))


def test_tiny_training_run_writes_loadable_weights(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        io.write_png(photos / f"p{i}.png", dead_leaves(64, np.random.default_rng(i)))
    out = tmp_path / "desc" / "w.pth"
    facts = train_descriptor(photos, out, iterations=3, batch_size=2, crop=32, lr=2e-4, holdout=1, seed=0, device="cpu")
    model = load_descriptor(out)
    assert model.upscale == 4 and model.num_block == 16
    meta = json.loads(torch.load(out, weights_only=True)["meta"])
    assert meta["iterations"] == 3 and meta["train_images"] == 3 and len(meta["heldout_images"]) == 1
    assert facts["sha256"] == sha256_file(out)
    card = out.with_suffix(".md").read_text()
    assert facts["sha256"] in card and "PSNR" in card and facts["sha256_safetensors"] in card
    front = yaml.safe_load(card.split("---\n")[1])  # Hugging Face model-card front matter
    check_front_matter(front)
    assert {"image-to-image", "image-restoration"} <= set(front["tags"]) and front["license"]
    [result] = front["model-index"][0]["results"]
    assert result["metrics"][0] == {"type": "psnr", "name": "PSNR (dB)", "value": facts["psnr_x4"]}
    assert result["metrics"][1]["config"] == "bicubic" and result["metrics"][1]["value"] == facts["psnr_bicubic"]
    assert "## Intended use" in card and "## Limitations" in card and "## Citation" in card
    # the safetensors export beside it: the same network, the same outputs
    safe = load_descriptor(out.with_suffix(".safetensors"))
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(model(x), safe(x))
    log = pd.read_parquet(out.with_suffix(".log.parquet"))
    assert list(log.columns) == ["step", "loss", "lr"] and log.step.iloc[-1] == 2


def test_crop_must_be_a_multiple_of_four(tmp_path):
    with pytest.raises(ValueError, match="multiple of 4"):
        train_descriptor(tmp_path, tmp_path / "w.pth", iterations=1, batch_size=1, crop=30, lr=1e-4, holdout=1, seed=0)
