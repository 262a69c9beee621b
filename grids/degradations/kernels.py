"""Blur kernels shared by the reference (numpy/OpenCV) and batched (torch) degradations.

Every kernel is a float32 ``(k, k)`` array with odd ``k`` that sums to 1 and is symmetric under a
180-degree rotation, so correlation (OpenCV ``filter2D``, torch ``conv2d``) equals convolution.
Building the kernel once, in numpy, is what lets both forms agree to within rounding.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special


def _normalised(kernel: np.ndarray) -> np.ndarray:
    kernel = kernel.astype(np.float64)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    """Isotropic Gaussian, ``size`` x ``size`` (odd)."""
    half = (size - 1) / 2
    x = np.arange(size, dtype=np.float64) - half
    g = np.exp(-(x**2) / (2 * sigma**2))
    return _normalised(np.outer(g, g))


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Linear motion blur: a 1-px wide anti-aliased segment of ``length`` px through the centre.

    Each tap weighs ``max(0, 1 - distance to the segment)``, so sub-pixel lengths and every
    angle give a smooth kernel; the size is the smallest odd square that holds the segment.
    """
    size = 2 * math.ceil(length / 2) + 1
    half = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) - half
    theta = math.radians(angle_deg)
    dx, dy = math.cos(theta), -math.sin(theta)  # image rows grow downwards
    along = np.clip(xs * dx + ys * dy, -length / 2, length / 2)
    dist = np.hypot(xs - along * dx, ys - along * dy)
    return _normalised(np.maximum(0.0, 1.0 - dist))


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Pillbox (defocus) kernel: the fraction of each pixel inside a disk of ``radius``.

    Pixel coverage is estimated on a ``supersample`` x ``supersample`` grid per pixel, which
    gives the slight anti-aliasing of the disk edge.
    """
    size = 2 * math.ceil(radius) + 1
    half = (size - 1) / 2
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    fine = np.arange(size)[:, None] + offsets[None, :] - half  # (size, supersample)
    fy = fine.reshape(size, 1, supersample, 1)
    fx = fine.reshape(1, size, 1, supersample)
    inside = (fy**2 + fx**2) <= radius**2
    return _normalised(inside.mean(axis=(2, 3)))


def sinc_kernel(cutoff: float, size: int, pad_to: int) -> np.ndarray:
    """Circular low-pass (2-D sinc / Airy) kernel with cutoff ``cutoff`` rad/px.

    ``h(r) = cutoff * J1(cutoff * r) / (2 pi r)``, with its limit ``cutoff**2 / (4 pi)`` at
    ``r = 0``; computed on a ``size`` grid, normalised, then zero-padded to ``pad_to``.
    """
    half = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) - half
    r = np.hypot(xs, ys)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    h[r == 0] = cutoff**2 / (4 * np.pi)
    h = h / h.sum()
    pad = (pad_to - size) // 2
    return np.pad(h, pad).astype(np.float32)


def box_kernel(size: int) -> np.ndarray:
    return np.full((size, size), 1.0 / (size * size), dtype=np.float32)
