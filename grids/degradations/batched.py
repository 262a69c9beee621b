"""Batched torch forms of the built-in degradations, for online degradation during training.

Every function has the signature ``op(images, params, generator, window=None) -> images``:

* ``images``: float tensor ``(B, 3, H, W)`` in [0, 1], on CPU or CUDA, values on the 1/255 grid
  (i.e. decoded uint8 images);
* ``params``: ``B`` dicts as drawn by ``Degradation.sample`` (one per image);
* ``generator``: ``torch.Generator`` on the images' device for the random ops, or None;
* ``window``: a :class:`Window` (one crop of each image) or None (the whole images);
* returns a tensor of the same shape (with a window: the window's), device and dtype, quantised to
  the 1/255 grid.

Why windows: training degrades a 128 px canvas and keeps a 32 px crop of it, a sixteenth of the
pixels. The local ops compute only what the crop needs: the filters correlate the crop and its
kernel margin of the (reflect-padded) canvas, the same sums as the whole canvas's; the per-pixel
noises draw noise for the crop's pixels only (the same distribution, fewer draws); Richardson-Lucy
runs on the crop and the margin its convolutions see. The others (JPEG's 8 px blocks, bicubic
resampling, strokes sized by the image) degrade the canvas and cut the crop from it.

With the same parameters the deterministic ops agree with ``reference.py`` to within one grey
level (floating-point summation order); the random ops (noise, salt & pepper) draw from torch's
generator, so they agree in distribution, not in bytes. Filters run as one grouped convolution
on the device; JPEG and the stroke masks of ``inpainting`` are made on CPU (OpenCV), which is
where those operations exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import kernels, reference


def quantise(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


@dataclass(frozen=True)
class Window:
    """One ``size`` x ``size`` crop of each image of a batch: image ``b``'s rows from
    ``corners[b, 0]`` and columns from ``corners[b, 1]``."""

    corners: np.ndarray  # (B, 2) int: top, left
    size: int

    def cut(self, x: torch.Tensor, margin: int = 0) -> torch.Tensor:
        """``(B, C, size + 2 margin, size + 2 margin)``: each crop of ``x`` widened by ``margin``
        on every side (``x`` holds that margin: a canvas padded by it, say)."""
        side = self.size + 2 * margin
        return torch.stack([img[:, t : t + side, left : left + side] for img, (t, left) in zip(x, self.corners)])


def cut(x: torch.Tensor, window: Window | None) -> torch.Tensor:
    """The window's crops of ``x`` (``x`` itself without a window)."""
    return x if window is None else window.cut(x)


