"""Seeds derived from the config seed and names, so that every job draws its own stream.

Python's ``hash()`` is salted per process, so seeds come from sha256 instead: the same config and
names give the same seed on every machine, in every process, in any job order.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (e.g. ``derive_seed(0, "degrade", "jpeg", "astronaut")``)."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def rng_for(*parts: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))
