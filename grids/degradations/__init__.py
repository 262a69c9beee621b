"""The degradation library: the 11 degradations of GRIDS and user-defined ones.

A degradation is a **name**, a **function** and a **parameter schema**. Calling it on an image::

    from grids.degradations import get_degradation
    deg = get_degradation("gaussian_blur")
    out, params = deg(image, np.random.default_rng(0), sigma=(2.0, 4.0))

``image`` is ``uint8`` ``(H, W, 3)`` RGB; ``out`` has the same shape and dtype; ``params`` are
the values drawn for this image (JSON-serialisable). Same generator state -> same bytes.

Each configured parameter is either a fixed value or a ``[low, high]`` range drawn per image
(uniform for floats, every integer in ``[low, high]`` equally likely for ints).

Built-ins also have a batched torch form (``deg.apply_batch``, see ``batched.py``) that applies
already-drawn parameters to a ``(B, 3, H, W)`` float tensor on CPU or CUDA, for online training.
It is a field of each built-in (``batched``, the function's name in ``batched.py``, so this module
imports no torch); tests check that each names a function there and that the config schema's
per-degradation blocks name the same parameters.

**Adding a built-in**: its reference function (``reference.py``), its batched form
(``batched.py``), its entry in :data:`BUILTINS` and its block in ``config.schema.yaml``.

User-defined degradations need no change here: a config entry ``function: "file.py:name"`` (or
``"package.module:name"``) names a function ``fn(image, rng, **params) -> (image, drawn_params)``
and :func:`get_degradation` wraps it (see ``examples/haze.py``).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..grouping.names import CLEAN
from . import reference


@dataclass(frozen=True)
class Param:
    """One parameter: its type, default (fixed value or ``(low, high)``), whether it must be odd,
    and what it means. The one home of a built-in's defaults and descriptions: the config schema's
    block for it states the same (tests/test_registries.py keeps them equal)."""

    kind: type
    default: Any
    odd: bool = False
    doc: str = ""


def draw(rng: np.random.Generator, value: Any, kind: type = float, odd: bool = False):
    """Draw one value from a configured parameter: a fixed value or a ``[low, high]`` range."""
    if not isinstance(value, (list, tuple)):
        return kind(value)
    low, high = value
    if kind is float:
        return float(rng.uniform(low, high))
    if odd:
        choices = [v for v in range(math.ceil(low), math.floor(high) + 1) if v % 2 == 1]
        return int(choices[rng.integers(len(choices))])
    return int(rng.integers(math.ceil(low), math.floor(high) + 1))


def _draw_all(schema: Mapping[str, Param], rng, config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: draw(rng, config[k], p.kind, p.odd) for k, p in schema.items()}


def range_problem(value: Any, spec: Param) -> str | None:
    """Why a configured value cannot be drawn from (inverted/empty range, even size), or None."""
    values = list(value) if isinstance(value, (list, tuple)) else [value, value]
    if len(values) != 2:
        return f"expected a value or a [low, high] range, got {value!r}"
    low, high = values
    if low > high:
        return f"inverted range [{low}, {high}]: low must not exceed high"
    if spec.kind is int:
        candidates = [v for v in range(math.ceil(low), math.floor(high) + 1)]
        if spec.odd:
            candidates = [v for v in candidates if v % 2 == 1]
        if not candidates:
            what = "odd integer" if spec.odd else "integer"
            return f"empty range {value!r}: it holds no {what}"
    return None


@dataclass(frozen=True)
class Degradation:
    """A built-in degradation: parameter schema, sampler and reference op (+ a batched form)."""

    name: str
    params: Mapping[str, Param]
    apply: Callable[[np.ndarray, dict, np.random.Generator], np.ndarray]
    batched: str  # its batched torch form: the name of a function of batched.py
    sampler: Callable[[np.random.Generator, Mapping[str, Any], tuple[int, int]], dict] | None = None
    doc: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)  # configured values, over the defaults

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.params.items()}

    def resolve(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults, overlaid with the bound config, overlaid with ``config``."""
        config = {**self.config, **(config or {})}
        unknown = sorted(set(config) - set(self.params))
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {unknown}; known: {list(self.params)}")
        return {**self.defaults, **config}

    def with_config(self, config: Mapping[str, Any]) -> Degradation:
        """The same degradation bound to configured values (checked here)."""
        resolved = self.resolve(config)
        for key, value in resolved.items():
            problem = range_problem(value, self.params[key])
            if problem:
                raise ValueError(f"{self.name}.{key}: {problem}")
        return replace(self, config=resolved)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int], **config) -> dict:
        """Draw the parameters for one image of ``shape`` (H, W)."""
        resolved = self.resolve(config)
        if self.sampler is not None:
            return self.sampler(rng, resolved, shape)
        return _draw_all(self.params, rng, resolved)

    def __call__(self, image: np.ndarray, rng: np.random.Generator, **config):
        check_image(image, self.name)
        params = self.sample(rng, image.shape[:2], **config)
        return self.apply(image, params, rng), params

    def apply_batch(self, images, params: Sequence[dict], generator=None, window=None):
        """Batched torch form: ``(B, 3, H, W)`` float in [0, 1] -> same, quantised to 1/255; with a
        ``batched.Window``, only its crops (computed from what they need, see ``batched.py``)."""
        from . import batched  # torch is imported only by users of the batched forms

        return getattr(batched, self.batched)(images, params, generator, window)


