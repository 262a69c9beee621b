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
  (its keyword arguments, JSON with sorted keys): what :func:`load_model` builds the model from (a
  user's class only when the caller's config names it: a weights file names code, never brings it);
* the trainer's metadata: ``group``, ``recipe`` and ``degradations`` (JSON), ``seed``,
  ``precision`` (``bf16`` or ``fp32``), ``grids_version``; a resume checkpoint adds ``log`` (JSON
  rows of the training log so far).

The exported final models (``results/final/models/{group}.pth``, written by
:func:`grids.grouping.export.export_models`) are slim: ``params``, ``arch``, ``arch_kwargs`` and what the group is,
without optimiser or RNG state; :func:`load_model` reads both kinds. Each is exported a second
time as ``{group}.safetensors`` (the format model hubs and traiNNer-redux ship): the same tensors
under the same BasicSR key names, weights only, and the rest as the file's string metadata
(``arch``, ``arch_kwargs`` JSON, ``members`` JSON, ...; :func:`write_safetensors`). Every reader
here (:func:`load_checkpoint`, so :func:`load_model`, ``grids restore`` and :func:`import_weights`
for published weights) takes either file by its suffix. Beside both sits the model card
``{group}.md`` (:mod:`grids.grouping.cards`), whose YAML front matter follows the Hugging Face model-card
convention. A file
without ``arch``/``arch_kwargs``/``params`` (a BasicSR or official release holds weights only) is
refused with a message that says so, rather than guessed at: :func:`import_weights` turns such a
file into a GRIDS checkpoint first, naming the architecture (a published-weights baseline).

    python -m grids.checkpoint import --weights W.pth --arch rrdbnet --arch-kwargs '{"scale": 4}' \
        --group realesrgan --out results/baselines/realesrgan/model.pth
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Collection
from pathlib import Path

import torch

from . import io
from .archs import ARCHS, FromLowResolution, build_user_arch, load_strict, resolve_arch

MODEL_KEYS = ("arch", "arch_kwargs", "params")  # what load_model needs from a file
SAFETENSORS = ".safetensors"
# metadata entries that are not strings in a .pth file: JSON in the safetensors metadata
JSON_METADATA = ("members", "delta")


def build_model(arch: str, kwargs: dict) -> torch.nn.Module:
    """A fresh model of architecture ``arch``: a name of :data:`grids.archs.ARCHS` or a user's
    ``file.py:Class`` (relative to the working directory) / ``package.module:Class``."""
    cls = resolve_arch(arch)
    return cls(**kwargs) if arch in ARCHS else build_user_arch(cls, arch, kwargs)


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


def write_safetensors(path: str | Path, params: dict[str, torch.Tensor], meta: dict) -> None:
    """``params`` as a safetensors file at ``path`` (atomically), ``meta`` as its metadata: strings
    kept, anything else as JSON (safetensors metadata holds strings only)."""
    from safetensors.torch import save

    metadata = {"format": "pt", **{k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}}
    tensors = {k: v.detach().cpu().contiguous() for k, v in params.items()}
    with io.atomic_path(path) as tmp:
        # bytes written by Python: the file gets the usual permissions (save_file makes it 0600)
        tmp.write_bytes(save(tensors, metadata=metadata))


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """A safetensors file as the dict a ``.pth`` checkpoint gives: the tensors under ``params``,
    the metadata beside them (``members`` and ``delta`` decoded back from JSON)."""
    from safetensors import safe_open

    params = {}
    with safe_open(str(path), framework="pt", device=str(device)) as fh:
        meta = dict(fh.metadata() or {})
        for key in fh.keys():
            params[key] = fh.get_tensor(key)
    meta.pop("format", None)
    for key in JSON_METADATA:
        if key in meta:
            meta[key] = json.loads(meta[key])
    return {"params": params, **meta}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """A checkpoint file: a ``.pth`` read with ``weights_only=True`` (no pickled code), or a
    ``.safetensors`` file (:func:`read_safetensors`).

    A file that cannot be read that way (a pickle payload, truncation, garbage) is one ValueError
    naming it; a missing file stays a FileNotFoundError.
    """
    try:
        if Path(path).suffix == SAFETENSORS:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path}: no such file")
            return read_safetensors(path, device)
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # weights_only refusal (pickle payload), truncation, garbage
        detail = str(err).splitlines()[0] if str(err) else ""
        detail = detail if len(detail) <= 100 else detail[:97] + "..."
        raise ValueError(f"{path}: not a loadable GRIDS checkpoint ({type(err).__name__}: {detail})") from None


def load_model(
    path: str | Path, device: str | torch.device = "cpu", archs: Collection[str] = ()
) -> tuple[torch.nn.Module, dict]:
    """The model stored in a checkpoint (architecture from its metadata), eval mode, and the file's dict.

    A weights file names an architecture, never code: a built-in name, or one of ``archs``, the
    user architectures the caller trusts (those its config names). Any other ``file.py:Class`` or
    ``package.module:Class`` is refused before anything is imported. The sha256 recorded by a model
    card beside the file (:func:`check_card_digest`), and every tensor's name, dtype and shape, are
    checked before the weights are loaded. Each problem is one ValueError naming the file.
    """
    check_card_digest(path)
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
    arch, arch_kwargs = named_architecture(state, path, archs)
    params = state["params"]
    if not isinstance(params, dict) or not all(isinstance(v, torch.Tensor) for v in params.values()):
        raise ValueError(f"{path}: its params entry is not a dict of tensors")
    try:
        model = build_model(arch, arch_kwargs)
    except TypeError as err:
        raise ValueError(f"{path}: its architecture {arch!r} {state['arch_kwargs']} cannot be built: {err}") from None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    load_strict(model, params, str(path), f"{arch} {arch_kwargs}", exact_dtype=True)
    if getattr(model, "scale", 1) > 1:  # a published x2/x4 network meets same-size inputs this way
        model = FromLowResolution(model)
    return model.to(device).eval(), state


