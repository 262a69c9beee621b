"""The restoration models' checkpoint file: what it holds, writing it, reading it, building its model.

Training, evaluation, selection, ``grids restore`` and the final export all read the same files;
the format lives here so that none of them imports the trainer to load a model.

A checkpoint is one ``torch.save`` dict of tensors, numbers and strings only, so it is read with
``torch.load(weights_only=True)`` (no pickled code runs). Training checkpoints
(``results/models/{group}/model.pth``, and the resume file ``results/resume/{group}.pth``) hold:

* ``params``: the model's ``state_dict`` on the CPU;
* ``optimizer``: the optimiser's ``state_dict``; ``step``: the optimisation steps done;
* ``numpy_rng`` (the data generator's ``bit_generator.state`` as JSON), ``torch_rng`` (the
  degradation noise generator's state) and ``torch_cpu_rng`` (``torch.get_rng_state()``): what an
  exact resume needs;
* ``arch`` (a name of :data:`grids.archs.ARCHS`, or a user's ``file.py:Class``) and ``arch_kwargs``
  (its keyword arguments, JSON with sorted keys): what :func:`load_model` builds the model from;
* the trainer's metadata: ``group``, ``recipe`` and ``degradations`` (JSON), ``seed``,
  ``precision`` (``bf16`` or ``fp32``), ``grids_version``; a resume checkpoint adds ``log`` (JSON
  rows of the training log so far).

The exported final models (``results/final/models/{group}.pth``, written by
:func:`grids.grouping.rounds.export_models`) are slim: ``params``, ``arch``, ``arch_kwargs`` and
what the group is, without optimiser or RNG state; :func:`load_model` reads both kinds. A file
without ``arch``/``arch_kwargs``/``params`` (a BasicSR or official release holds weights only) is
refused with a message that says so, rather than guessed at.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import io
from .archs import load_strict, resolve_arch

MODEL_KEYS = ("arch", "arch_kwargs", "params")  # what load_model needs from a file


def build_model(arch: str, kwargs: dict) -> torch.nn.Module:
    """A fresh model of architecture ``arch``: a name of :data:`grids.archs.ARCHS` or a user's
    ``file.py:Class`` (relative to the working directory) / ``package.module:Class``."""
    return resolve_arch(arch)(**kwargs)


def save_checkpoint(
    path: str | Path, model, optimiser, step: int, data_state: tuple[str, torch.Tensor], meta: dict
) -> None:
    """Write a training checkpoint atomically (a killed writer leaves the previous file intact).

    ``data_state``: the data RNGs' ``(numpy state JSON, torch generator state)``
    (:meth:`grids.train.Prefetcher.state`); ``meta``: the trainer's metadata (module docstring).
    """
    state = {
        "params": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimiser.state_dict(),
        "step": step,
        "numpy_rng": data_state[0],
        "torch_rng": data_state[1],
        "torch_cpu_rng": torch.get_rng_state(),
        **meta,
    }
    with io.atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:  # torch's writer reports a failed write (disk full) this way
            raise io.OutputError(f"{path}: cannot write ({str(err).splitlines()[0]})") from None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """A checkpoint file, read with ``weights_only=True`` (no pickled code).

    A file that cannot be read that way (a pickle payload, truncation, garbage) is one ValueError
    naming it; a missing file stays a FileNotFoundError.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # weights_only refusal (pickle payload), truncation, garbage
        detail = str(err).splitlines()[0] if str(err) else ""
        detail = detail if len(detail) <= 100 else detail[:97] + "..."
        raise ValueError(f"{path}: not a loadable GRIDS checkpoint ({type(err).__name__}: {detail})") from None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The model stored in a checkpoint (architecture from its metadata), eval mode, and the file's dict.

    A file without this package's metadata, or whose weights do not fit the architecture it names,
    is a ValueError naming the file and what it found.
    """
    state = load_checkpoint(path, device)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a GRIDS model checkpoint (it holds a {type(state).__name__}, not a dict)")
    lacking = [key for key in MODEL_KEYS if key not in state]
    if lacking:
        keys = sorted(str(k) for k in state)
        shown = keys[:6] + (["..."] if len(keys) > 6 else [])
        raise ValueError(
            f"{path}: not a GRIDS model checkpoint: no {', '.join(lacking)} entr{'y' if len(lacking) == 1 else 'ies'} "
            f"(its top-level keys: {shown}); a BasicSR/official file holds weights only (params / params_ema), "
            "without the architecture"
        )
    try:
        arch_kwargs = json.loads(state["arch_kwargs"])
        model = build_model(state["arch"], arch_kwargs)
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path}: its architecture {state['arch']!r} {state['arch_kwargs']} cannot be built: {err}"
        ) from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    load_strict(model, state["params"], str(path), f"{state['arch']} {arch_kwargs}")
    return model.to(device).eval(), state
