"""Degradations no GRIDS model is trained on: the default config's out-of-distribution benchmark.

``selection.unseen`` applies them to the test sets only; the selection report then asks whether
the divergence flags them (and whether the model it picks copes anyway). With ``examples/haze.py``
they cover the ways an input can leave the training distribution:

=============  ==========================================================================
rain           bright slanted streaks added over the scene (a structured, additive layer)
low_light      exposure cut to 10-30 % plus shot and read noise (gain + noise)
colour_cast    a white-balance error: red and blue gains pulled apart (a global colour shift)
mild_blur      a Gaussian blur of sigma 0.8-1.4 px, below the trained 2-4 px: a near miss,
               which the group models should restore about as well as the trained blurs
=============  ==========================================================================

Same contract as every user degradation (see ``examples/haze.py``): ``fn(image, rng, **params)
-> (degraded, drawn_params)``, uint8 RGB in and out, all randomness from ``rng``.
"""

import cv2
import numpy as np

from grids.degradations import draw


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def rain(image, rng, density=(0.003, 0.006), length=(12, 24), angle=(-25.0, 25.0), brightness=(0.5, 0.8)):
    """Streaks: seeded drops (``density`` per pixel), each smeared along one direction by a line
    kernel of ``length`` px at ``angle`` degrees from vertical, added with ``brightness``."""
    d, n, a, b = draw(rng, density), draw(rng, length), draw(rng, angle), draw(rng, brightness)
    h, w = image.shape[:2]
    drops = (rng.random((h, w)) < d).astype(np.float32) * rng.uniform(0.5, 1.0, (h, w)).astype(np.float32)
    size = int(n) | 1  # odd kernel side
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = np.sin(np.deg2rad(a)), np.cos(np.deg2rad(a))
    for t in np.linspace(-c, c, 4 * size):
        kernel[int(round(c + t * dy)), int(round(c + t * dx))] = 1.0
    kernel /= kernel.sum()
    streaks = cv2.filter2D(drops, -1, kernel * size / 2, borderType=cv2.BORDER_REFLECT)
    out = image.astype(np.float32) / 255 + b * np.clip(streaks, 0, 1)[:, :, None]
    return _to_uint8(out), {"density": d, "length": int(n), "angle": a, "brightness": b}


def low_light(image, rng, exposure=(0.1, 0.3), peak=(60.0, 200.0), read_noise=(0.005, 0.015)):
    """Under-exposure: intensities times ``exposure``, then Poisson shot noise at ``peak`` photons
    for a white pixel and Gaussian read noise of std ``read_noise`` (on [0, 1])."""
    e, p, r = draw(rng, exposure), draw(rng, peak), draw(rng, read_noise)
    x = image.astype(np.float64) / 255 * e
    x = rng.poisson(x * p) / p + rng.normal(0.0, r, x.shape)
    return _to_uint8(x), {"exposure": e, "peak": p, "read_noise": r}


def colour_cast(image, rng, strength=(0.15, 0.35)):
    """A white-balance error: red gain ``1 + s``, blue ``1 - s`` (warm) or the reverse (cool),
    the direction drawn per image; green unchanged."""
    s = draw(rng, strength)
    warm = bool(rng.integers(2))
    gains = np.array([1 + s, 1.0, 1 - s] if warm else [1 - s, 1.0, 1 + s], np.float32)
    out = image.astype(np.float32) / 255 * gains
    return _to_uint8(out), {"strength": s, "warm": warm}


def mild_blur(image, rng, sigma=(0.8, 1.4)):
    """An isotropic Gaussian blur of ``sigma`` px (9 x 9 kernel), milder than the trained one."""
    s = draw(rng, sigma)
    out = cv2.GaussianBlur(image, (9, 9), s, borderType=cv2.BORDER_REFLECT)
    return out, {"sigma": s}