def named_architecture(state: dict, path: str | Path, archs: Collection[str]) -> tuple[str, dict]:
    """The architecture a checkpoint names and its keyword arguments, when they may be built:
    ``arch`` a built-in name or one of the trusted ``archs`` (a weights file cannot bring code),
    ``arch_kwargs`` a JSON object of finite numbers. Otherwise one ValueError naming the file."""
    arch = state["arch"]
    if not isinstance(arch, str):
        raise ValueError(f"{path}: its arch entry is a {type(arch).__name__}, not an architecture name")
    if ":" in arch and arch not in archs:
        trusted = f" nor the config's ({', '.join(sorted(archs))})" if archs else ""
        raise ValueError(
            f"{path}: names the architecture {arch!r}, which is neither built in ({', '.join(ARCHS)}){trusted}; "
            "a weights file may not bring code: name the architecture in your config (training.arch) to trust it"
        )
    arch_kwargs = finite_json(state["arch_kwargs"], f"{path}: its arch_kwargs")
    if not isinstance(arch_kwargs, dict):
        raise ValueError(f"{path}: its arch_kwargs is a JSON {type(arch_kwargs).__name__}, not an object")
    return arch, arch_kwargs


def finite_json(text, what: str):
    """``text`` parsed as strict JSON: no NaN or Infinity (which Python's json accepts), no number
    that overflows to infinity. Otherwise one ValueError starting with ``what``."""

    def finite(token: str) -> float:
        value = float(token)
        if not math.isfinite(value):
            raise ValueError(token)
        return value

    def refuse(token: str):
        raise ValueError(token)

    if not isinstance(text, str):
        raise ValueError(f"{what} is a {type(text).__name__}, not JSON text")
    try:
        return json.loads(text, parse_float=finite, parse_constant=refuse)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} is not JSON ({err})") from None
    except ValueError as err:
        raise ValueError(f"{what} holds {err}: only finite numbers are accepted") from None


def check_card_digest(path: str | Path) -> None:
    """Refuse a model file whose sha256 differs from the one the model card beside it records
    (``{stem}.md``, :func:`grids.grouping.cards.group_card`): it was changed or replaced after export, so neither its
    weights nor its metadata are what the card describes. No card, or no line for this file: no check."""
    card = Path(path).with_suffix(".md")
    if not card.is_file() or not Path(path).is_file():
        return
    recorded = re.search(rf"file: `{re.escape(Path(path).name)}`, sha256 `([0-9a-f]{{64}})`", card.read_text())
    if recorded is None:
        return
    actual = io.sha256_file(path)
    if actual != recorded.group(1):
        raise ValueError(
            f"{path}: its sha256 {actual[:16]}... differs from the {recorded.group(1)[:16]}... its model card "
            f"{card} records: the file was changed after export; export it again (snakemake final_models)"
        )


def published_state_dict(state, source: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a published file: a bare state dict, or BasicSR's ``params_ema`` (preferred:
    the averaged weights its authors evaluate) / ``params`` (official Restormer files too); a
    ``module.`` prefix (a DataParallel save) is removed. Anything else is one ValueError."""
    if isinstance(state, dict) and ("params_ema" in state or "params" in state):
        state = state["params_ema"] if "params_ema" in state else state["params"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__
        keys = sorted(str(k) for k in state)[:6] if isinstance(state, dict) else []
        raise ValueError(
            f"{source}: not a state dict nor a BasicSR-style file (a {kind}"
            + (f" with keys {keys}" if keys else "")
            + "); expected tensors by name, or params_ema / params holding them"
        )
    if all(str(k).startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def import_weights(source: str | Path, arch: str, arch_kwargs: dict, group: str, out: str | Path) -> dict:
    """Write published weights (``source``, any form :func:`published_state_dict` reads) as a GRIDS
    checkpoint of ``arch`` ``arch_kwargs`` at ``out``, after checking that they fit it exactly
    (one line naming the first missing and unexpected keys otherwise). ``group`` is what its
    evaluation rows are labelled with; ``published`` records the source and its sha256."""
    weights = published_state_dict(load_checkpoint(source), source)
    model = build_model(arch, arch_kwargs)
    load_strict(model, weights, str(source), f"{arch} {arch_kwargs}", exact_dtype=False)
    state = {
        "params": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "arch": arch,
        "arch_kwargs": json.dumps(arch_kwargs, sort_keys=True),
        "group": group,
        "published": json.dumps({"source": str(source), "sha256": io.sha256_file(source)}, sort_keys=True),
    }
    with io.atomic_path(out) as tmp:
        torch.save(state, tmp)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.checkpoint", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("import", help="published weights -> a GRIDS checkpoint of a named architecture")
    p.add_argument("--weights", required=True, help="the published file (.pth or .safetensors)")
    p.add_argument("--arch", required=True, help="its architecture (a built-in name or file.py:Class)")
    p.add_argument("--arch-kwargs", default="{}", help="its keyword arguments, JSON")
    p.add_argument("--group", required=True, help="the label of its evaluation rows (the baseline's name)")
    p.add_argument("--out", required=True, help="the checkpoint to write")
    args = parser.parse_args(argv)
    io.check_output_path(args.out, [args.weights])
    state = import_weights(args.weights, args.arch, json.loads(args.arch_kwargs), args.group, args.out)
    count = sum(v.numel() for v in state["params"].values())
    print(f"{args.weights}: {args.arch} {args.arch_kwargs}, {count:,} parameters -> {args.out}")
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
