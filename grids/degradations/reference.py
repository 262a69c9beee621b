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


# The float steps below work in place on their own copy: one float32 copy of the image at a time,
# not three (a 12000 x 12000 image is 1.7 GB per float32 copy). Same values as the plain formulas.
def to_float(image: np.ndarray) -> np.ndarray:
    out = image.astype(np.float32)
    out /= 255.0
    return out


def quantise(image: np.ndarray) -> np.ndarray:
    scaled = image * 255.0
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


# Pixels per block of the noise ops: their float work is done a block of rows at a time.
BLOCK_PIXELS = 1 << 20


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


def by_row_blocks(image: np.ndarray, op) -> np.ndarray:
    """``op`` applied to blocks of rows of ``image`` (uint8 -> uint8), so its float work needs no
    float copy of a huge image. A noise op draws from the generator in the same order as one call
    over the whole image (the stream is sequential), so the output is the same too."""
    out = np.empty_like(image)
    rows = max(1, BLOCK_PIXELS // max(1, image.shape[1]))
    for top in range(0, image.shape[0], rows):
        out[top : top + rows] = op(image[top : top + rows])
    return out


def poisson_noise(image, params, rng):
    """Shot noise: ``poisson(x * peak) / peak`` on [0, 1] intensities."""
    peak = params["peak"]
    return by_row_blocks(image, lambda block: quantise(rng.poisson(to_float(block) * peak).astype(np.float32) / peak))


def gaussian_noise(image, params, rng):
    """Additive white Gaussian noise, independent per channel, ``sigma`` on the 0-255 scale."""
    scale = np.float32(params["sigma"] / 255.0)
    return by_row_blocks(
        image, lambda block: quantise(to_float(block) + rng.standard_normal(block.shape, np.float32) * scale)
    )


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
