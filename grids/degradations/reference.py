"""Reference (per-image, numpy/OpenCV) forms of the built-in degradations.

Every function here has the signature ``op(image, params, rng) -> image``:

* ``image``: ``uint8`` array ``(H, W, 3)``, RGB.
* ``params``: the parameters drawn for this image (see ``grids.degradations.BUILTINS``).
* ``rng``: ``numpy.random.Generator``, used only by the random ops (noise, salt & pepper).
* returns a new ``uint8`` ``(H, W, 3)`` array.

Internally images are float32 in [0, 1] and are quantised back to uint8 after each operation,
as the authors' lab code does; filters use OpenCV's ``BORDER_REFLECT_101`` (torch's "reflect").
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from . import kernels

REFLECT = cv2.BORDER_REFLECT_101


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def quantise(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _filter(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return quantise(cv2.filter2D(to_float(image), -1, kernel, borderType=REFLECT))


def gaussian_blur(image, params, rng=None):
    return _filter(image, kernels.gaussian_kernel(params["kernel_size"], params["sigma"]))


def motion_blur(image, params, rng=None):
    return _filter(image, kernels.motion_kernel(params["length"], params["angle"]))


def defocus_blur(image, params, rng=None):
    return _filter(image, kernels.disk_kernel(params["radius"]))


def ringing(image, params, rng=None):
    kernel = kernels.sinc_kernel(params["cutoff"], params["kernel_size"], params["pad_to"])
    return _filter(image, kernel)


def rl(image, params, rng=None):
    """Richardson-Lucy output on a ``linear_ramp``-padded image, per channel.

    Exactly scikit-image's ``richardson_lucy`` (flat 0.5 start, zero-filled "same" convolutions,
    clip to [-1, 1]; a test checks the equality) written with OpenCV filters, which is two orders
    of magnitude faster than scipy's direct convolution on full images.
    """
    pad, k = params["pad"], params["psf_size"]
    psf = kernels.box_kernel(k)
    x = to_float(image)
    y = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="linear_ramp") if pad else x

    def conv(t):
        return cv2.filter2D(t, -1, psf, borderType=cv2.BORDER_CONSTANT)

    estimate = np.full_like(y, 0.5)
    for _ in range(params["iterations"]):
        estimate = estimate * conv(y / (conv(estimate) + np.float32(1e-12)))
    estimate = np.clip(estimate, -1, 1)
    return quantise(estimate[pad:-pad, pad:-pad] if pad else estimate)


def _resize_bicubic(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Pillow's bicubic (a = -0.5, antialiased when shrinking), per channel in float, then quantised.

    Float mode keeps Pillow from rounding and clipping between its horizontal and vertical passes.
    """
    channels = [
        np.asarray(
            Image.fromarray(image[..., c].astype(np.float32), mode="F").resize(size_wh, Image.Resampling.BICUBIC)
        )
        for c in range(image.shape[2])
    ]
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def sr(image, params, rng=None):
    """Bicubic downscale by ``scale`` (antialiased) and bicubic upscale back to the input size."""
    h, w = image.shape[:2]
    small = (max(1, round(w / params["scale"])), max(1, round(h / params["scale"])))
    return _resize_bicubic(_resize_bicubic(image, small), (w, h))


def jpeg_encode(image: np.ndarray, quality: int) -> bytes:
    """Encode an RGB uint8 image with OpenCV's JPEG encoder (baseline, 4:2:0)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a JPEG")
    return buf.tobytes()


def jpeg_decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def jpeg(image, params, rng=None):
    return jpeg_decode(jpeg_encode(image, params["quality"]))


def poisson_noise(image, params, rng):
    """Shot noise: ``poisson(x * peak) / peak`` on [0, 1] intensities."""
    peak = params["peak"]
    return quantise(rng.poisson(to_float(image) * peak).astype(np.float32) / peak)


def gaussian_noise(image, params, rng):
    """Additive white Gaussian noise, independent per channel, ``sigma`` on the 0-255 scale."""
    noise = rng.standard_normal(image.shape, dtype=np.float32) * (params["sigma"] / 255.0)
    return quantise(to_float(image) + noise)


def salt_pepper_mask(shape: tuple[int, int], amount: float, salt_ratio: float, rng) -> np.ndarray:
    """``int8`` map: 1 salt, -1 pepper, 0 untouched; exactly ``round(amount * H * W)`` pixels hit."""
    h, w = shape
    n_hit = int(round(amount * h * w))
    n_salt = int(round(salt_ratio * n_hit))
    hit = rng.choice(h * w, size=n_hit, replace=False)
    mask = np.zeros(h * w, np.int8)
    mask[hit[:n_salt]] = 1
    mask[hit[n_salt:]] = -1
    return mask.reshape(h, w)


def salt_pepper(image, params, rng):
    mask = salt_pepper_mask(image.shape[:2], params["amount"], params["salt_ratio"], rng)
    out = image.copy()
    out[mask == 1] = 255
    out[mask == -1] = 0
    return out


def stroke_labels(shape: tuple[int, int], strokes: list[dict]) -> np.ndarray:
    """``uint8`` map: 0 untouched, ``i + 1`` where stroke ``i`` (drawn in order) is on top."""
    labels = np.zeros(shape, np.uint8)
    for i, stroke in enumerate(strokes):
        points = np.asarray(stroke["points"], np.int32).reshape(-1, 1, 2)
        cv2.polylines(labels, [points], False, i + 1, int(stroke["thickness"]), cv2.LINE_8)
    return labels


def inpainting(image, params, rng=None):
    strokes = params["strokes"]
    labels = stroke_labels(image.shape[:2], strokes)
    values = np.array([0] + [255 * s["value"] for s in strokes], np.uint8)
    out = image.copy()
    hit = labels > 0
    out[hit] = values[labels[hit]][:, None]
    return out