@dataclass(frozen=True)
class Composite:
    """Degradations applied in sequence (the CDD-11 style of real photos: noise after blur, JPEG
    after noise), each part drawing its parameters and randomness from the same generator in turn,
    so the output is exactly ``part_n(... part_1(image))``. Its params: ``{part: part's params}``."""

    name: str
    parts: tuple[Any, ...]

    def __call__(self, image: np.ndarray, rng: np.random.Generator, **config):
        params = {}
        for part in self.parts:
            image, params[part.name] = part(image, rng)
        return image, params


@dataclass(frozen=True)
class UserDegradation:
    """A user-defined degradation: ``function(image, rng, **config) -> (image, drawn_params)``."""

    name: str
    function: Callable[..., tuple[np.ndarray, dict]]
    source: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)

    CONTRACT = "fn(image, rng, **params) must return (uint8 image of the input's shape, dict of JSON values)"

    def __call__(self, image: np.ndarray, rng: np.random.Generator, **config):
        check_image(image, self.name)
        result = self.function(image, rng, **{**self.config, **config})
        where = f"degradation {self.name!r} ({self.source})"
        if not (isinstance(result, tuple) and len(result) == 2):
            got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
            raise ValueError(f"{where} returned {got}; {self.CONTRACT}")
        out, params = result
        out = np.asarray(out)
        if out.shape != image.shape or out.dtype != np.uint8:
            raise ValueError(
                f"{where} returned an image of {out.dtype} {out.shape}, expected uint8 {image.shape}; {self.CONTRACT}"
            )
        if not isinstance(params, Mapping):
            raise ValueError(f"{where} returned params of type {type(params).__name__}; {self.CONTRACT}")
        try:
            json.dumps(dict(params), sort_keys=True)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where} returned params that are not JSON values ({err}); {self.CONTRACT}") from None
        return out, dict(params)

    def sample(self, rng: np.random.Generator, shape: tuple[int, int], **config) -> dict:
        """For online training: the user's function draws its own parameters, from this seed."""
        return {"seed": int(rng.integers(2**63))}

    def apply_batch(self, images, params: Sequence[dict], generator=None, window=None):
        """Per-image fallback on CPU (a user function is numpy code): ``(B, 3, H, W)`` in [0, 1];
        with a window, the whole images are degraded and its crops cut."""
        from .batched import cut, from_uint8_images, to_uint8_images

        outs = [self(img, np.random.default_rng(p["seed"]))[0] for img, p in zip(to_uint8_images(images), params)]
        return cut(from_uint8_images(outs, images.device).to(images.dtype), window)


def check_image(image: np.ndarray, where: str = "") -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        got = f"{getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}"
        raise ValueError(f"{where}: expected a uint8 (H, W, 3) RGB image, got {got}")


# --- samplers with structure beyond independent scalar draws --------------------------------


def _sample_inpainting(rng, config, shape):
    h, w = shape
    side = min(h, w)
    strokes = []
    for _ in range(draw(rng, config["n_strokes"], int)):
        n_vertices = draw(rng, config["vertices"], int)
        thickness = draw(rng, config["thickness"], int)
        value = int(rng.random() < 0.5)  # 1 = white, 0 = black, 50/50
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        points = [[int(x), int(y)]]
        for _ in range(n_vertices - 1):
            angle = rng.uniform(0, 2 * np.pi)
            step = draw(rng, config["step"], float) * side
            x = float(np.clip(x + step * np.cos(angle), 0, w - 1))
            y = float(np.clip(y + step * np.sin(angle), 0, h - 1))
            points.append([int(x), int(y)])
        strokes.append({"points": points, "thickness": thickness, "value": value})
    return {"strokes": strokes}


