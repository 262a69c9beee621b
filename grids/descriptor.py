"""The degradation descriptor: loading, saving and fingerprinting MSRResNet weights.

Accepted weight files (read with ``torch.load(..., weights_only=True)`` only; a file that needs
arbitrary unpickling is refused with :class:`ValueError`):

* a bare state dict ``{name: tensor}``;
* a BasicSR checkpoint ``{"params_ema": state, ...}`` or ``{"params": state, ...}``
  (``params_ema`` is preferred when both are present);
* keys prefixed with ``module.`` (saved from ``DataParallel``/``DistributedDataParallel``);
* a ``.safetensors`` file of those tensors (what ``grids.train_descriptor`` exports beside its
  ``.pth``);
* the older ESRGAN / mmsr naming: ``recon_trunk.{i}.conv1|conv2`` -> ``body.{i}.conv1|conv2``,
  ``HRconv`` -> ``conv_hr`` (``conv_first``, ``upconv1``, ``upconv2``, ``conv_last`` unchanged).

The architecture (features, blocks, scale, channels) is inferred from the tensor shapes, then
the weights are loaded strictly. :func:`save_descriptor` writes ``{"params": state, **extra}``.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from grids.archs import load_strict
from grids.archs.msrresnet import MSRResNet
from grids.io import atomic_path

__all__ = ["load_descriptor", "remap_state_dict", "save_descriptor"]

_OLD_PREFIXES = (("recon_trunk.", "body."), ("HRconv.", "conv_hr."))
_BODY_KEY = re.compile(r"^body\.(\d+)\.")


def remap_state_dict(state: Mapping) -> dict[str, torch.Tensor]:
    """Return a plain ``{name: tensor}`` dict in this package's ``MSRResNet`` naming.

    Unwraps ``params_ema`` (preferred) or ``params``, strips a ``module.`` prefix and renames the
    old ``recon_trunk``/``HRconv`` keys (see the module docstring). Tensors are not copied.

    Raises:
        ValueError: ``state`` is not a mapping of names to tensors, or two keys map to one name.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state dict or checkpoint dict, got {type(state).__name__}")
    for wrapper in ("params_ema", "params"):
        if wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
            break
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"not a state dict: entry {key!r} is a {type(value).__name__}, expected a tensor "
                f"(top-level keys: {sorted(map(str, state))[:10]})"
            )
        new = key[len("module.") :] if key.startswith("module.") else key
        for old, repl in _OLD_PREFIXES:
            if new.startswith(old):
                new = repl + new[len(old) :]
                break
        if new in out:
            raise ValueError(f"two keys map to {new!r} (second one: {key!r})")
        out[new] = value
    return out


def _infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """MSRResNet keyword arguments implied by the tensor shapes of a remapped state dict."""
    needed = ["conv_first.weight", "upconv1.weight", "conv_last.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"cannot infer the MSRResNet architecture: missing keys {missing}")
    blocks = [int(m.group(1)) for k in state if (m := _BODY_KEY.match(k))]
    if not blocks:
        raise ValueError("cannot infer the MSRResNet architecture: no 'body.<i>.' keys")
    num_feat, num_in_ch = state["conv_first.weight"].shape[:2]
    up_channels = state["upconv1.weight"].shape[0]
    if "upconv2.weight" in state or "upconv2.bias" in state:
        upscale = 4
    else:
        upscale = round((up_channels / num_feat) ** 0.5)
        if upscale not in (2, 3) or upscale * upscale * num_feat != up_channels:
            raise ValueError(
                f"cannot infer the upscale: upconv1 has {up_channels} output channels for "
                f"{num_feat} features and there is no upconv2"
            )
    return {
        "num_in_ch": int(num_in_ch),
        "num_out_ch": int(state["conv_last.weight"].shape[0]),
        "num_feat": int(num_feat),
        "num_block": max(blocks) + 1,
        "upscale": upscale,
    }


def load_descriptor(path: str | Path, device: str | torch.device = "cpu") -> MSRResNet:
    """Load an MSRResNet descriptor from ``path``; returned in eval mode on ``device``.

    The file is read with ``torch.load(weights_only=True)``; the architecture is inferred from
    the weights (see :func:`remap_state_dict` for the accepted layouts) and loaded strictly.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a plain weights file (pickled objects), not a torch file, or
            its keys/shapes do not fit (the message names the path and the keys).
    """
    if path is None:  # a stage run by hand without --descriptor
        raise ValueError("--descriptor: not given; the descriptor features need its weights (.pth)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"descriptor weights not found: {path}")
    try:
        if path.suffix == ".safetensors":  # the exported form: tensors only, BasicSR key names
            from .checkpoint import read_safetensors

            raw = read_safetensors(path, device)["params"]
        else:
            raw = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: not a plain weights file (it holds pickled objects that weights_only=True "
            f"refuses to load): {str(err).splitlines()[0]}"
        ) from None
    except Exception as err:  # garbage raises KeyError, EOFError, RuntimeError, ... depending on bytes
        raise ValueError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from None
    try:
        state = remap_state_dict(raw)
        model = MSRResNet(**_infer_config(state))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    load_strict(model, state, str(path), "MSRResNet", exact_dtype=False)  # published fp16 files too
    return model.to(device).eval()


def save_descriptor(model: torch.nn.Module, path: str | Path, extra: dict | None = None) -> None:
    """Write ``{"params": model.state_dict() (on CPU), **extra}`` to ``path`` atomically.

    ``extra`` should hold only plain values (numbers, strings, lists, dicts, tensors) so that
    the file stays loadable with ``weights_only=True``; it cannot contain a ``"params"`` key.
    """
    extra = dict(extra or {})
    if "params" in extra:
        raise ValueError("extra must not contain the key 'params'")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"params": state, **extra}, tmp)
