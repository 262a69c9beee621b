"""Network architectures used by GRIDS (one module per file)."""

from collections.abc import Mapping

import torch

from grids.archs.msrresnet import MSRResNet
from grids.archs.restormer import Restormer
from grids.archs.rrdbnet import RRDBNet
from grids.archs.srresnet import SRResNet

__all__ = ["ARCHS", "MSRResNet", "RRDBNet", "Restormer", "SRResNet", "load_strict"]

# Restoration backbones by their config name (`training.arch`).
ARCHS = {"srresnet": SRResNet, "restormer": Restormer, "rrdbnet": RRDBNet}


def _first(keys: list[str], n: int = 4) -> str:
    return f"{keys[:n]}" + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str) -> None:
    """``model.load_state_dict(state, strict=True)``, except that weights that do not fit are one
    ValueError naming ``source``, the architecture ``what`` and the first few missing keys,
    unexpected keys and shape mismatches (PyTorch's own message lists every key, on many lines)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
        for k in sorted(set(expected) & set(state))
        if getattr(state[k], "shape", None) != expected[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"missing keys {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_first(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches {_first(mismatched, 3)}")
    if parts:
        raise ValueError(f"{source}: weights do not fit {what}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
