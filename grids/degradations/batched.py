"""Batched torch forms of the built-in degradations, for online degradation during training.

Every function has the signature ``op(images, params, generator) -> images``:

* ``images``: float tensor ``(B, 3, H, W)`` in [0, 1], on CPU or CUDA, values on the 1/255 grid
  (i.e. decoded uint8 images);
* ``params``: ``B`` dicts as drawn by ``Degradation.sample`` (one per image);
* ``generator``: ``torch.Generator`` on the images' device for the random ops, or None;
* returns a tensor of the same shape, device and dtype, quantised to the 1/255 grid.

With the same parameters the deterministic ops agree with ``reference.py`` to within one grey
level (floating-point summation order); the random ops (noise, salt & pepper) draw from torch's
generator, so they agree in distribution, not in bytes. Filters run as one grouped convolution
on the device; JPEG and the stroke masks of ``inpainting`` are made on CPU (OpenCV), which is
where those operations exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import kernels, reference


def quantise(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def _filter(x: torch.Tensor, kernel_list: Sequence[np.ndarray]) -> torch.Tensor:
    """Correlate image ``b`` with ``kernel_list[b]`` (reflect-101 borders), all in one conv."""
    b, c, h, w = x.shape
    size = max(k.shape[0] for k in kernel_list)
    # Zero-padding a smaller kernel to the common size changes nothing: the extra taps are 0.
    stack = np.stack([np.pad(k, (size - k.shape[0]) // 2) for k in kernel_list])
    weight = torch.from_numpy(stack).to(x.device, x.dtype).repeat_interleave(c, dim=0)[:, None]
    r = size // 2
    padded = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
    return quantise(F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w))


def gaussian_blur(x, params, generator=None):
    return _filter(x, [kernels.gaussian_kernel(p["kernel_size"], p["sigma"]) for p in params])


def motion_blur(x, params, generator=None):
    return _filter(x, [kernels.motion_kernel(p["length"], p["angle"]) for p in params])


def defocus_blur(x, params, generator=None):
    return _filter(x, [kernels.disk_kernel(p["radius"]) for p in params])


def ringing(x, params, generator=None):
    return _filter(x, [kernels.sinc_kernel(p["cutoff"], p["kernel_size"], p["pad_to"]) for p in params])


def _linear_ramp_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``numpy.pad(mode="linear_ramp")`` with end value 0 on the last two axes (rows, then columns)."""
    ramp = torch.arange(pad, device=x.device, dtype=x.dtype) / pad  # 0 .. (pad-1)/pad
    top = x[..., :1, :] * ramp[:, None]
    bottom = x[..., -1:, :] * ramp.flip(0)[:, None]
    x = torch.cat([top, x, bottom], dim=-2)
    left = x[..., :, :1] * ramp
    right = x[..., :, -1:] * ramp.flip(0)
    return torch.cat([left, x, right], dim=-1)


def rl(x, params, generator=None):
    """Richardson-Lucy from a flat 0.5 estimate, as scikit-image does, per channel."""
    out = []
    for img, p in zip(x, params):  # parameters may differ per image
        pad, k = p["pad"], p["psf_size"]
        y = _linear_ramp_pad(img[None], pad) if pad else img[None]
        psf = torch.full((3, 1, k, k), 1.0 / (k * k), device=x.device, dtype=x.dtype)

        def conv(t):  # "same" size, zero filled, like scipy.signal.convolve(mode="same")
            return F.conv2d(t, psf, padding=k // 2, groups=3)  # noqa: B023 (used within this iteration only)

        estimate = torch.full_like(y, 0.5)
        for _ in range(p["iterations"]):
            estimate = estimate * conv(y / (conv(estimate) + 1e-12))
        estimate = estimate.clamp(-1, 1)
        out.append(estimate[..., pad:-pad, pad:-pad] if pad else estimate)
    return quantise(torch.cat(out))


def sr(x, params, generator=None):
    """Antialiased bicubic (Pillow's kernel) down by ``scale`` and back up, quantised in between."""
    h, w = x.shape[-2:]
    out = []
    for img, p in zip(x, params):
        small = (max(1, round(h / p["scale"])), max(1, round(w / p["scale"])))
        low = quantise(F.interpolate(img[None], size=small, mode="bicubic", antialias=True))
        out.append(quantise(F.interpolate(low, size=(h, w), mode="bicubic", antialias=True)))
    return torch.cat(out)


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _from_uint8(arrays: Sequence[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return stacked.to(like.device, like.dtype) / 255


def jpeg(x, params, generator=None):
    """OpenCV's encoder on CPU (no torch JPEG codec here); same bytes as the reference."""
    return _from_uint8([reference.jpeg(_to_uint8(img), p) for img, p in zip(x, params)], x)


def _per_image(params, key, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([p[key] for p in params], device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


def poisson_noise(x, params, generator=None):
    peak = _per_image(params, "peak", x)
    return quantise(torch.poisson(x * peak, generator=generator) / peak)


def gaussian_noise(x, params, generator=None):
    sigma = _per_image(params, "sigma", x) / 255
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return quantise(x + noise * sigma)


def salt_pepper(x, params, generator=None):
    b, _, h, w = x.shape
    out = x.clone()
    flat = out.view(b, 3, h * w)
    for i, p in enumerate(params):
        n_hit = int(round(p["amount"] * h * w))
        n_salt = int(round(p["salt_ratio"] * n_hit))
        hit = torch.randperm(h * w, generator=generator, device=x.device)[:n_hit]
        flat[i][:, hit[:n_salt]] = 1.0
        flat[i][:, hit[n_salt:]] = 0.0
    return out


def inpainting(x, params, generator=None):
    h, w = x.shape[-2:]
    labels = np.stack([reference.stroke_labels((h, w), p["strokes"]) for p in params])  # (B, H, W)
    values = np.zeros((len(params), 256), np.float32)  # per image: label -> stroke value
    for i, p in enumerate(params):
        values[i, 1 : len(p["strokes"]) + 1] = [s["value"] for s in p["strokes"]]
    painted = np.take_along_axis(values, labels.reshape(len(params), -1).astype(np.int64), axis=1)
    painted = torch.from_numpy(painted.reshape(-1, 1, h, w)).to(x.device, x.dtype)
    hit = torch.from_numpy(labels[:, None] > 0).to(x.device)
    return torch.where(hit, painted, x)


def from_uint8_images(images: Sequence[np.ndarray], device: str | torch.device = "cpu") -> torch.Tensor:
    """``(H, W, 3)`` uint8 arrays -> ``(B, 3, H, W)`` float32 tensor in [0, 1]."""
    return _from_uint8(images, torch.empty(0, device=device))


def to_uint8_images(x: torch.Tensor) -> list[np.ndarray]:
    return [_to_uint8(img) for img in x]