def _filter(x: torch.Tensor, kernel_list: Sequence[np.ndarray], window: Window | None = None) -> torch.Tensor:
    """Correlate image ``b`` with ``kernel_list[b]`` (reflect-101 borders), all in one conv; with a
    ``window``, only the window's crops (from their kernel margin of the padded images)."""
    b, c, h, w = x.shape
    size = max(k.shape[0] for k in kernel_list)
    # Zero-padding a smaller kernel to the common size changes nothing: the extra taps are 0.
    stack = np.stack([np.pad(k, (size - k.shape[0]) // 2) for k in kernel_list])
    weight = torch.from_numpy(stack).to(x.device, x.dtype).repeat_interleave(c, dim=0)[:, None]
    r = size // 2
    padded = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect").reshape(b, c, h + 2 * r, w + 2 * r)
    if window is not None:
        padded, (h, w) = window.cut(padded, margin=r), (window.size, window.size)
    out = F.conv2d(padded.reshape(1, b * c, h + 2 * r, w + 2 * r), weight, groups=b * c)
    return quantise(out.reshape(b, c, h, w))


def gaussian_blur(x, params, generator=None, window=None):
    return _filter(x, [kernels.gaussian_kernel(p["kernel_size"], p["sigma"]) for p in params], window)


def motion_blur(x, params, generator=None, window=None):
    return _filter(x, [kernels.motion_kernel(p["length"], p["angle"]) for p in params], window)


def defocus_blur(x, params, generator=None, window=None):
    return _filter(x, [kernels.disk_kernel(p["radius"]) for p in params], window)


def ringing(x, params, generator=None, window=None):
    return _filter(x, [kernels.sinc_kernel(p["cutoff"], p["kernel_size"], p["pad_to"]) for p in params], window)


def _linear_ramp_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``numpy.pad(mode="linear_ramp")`` with end value 0 on the last two axes (rows, then columns)."""
    ramp = torch.arange(pad, device=x.device, dtype=x.dtype) / pad  # 0 .. (pad-1)/pad
    top = x[..., :1, :] * ramp[:, None]
    bottom = x[..., -1:, :] * ramp.flip(0)[:, None]
    x = torch.cat([top, x, bottom], dim=-2)
    left = x[..., :, :1] * ramp
    right = x[..., :, -1:] * ramp.flip(0)
    return torch.cat([left, x, right], dim=-1)


def _centre(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The centre of ``t`` the size of ``like`` (``t`` itself when they match)."""
    dy, dx = (t.shape[-2] - like.shape[-2]) // 2, (t.shape[-1] - like.shape[-1]) // 2
    return t[..., dy : t.shape[-2] - dy, dx : t.shape[-1] - dx]


def _richardson_lucy(y: torch.Tensor, k: int, iterations: int, valid: bool) -> torch.Tensor:
    """Richardson-Lucy of ``(n, 3, H, W)`` with a ``k`` x ``k`` box PSF from a flat 0.5 estimate.

    ``valid=False``: "same"-size zero-filled convolutions (scipy's ``mode="same"``), the output the
    size of ``y``. ``valid=True``: each convolution keeps only the pixels its kernel sees whole, so
    the output is ``y`` less ``2 (k // 2) iterations`` px on every side, equal to the centre of the
    "same" output wherever that never reached the zero fill.
    """
    n, c = y.shape[:2]
    psf = torch.full((n * c, 1, k, k), 1.0 / (k * k), device=y.device, dtype=y.dtype)

    def conv(t):  # every channel of every image as a group of one batch: the fastest depthwise layout
        flat = t.reshape(1, n * c, *t.shape[-2:])
        flat = flat if valid else F.pad(flat, (k // 2,) * 4)
        out = F.conv2d(flat, psf, groups=n * c)
        return out.reshape(n, c, *out.shape[-2:])

    estimate = torch.full_like(y, 0.5)
    for _ in range(iterations):
        blurred = conv(estimate)
        correction = conv(_centre(y, blurred) / (blurred + 1e-12))
        estimate = _centre(estimate, correction) * correction
    return estimate.clamp(-1, 1)


def rl(x, params, generator=None, window=None):
    """Richardson-Lucy on the linear-ramp padded images, as scikit-image does, per channel; one
    batched pass per distinct (pad, psf_size, iterations) among the images. With a window that
    sees no farther than the padding (``2 (psf_size // 2) iterations <= pad``, the default's 4 <= 7),
    only its crops and their margin."""
    size = x.shape[-2:] if window is None else (window.size, window.size)
    out = torch.empty(*x.shape[:2], *size, device=x.device, dtype=x.dtype)
    settings = [(p["pad"], p["psf_size"], p["iterations"]) for p in params]
    for pad, k, iterations in dict.fromkeys(settings):
        index = np.array([i for i, s in enumerate(settings) if s == (pad, k, iterations)])
        picked = torch.from_numpy(index).to(x.device)
        y = _linear_ramp_pad(x[picked], pad) if pad else x[picked]
        reach = 2 * (k // 2) * iterations
        part = None if window is None else Window(window.corners[index], window.size)
        if part is not None and reach <= pad:
            out[picked] = _richardson_lucy(part.cut(y[..., pad - reach :, pad - reach :], reach), k, iterations, True)
            continue
        estimate = _richardson_lucy(y, k, iterations, valid=False)
        out[picked] = cut(estimate[..., pad:-pad, pad:-pad] if pad else estimate, part)
    return quantise(out)


def sr(x, params, generator=None, window=None):
    """Antialiased bicubic (Pillow's kernel) down by ``scale`` and back up, quantised in between."""
    h, w = x.shape[-2:]
    out = []
    for img, p in zip(x, params):
        small = (max(1, round(h / p["scale"])), max(1, round(w / p["scale"])))
        low = quantise(F.interpolate(img[None], size=small, mode="bicubic", antialias=True))
        out.append(quantise(F.interpolate(low, size=(h, w), mode="bicubic", antialias=True)))
    return cut(torch.cat(out), window)


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _from_uint8(arrays: Sequence[np.ndarray], like: torch.Tensor) -> torch.Tensor:
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return stacked.to(like.device, like.dtype) / 255


def jpeg(x, params, generator=None, window=None):
    """OpenCV's encoder on CPU (no torch JPEG codec here); same bytes as the reference."""
    return cut(_from_uint8([reference.jpeg(_to_uint8(img), p) for img, p in zip(x, params)], x), window)


def _per_image(params, key, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([p[key] for p in params], device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


def poisson_noise(x, params, generator=None, window=None):
    x = cut(x, window)
    peak = _per_image(params, "peak", x)
    return quantise(torch.poisson(x * peak, generator=generator) / peak)


def gaussian_noise(x, params, generator=None, window=None):
    x = cut(x, window)
    sigma = _per_image(params, "sigma", x) / 255
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return quantise(x + noise * sigma)


def salt_pepper(x, params, generator=None, window=None):
    """``amount``: the fraction of the image's (or the window's) pixels hit."""
    out = cut(x, window).clone()
    b, _, h, w = out.shape
    flat = out.view(b, 3, h * w)
    for i, p in enumerate(params):
        n_hit = int(round(p["amount"] * h * w))
        n_salt = int(round(p["salt_ratio"] * n_hit))
        hit = torch.randperm(h * w, generator=generator, device=x.device)[:n_hit]
        flat[i][:, hit[:n_salt]] = 1.0
        flat[i][:, hit[n_salt:]] = 0.0
    return out


def inpainting(x, params, generator=None, window=None):
    h, w = x.shape[-2:]
    labels = np.stack([reference.stroke_labels((h, w), p["strokes"]) for p in params])  # (B, H, W)
    values = np.zeros((len(params), 256), np.float32)  # per image: label -> stroke value
    for i, p in enumerate(params):
        values[i, 1 : len(p["strokes"]) + 1] = [s["value"] for s in p["strokes"]]
    painted = np.take_along_axis(values, labels.reshape(len(params), -1).astype(np.int64), axis=1)
    painted = torch.from_numpy(painted.reshape(-1, 1, h, w)).to(x.device, x.dtype)
    hit = torch.from_numpy(labels[:, None] > 0).to(x.device)
    return cut(torch.where(hit, painted, x), window)


def from_uint8_images(images: Sequence[np.ndarray], device: str | torch.device = "cpu") -> torch.Tensor:
    """``(H, W, 3)`` uint8 arrays -> ``(B, 3, H, W)`` float32 tensor in [0, 1]."""
    return _from_uint8(images, torch.empty(0, device=device))


def to_uint8_images(x: torch.Tensor) -> list[np.ndarray]:
    return [_to_uint8(img) for img in x]