BUILTINS: dict[str, Degradation] = {
    d.name: d
    for d in [
        Degradation(
            "gaussian_blur",
            {
                "kernel_size": Param(int, 15, odd=True, doc="kernel side, px, odd"),
                "sigma": Param(float, (2.0, 4.0), doc="standard deviation, px"),
            },
            reference.gaussian_blur,
            batched="gaussian_blur",
            doc="isotropic Gaussian blur",
        ),
        Degradation(
            "motion_blur",
            {
                "length": Param(float, (10.0, 20.0), doc="length of the blur line, px"),
                "angle": Param(float, (0.0, 180.0), doc="direction of the blur line, degrees"),
            },
            reference.motion_blur,
            batched="motion_blur",
            doc="linear motion blur, length in px, angle in degrees",
        ),
        Degradation(
            "rl",
            {
                "psf_size": Param(int, 5, odd=True, doc="side of the box PSF, px, odd"),
                "iterations": Param(int, 1, doc="Richardson-Lucy iterations"),
                "pad": Param(int, 7, doc="linear-ramp padding before Richardson-Lucy, cropped after, px"),
            },
            reference.rl,
            batched="rl",
            doc="Richardson-Lucy output (box PSF) on a linear-ramp padded image",
        ),
        Degradation(
            "sr",
            {"scale": Param(float, (2.0, 4.0), doc="bicubic down by this factor, then back up")},
            reference.sr,
            batched="sr",
            doc="bicubic down/up",
        ),
        Degradation(
            "ringing",
            {
                "cutoff": Param(float, 1.2, doc="cutoff frequency of the sinc filter, rad/px"),
                "kernel_size": Param(int, 15, odd=True, doc="side of the sinc kernel, px, odd"),
                "pad_to": Param(int, 21, odd=True, doc="the kernel zero-padded to this side, px, odd"),
            },
            reference.ringing,
            batched="ringing",
            doc="2-D sinc (circular low-pass) filter",
        ),
        Degradation(
            "defocus_blur",
            {"radius": Param(float, (2.0, 4.0), doc="disk radius, px")},
            reference.defocus_blur,
            batched="defocus_blur",
            doc="disk blur",
        ),
        Degradation(
            "jpeg",
            {"quality": Param(int, (10, 40), doc="OpenCV encoder quality, 1-100")},
            reference.jpeg,
            batched="jpeg",
            doc="OpenCV JPEG",
        ),
        Degradation(
            "poisson_noise",
            {"peak": Param(float, 100.0, doc="poisson(x * peak) / peak on [0, 1] intensities")},
            reference.poisson_noise,
            batched="poisson_noise",
            doc="shot noise",
        ),
        Degradation(
            "inpainting",
            {
                "n_strokes": Param(int, (5, 10), doc="polylines per image"),
                "thickness": Param(int, (5, 10), doc="line thickness, px"),
                "vertices": Param(int, (2, 5), doc="points per polyline"),
                "step": Param(float, (0.1, 0.3), doc="segment length, fraction of the shorter image side"),
            },
            reference.inpainting,
            batched="inpainting",
            sampler=_sample_inpainting,
            doc="random white/black polylines",
        ),
        Degradation(
            "gaussian_noise",
            {"sigma": Param(float, (10.0, 50.0), doc="standard deviation on the 0-255 scale, per channel")},
            reference.gaussian_noise,
            batched="gaussian_noise",
            doc="AWGN",
        ),
        Degradation(
            "salt_pepper",
            {
                "amount": Param(float, 0.05, doc="fraction of the pixels replaced"),
                "salt_ratio": Param(float, 0.5, doc="fraction of those set to white (the rest black)"),
            },
            reference.salt_pepper,
            batched="salt_pepper",
            doc="impulse noise",
        ),
    ]
}
NAMES = tuple(BUILTINS)  # the built-ins' names, in the paper's order


def load_function(spec: str, base_dir: str | Path = ".") -> Callable:
    """Resolve ``"path/to/file.py:name"`` (relative to ``base_dir``) or ``"pkg.module:name"``.

    Only a plain Python function (``def``) of the user's own code is accepted: a built-in, a class,
    or anything from the standard library (``os:system``) is refused here, when the config is
    checked, rather than failing (or doing harm) in a job.
    """
    from ..user_code import load_attribute

    fn = load_attribute(spec, base_dir, "function", "a degradation must be a function of your own .py file or package")
    if not inspect.isfunction(fn):
        raise ValueError(
            f"function {spec!r} is a {type(fn).__name__}, not a plain Python function "
            "(def fn(image, rng, **params) -> (image, params))"
        )
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError as err:
        raise ValueError(f"function {spec!r} cannot be called as fn(image, rng, **params): {err}") from None
    return fn


def unchanged(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The clean test case (:data:`grids.grouping.names.CLEAN`): the image as it is, no parameter."""
    return image.copy(), {}


def get_degradation(name: str, entry: Mapping[str, Any] | None = None, base_dir: str | Path = "."):
    """The degradation called ``name``; ``entry`` is its config entry (needed for user ones).
    ``clean`` is the identity: the test sets' case "nothing to restore"."""
    entry = dict(entry or {})
    if name == CLEAN:
        return UserDegradation(CLEAN, unchanged, "grids: the clean image, unchanged")
    if "compose" in entry:  # resolved parts: [{"name": ..., "entry": {...}}, ...]
        parts = [get_degradation(part["name"], part["entry"], base_dir) for part in entry["compose"]]
        return Composite(name, tuple(parts))
    if "function" in entry:
        fn = load_function(entry["function"], base_dir)
        params = entry.get("params") or {}
        try:
            inspect.signature(fn).bind(None, None, **params)
        except TypeError as err:
            raise ValueError(
                f"function {entry['function']!r} does not take the params {sorted(params)}: {err}"
            ) from None
        return UserDegradation(name, fn, entry["function"], params)
    if name not in BUILTINS:
        raise KeyError(
            f"unknown degradation {name!r}; built-ins are {', '.join(NAMES)}; a user-defined one needs a 'function' key"
        )
    return BUILTINS[name].with_config(entry)
