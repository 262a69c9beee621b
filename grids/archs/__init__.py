"""Network architectures used by GRIDS (one module per file), and the contract of a user's own.

``training.arch`` (and a baseline's ``arch``) is a built-in name of :data:`ARCHS` or a class of the
user's, ``file.py:Class`` or ``package.module:Class``. The contract of a restoration backbone:

* a ``torch.nn.Module`` built as ``Class(**arch_kwargs)``;
* same-resolution restoration: ``forward`` takes ``(B, 3, H, W)`` RGB in [0, 1] and returns the
  same shape (values outside [0, 1] are clamped when scored);
* an optional ``size_multiple`` attribute (int, default 1): H and W must be multiples of it, so
  evaluation and ``grids restore`` reflect-pad the input up to one and crop the output back.
"""

from collections.abc import Mapping
from pathlib import Path

import torch

from grids.archs.msrresnet import MSRResNet
from grids.archs.restormer import Restormer
from grids.archs.rrdbnet import RRDBNet
from grids.archs.srresnet import SRResNet

__all__ = [
    "FromLowResolution",
    "ARCHS",
    "MSRResNet",
    "RRDBNet",
    "Restormer",
    "SRResNet",
    "build_user_arch",
    "check_arch_contract",
    "load_strict",
    "resolve_arch",
    "size_multiple",
]

# Restoration backbones by their config name (`training.arch`).
ARCHS = {"srresnet": SRResNet, "restormer": Restormer, "rrdbnet": RRDBNet}


def resolve_arch(arch: str, base_dir: str | Path = ".") -> type[torch.nn.Module]:
    """The class ``arch`` names: a built-in name, or a user's ``file.py:Class`` /
    ``package.module:Class`` (a ``torch.nn.Module`` subclass)."""
    if arch in ARCHS:
        return ARCHS[arch]
    if ":" not in arch:
        raise ValueError(
            f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)} or name a class of your own "
            "as 'file.py:Class' or 'package.module:Class'"
        )
    from ..user_code import load_attribute

    cls = load_attribute(arch, base_dir, "architecture", "an architecture must be a class of your own file or package")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"architecture {arch!r} is a {type(cls).__name__}, not a torch.nn.Module subclass")
    return cls


def build_user_arch(cls: type[torch.nn.Module], spec: str, kwargs: dict) -> torch.nn.Module:
    """``cls(**kwargs)`` for the user's class ``spec``: an exception of its constructor (SystemExit
    included) is one ValueError naming the spec (file and class) and the exception."""
    from ..user_code import user_code_errors

    with user_code_errors(f"architecture {spec!r}: {cls.__name__}(**{kwargs})"):
        return cls(**kwargs)


def check_arch_contract(cls: type[torch.nn.Module], spec: str, kwargs: dict) -> None:
    """Hold a user's class to the contract above, once, when the config is checked: built with
    ``kwargs``, a valid ``size_multiple``, and one forward pass on a tiny input (CPU, no gradient)
    returning the input's shape. Runs the user's code; a failure is a ValueError naming ``spec``."""
    from ..user_code import user_code_errors

    model = build_user_arch(cls, spec, kwargs)
    multiple = getattr(model, "size_multiple", 1)
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"architecture {spec!r}: size_multiple is {multiple!r}, expected a positive integer")
    side = multiple * -(-16 // multiple)  # the smallest multiple of it from 16 px up
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), user_code_errors(f"architecture {spec!r}: forward on a {tuple(x.shape)} input"):
        out = model.eval()(x)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != tuple(x.shape):
        raise ValueError(
            f"architecture {spec!r}: forward on a {tuple(x.shape)} input returned {shape}; a backbone "
            "restores at the same size, (B, 3, H, W) in and out"
        )


class FromLowResolution(torch.nn.Module):
    """A x``scale`` super-resolution network as a same-size restorer: the input is downscaled by
    ``scale`` (bicubic, antialiased) and the network brings it back to the input's size. How a
    published x4 model (Real-ESRGAN, RRDBNet ``scale: 4``) is scored next to restoration models:
    its Table 1 row is "this model applied to the x4-downscaled degraded image"."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.scale = int(model.scale)
        self.size_multiple = self.scale * size_multiple(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = torch.nn.functional.interpolate(
            x, scale_factor=1 / self.scale, mode="bicubic", antialias=True, align_corners=False
        )
        return self.model(low)


def size_multiple(model: torch.nn.Module) -> int:
    """What H and W of the model's input must be multiples of (its ``size_multiple``, default 1)."""
    return int(getattr(model, "size_multiple", 1))


def _first(keys: list[str], n: int = 4) -> str:
    return f"{keys[:n]}" + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str, exact_dtype: bool = True
) -> None:
    """``model.load_state_dict(state, strict=True)``, after checking every key, shape and dtype
    (``load_state_dict`` would cast an int8 tensor into float weights without a word): weights that
    do not fit are one ValueError naming ``source``, the architecture ``what`` and the first few
    missing keys, unexpected keys, shape and dtype mismatches (PyTorch's own message lists every
    key, on many lines). ``exact_dtype``: each tensor's dtype is the model's (a GRIDS file);
    otherwise any floating dtype may fill a floating weight (published fp16 releases)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    common = sorted(set(expected) & set(state))
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in common
        if getattr(state[k], "shape", None) != expected[k].shape
    ]
    wrong_dtype = [
        f"{k} (file {_dtype_name(state[k])}, model {_dtype_name(expected[k])})"
        for k in common
        if not _dtype_fits(state[k].dtype, expected[k].dtype, exact_dtype)
    ]
    parts = []
    if missing:
        parts.append(f"missing keys {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_first(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches {_first(mismatched, 3)}")
    if wrong_dtype:
        parts.append(f"dtype mismatches {_first(wrong_dtype, 3)}")
    if parts:
        raise ValueError(f"{source}: weights do not fit {what}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def _dtype_fits(given: torch.dtype, wanted: torch.dtype, exact: bool) -> bool:
    if given == wanted:
        return True
    return not exact and given.is_floating_point and wanted.is_floating_point
