"""Stage ``train_descriptor``: train the MSRResNet x4 descriptor on clean bicubic x4 SR.

BasicSR's MSRResNet recipe, scaled by config: random HR crops of natural photos (flips and
90-degree rotations), LR made on the fly by antialiased bicubic x4 downscaling, L1 loss, Adam
(0.9, 0.99), learning rate a pure function of the step (cosine from ``lr`` to ``lr / 100``).
bf16 autocast on CUDA, fp32 on CPU. Held-out photos measure x4 PSNR against bicubic.

Writes the weights (BasicSR layout, ``{"params": ...}`` plus plain metadata), a model card
(``.md`` beside them) and a Parquet training log (step, loss, lr).

    python -m grids.train_descriptor --photos assets/photos --out results/descriptor/msrresnet_x4.pth \
        --iterations 600 --batch-size 8 --crop 64
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import io, tables
from .archs import MSRResNet
from .cards import CITATION, dataset_id, front_matter, metric
from .checkpoint import SAFETENSORS, write_safetensors
from .descriptor import save_descriptor
from .io import sha256_file
from .seeds import derive_seed
from .stage import pick_device
from .store import ImageList, random_crop

SCALE = 4


def load_photos(folder: str | Path, holdout: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """``(train, held_out, held_out_names)``: every ``len // holdout``-th photo (sorted) is held out."""
    files, _ = io.list_image_files(folder)
    if len(files) <= holdout:
        raise io.BadImageError(f"{folder}: {len(files)} photos, need more than holdout={holdout}")
    step = len(files) / holdout if holdout else math.inf
    held = {int(i * step) for i in range(holdout)}
    train, val, names = [], [], []
    for i, path in enumerate(files):
        image, _ = io.read_image(path)
        if i in held:
            val.append(image)
            names.append(path.name)
        else:
            train.append(image)
    return train, val, names


def learning_rate(step: int, total: int, lr: float) -> float:
    """Cosine decay from ``lr`` to ``lr / 100`` over ``total`` steps (pure function: exact resume).

    Mathematically :func:`grids.train.learning_rate` with no warm-up and ``min_lr_ratio`` 0.01,
    but rounded differently (``pi * step / total`` against ``pi * (step / total)``, ``lr / 100``
    against ``lr * 0.01``): the two differ in the last bit at about one step in five, and one
    shared function would change one trainer's weights, so each keeps its own arithmetic.
    """
    floor = lr / 100
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * min(step, total) / total))


