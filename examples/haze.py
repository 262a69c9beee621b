"""A user-defined degradation: atmospheric haze (not one of the 11 built-ins).

Use it from a config without touching the `grids` package::

    degradations:
      haze:
        function: examples/haze.py:haze     # file path (from the working directory) : function
        params: {strength: [0.3, 0.7], airlight: [0.7, 1.0]}

The contract: ``fn(image, rng, **params) -> (degraded, drawn_params)`` with ``image`` and
``degraded`` uint8 (H, W, 3) RGB, ``rng`` a numpy Generator (the only source of randomness, so
the same seed gives the same bytes) and ``drawn_params`` a JSON-serialisable dict.
"""

import numpy as np

from grids.degradations import draw


def haze(image, rng, strength=(0.3, 0.7), airlight=(0.7, 1.0)):
    """Koschmieder's model ``I = J t + A (1 - t)`` with a vertical depth ramp (far = top)."""
    s = draw(rng, strength)
    a = draw(rng, airlight)
    h = image.shape[0]
    depth = np.linspace(1.0, 0.2, h, dtype=np.float32)[:, None, None]  # top of the image is far
    transmission = np.exp(-3.0 * s * depth)
    out = image.astype(np.float32) / 255 * transmission + a * (1 - transmission)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8), {"strength": s, "airlight": a}
