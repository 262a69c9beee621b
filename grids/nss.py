"""Natural-scene statistics of one image as GGD fits: the pixel-level part of a selection signature.

The descriptor's deep features say little about a degradation that a photo's content also
explains (a smooth sky looks blurred, foliage looks noisy). Mittal, Moorthy and Bovik's BRISQUE
(IEEE TIP 2012) measures the degradation on the pixels instead, after removing the content's local
mean and contrast, and reads it off generalised Gaussian fits, which is how GRIDS reads its deep
features. ``selection.layers`` names these fits ``nss`` (:data:`NSS`); they cost about 30 ms per
image on this project's CPU, no descriptor pass.

Steps, on the grey image (the mean of R, G, B, float64, 0-255), at ``SCALES`` scales (each the
previous one averaged over 2x2 blocks):

1. MSCN coefficients ``(I - mu) / (s + 1)``, where ``mu`` and ``s`` are the local mean and standard
   deviation under a Gaussian window (sigma 7/6 px, truncated at 3 sigma): a clean photo's are
   close to a unit Gaussian; blur narrows them, noise widens them, JPEG blocks and missing pixels
   reshape their tails;
2. a zero-mean GGD fit of the coefficients (layer ``nss{scale}``);
3. products of each coefficient with its neighbour in ``ORIENTATIONS`` (horizontal, vertical and
   the two diagonals), which carry the correlations a degradation adds or removes. A product's
   distribution is asymmetric, so BRISQUE fits an asymmetric GGD; here its negative and positive
   halves are fitted apart, each mirrored into a zero-mean GGD (layers ``nss{scale}_{o}-`` and
   ``nss{scale}_{o}+``): the same information, in the signature's ``(alpha, sigma)`` form.

Every fit is :func:`grids.ggd.fit_ggd` without the outlier cut (the moment estimator, consistent
for every shape; an image has enough pixels). So ``nss`` stands for ``SCALES * 9`` layers
(:data:`NSS_LAYERS`), 36 numbers of the signature vector.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.ndimage import gaussian_filter

from .ggd import GGD, fit_ggd

NSS = "nss"  # its name in selection.layers
SCALES = 2
ORIENTATIONS = {"h": (0, 1), "v": (1, 0), "d1": (1, 1), "d2": (1, -1)}  # the neighbour's (row, column) offset
WINDOW_SIGMA = 7 / 6  # BRISQUE's local window (px)
NSS_LAYERS = tuple(
    name
    for scale in range(SCALES)
    for name in (
        f"nss{scale}",
        *(f"nss{scale}_{o}{side}" for o in ORIENTATIONS for side in "-+"),
    )
)


def expand_layers(layers: Iterable[str]) -> list[str]:
    """``layers`` with :data:`NSS` replaced by its :data:`NSS_LAYERS` (the signature's own names)."""
    return [name for layer in layers for name in (NSS_LAYERS if layer == NSS else (layer,))]


def mscn(gray: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients of a ``[H, W]`` float64 image (step 1)."""
    mu = gaussian_filter(gray, WINDOW_SIGMA, truncate=3.0)
    spread = np.sqrt(np.abs(gaussian_filter(gray * gray, WINDOW_SIGMA, truncate=3.0) - mu * mu))
    return (gray - mu) / (spread + 1.0)


FLAT = GGD(alpha=2.0, sigma=1e-6)  # what a flat region (no spread to fit) gets


def _fit(values: np.ndarray) -> GGD:
    return fit_ggd(values, outlier_stds=None) if values.size > 1 and np.ptp(values) > 0 else FLAT


def _mirrored(half: np.ndarray) -> GGD:
    """The zero-mean GGD of one half of a distribution (values >= 0), mirrored about 0."""
    return _fit(np.concatenate([half, -half]))


def nss_ggds(image: np.ndarray) -> dict[str, GGD]:
    """``{layer: GGD}`` for every layer of :data:`NSS_LAYERS`, of an ``[H, W, 3]`` (or ``[H, W]``)
    8-bit image (module doc)."""
    gray = np.asarray(image, np.float64)
    gray = gray.mean(axis=2) if gray.ndim == 3 else gray
    fits = {}
    for scale in range(SCALES):
        coefficients = mscn(gray)
        fits[f"nss{scale}"] = _fit(coefficients.ravel())
        for name, offset in ORIENTATIONS.items():
            product = (coefficients * np.roll(coefficients, offset, axis=(0, 1)))[1:-1, 1:-1].ravel()
            fits[f"nss{scale}_{name}-"] = _mirrored(-product[product < 0])
            fits[f"nss{scale}_{name}+"] = _mirrored(product[product >= 0])
        h, w = (gray.shape[0] // 2) * 2, (gray.shape[1] // 2) * 2
        gray = gray[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return fits