def downscale(hr: torch.Tensor) -> torch.Tensor:
    """Clean bicubic x4 LR (antialiased, quantised to 8 bit like a saved image)."""
    h, w = hr.shape[-2:]
    lr = F.interpolate(hr, size=(h // SCALE, w // SCALE), mode="bicubic", antialias=True)
    return torch.round(lr.clamp(0, 1) * 255) / 255


def random_batch(photos: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 (batch, crop, crop, 3)``: HR crops with flips and 90-degree rotations
    (:func:`grids.store.random_crop`, the restoration trainer's augmentation)."""
    source = ImageList(photos)
    out = np.empty((batch, crop, crop, 3), np.uint8)
    for b in range(batch):
        out[b] = random_crop(source, crop, rng)
    return out


def psnr(a: torch.Tensor, b: torch.Tensor, border: int = SCALE) -> float:
    """PSNR (dB) on RGB quantised to 8 bit, ``border`` px cropped (BasicSR's convention for SR)."""
    a = torch.round(a.clamp(0, 1) * 255)[..., border:-border, border:-border]
    b = torch.round(b.clamp(0, 1) * 255)[..., border:-border, border:-border]
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return 10 * math.log10(255**2 / mse) if mse > 0 else math.inf


@torch.no_grad()
def evaluate(model: MSRResNet, photos: list[np.ndarray], device: torch.device) -> tuple[float, float]:
    """Mean x4 PSNR of the model and of bicubic upscaling over ``photos``."""
    model.eval()
    ours, bicubic = [], []
    for image in photos:
        h, w = (image.shape[0] // SCALE) * SCALE, (image.shape[1] // SCALE) * SCALE
        hr = torch.from_numpy(np.ascontiguousarray(image[:h, :w])).permute(2, 0, 1)[None].float().div(255).to(device)
        lr = downscale(hr)
        ours.append(psnr(model(lr).float(), hr))
        bicubic.append(psnr(F.interpolate(lr, size=(h, w), mode="bicubic"), hr))
    return float(np.mean(ours)), float(np.mean(bicubic))


def train_descriptor(
    photos: str | Path,
    out: str | Path,
    *,
    iterations: int,
    batch_size: int,
    crop: int,
    lr: float,
    holdout: int,
    seed: int,
    device: str = "auto",
    card: str | Path | None = None,
    log_table: str | Path | None = None,
) -> dict:
    """Train, evaluate and save the descriptor to ``out`` (and the same weights beside it as
    ``.safetensors``), its model card to ``card`` and its training log to ``log_table`` (by
    default beside ``out``: ``.md``, ``.log.parquet``); return the model card's facts."""
    device = pick_device(device)
    if crop % SCALE:
        raise ValueError(f"crop must be a multiple of {SCALE}, got {crop}")
    train, val, val_names = load_photos(photos, holdout)
    torch.manual_seed(derive_seed(seed, "descriptor", "init"))
    rng = np.random.default_rng(derive_seed(seed, "descriptor", "crops"))
    model = MSRResNet().to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    use_bf16 = device.type == "cuda"
    log, start = [], time.perf_counter()
    bar = tqdm(range(iterations), desc="train descriptor", unit="it")
    for step in bar:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, iterations, lr)
        hr = torch.from_numpy(random_batch(train, batch_size, crop, rng)).to(device).permute(0, 3, 1, 2).float() / 255
        hr = hr.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = F.l1_loss(model(downscale(hr)).float(), hr)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 10 == 0 or step == iterations - 1:
            log.append((step, loss.item(), optimiser.param_groups[0]["lr"]))
            bar.set_postfix(loss=f"{log[-1][1]:.4f}")
    seconds = time.perf_counter() - start
    psnr_model, psnr_bicubic = evaluate(model, val, device)
    facts = {
        "arch": "MSRResNet",
        "scale": SCALE,
        "iterations": iterations,
        "batch_size": batch_size,
        "hr_crop": crop,
        "lr": lr,
        "seed": seed,
        "device": str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
        "train_seconds": round(seconds, 1),
        "train_images": len(train),
        "heldout_images": val_names,
        "psnr_x4": round(psnr_model, 3),
        "psnr_bicubic": round(psnr_bicubic, 3),
        "gain_db": round(psnr_model - psnr_bicubic, 3),
        "photos": _display_path(photos),
    }
    out = Path(out)
    model = model.to(memory_format=torch.contiguous_format)
    save_descriptor(model, out, {"meta": json.dumps(facts)})
    write_safetensors(out.with_suffix(SAFETENSORS), model.state_dict(), {"arch": "MSRResNet", "meta": facts})
    facts["sha256"] = sha256_file(out)
    facts["sha256_safetensors"] = sha256_file(out.with_suffix(SAFETENSORS))
    log_frame = pd.DataFrame(log, columns=tables.columns("descriptor_log"))
    tables.write(log_frame, "descriptor_log", out.with_suffix(".log.parquet") if log_table is None else log_table)
    with io.atomic_path(out.with_suffix(".md") if card is None else card) as tmp:
        tmp.write_text(model_card(facts))
    return facts


def _display_path(path: str | Path) -> str:
    """The photos folder as a reader would type it (package-relative for the shipped photos)."""
    path = Path(path).resolve()
    package = Path(__file__).resolve().parent
    if path.is_relative_to(package):
        return str(Path("grids") / path.relative_to(package))
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def model_card(facts: dict, notes: str = "") -> str:
    """The descriptor's model card: Hugging Face front matter (its x4 PSNR beside bicubic's, the
    baseline, as the model-index), then what it is, how it was trained (``notes``: more, Markdown),
    intended use, limitations, how to load it and how to cite it."""
    heldout = ", ".join(facts["heldout_images"])
    result = {
        "task": "Image super-resolution x4 (bicubic)",
        "dataset": {"type": dataset_id(facts["photos"]), "name": f"held-out photos: {heldout}", "config": "bicubic-x4"},
        "metrics": [metric("psnr", facts["psnr_x4"]), metric("psnr", facts["psnr_bicubic"], "bicubic")],
    }
    front = front_matter("grids-descriptor-msrresnet-x4", [dataset_id(facts["photos"])], [result], ["super-resolution"])
    return (
        front
        + f"""# Degradation descriptor: MSRResNet x4

Trained by `grids.train_descriptor` (rule `train_descriptor`) on clean bicubic x4 super-resolution.
{notes}
| | |
| --- | --- |
| architecture | BasicSR MSRResNet, 64 features, 16 residual blocks, x4 (1,517,571 parameters) |
| data | `{facts["photos"]}` ({facts["train_images"]} training photos; licences in its LICENSES.md) |
| held out | {heldout} |
| recipe | L1, Adam (0.9, 0.99), lr {facts["lr"]} cosine to 1/100, batch {facts["batch_size"]}, HR crop {facts["hr_crop"]}², flips + rot90, bf16 on CUDA |
| iterations | {facts["iterations"]} ({facts["train_seconds"]} s on {facts["device"]}) |
| x4 PSNR, held-out (RGB, 4 px border) | {facts["psnr_x4"]} dB vs bicubic {facts["psnr_bicubic"]} dB (gain {facts["gain_db"]:+.3f} dB) |
| seed | {facts["seed"]} |
| sha256 | `{facts["sha256"]}` (`.pth`), `{facts["sha256_safetensors"]}` (`.safetensors`) |

## Intended use

The degradation descriptor of the GRIDS pipeline (docs/method.md §2): its deep features, summarised by
generalised Gaussian fits, measure how similar two degradations are and which group model an input
needs. It is an x4 super-resolution network only by training; it is not meant for upscaling images.

## Limitations

Trained briefly on {facts["train_images"]} photos: a descriptor of natural-image statistics, not a
competitive super-resolution model (x4 gain over bicubic {facts["gain_db"]:+.3f} dB on the held-out photos).
Its similarities are those of its features: images unlike its training photos are described less well.

## How to load

```python
from grids.descriptor import load_descriptor

model = load_descriptor("msrresnet_x4.safetensors")  # or the .pth (torch.load(weights_only=True))

from safetensors.torch import load_file

state = load_file("msrresnet_x4.safetensors")  # the weights alone, BasicSR key names
```

BasicSR's official `MSRResNet_x4` weights load the same way (set `descriptor.weights` in the config).

{CITATION}"""
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.train_descriptor", description=__doc__.split("\n")[0])
    parser.add_argument("--photos", required=True, help="folder of natural photos")
    parser.add_argument("--out", required=True, help="weights file to write (.pth)")
    parser.add_argument("--card", help="its model card (.md; default beside --out)")
    parser.add_argument("--log-table", help="its training log (.parquet; default beside --out)")
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--crop", type=int, required=True, help="HR crop side, px (multiple of 4)")
    # Recipe values come from the config (descriptor.train, defaults in grids.config), never from here.
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--holdout", type=int, required=True, help="photos held out for the PSNR check")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    facts = train_descriptor(
        args.photos,
        args.out,
        iterations=args.iterations,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        holdout=args.holdout,
        seed=args.seed,
        device=args.device,
        card=args.card,
        log_table=args.log_table,
    )
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
