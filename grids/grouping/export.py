"""The final group models as users download them: ``results/final/models/{group}.pth`` (slim),
``{group}.safetensors`` (the same tensors) and ``{group}.md`` (the model card), from the search's
final groups and their training checkpoints::

    results/final/models/
        jpeg+sr.pth            params, arch, arch_kwargs, group, members, delta, drops, gains, ...
        jpeg+sr.safetensors    the same tensors; the rest as string metadata
        jpeg+sr.md             the card: front matter, PSNR per member, both files' sha256
        gaussian_noise.pth ... (one set per final group; an earlier partition's files are removed)

The file format is :mod:`grids.checkpoint`'s; the card is :mod:`grids.grouping.cards`'. Written by
``python -m grids.grouping.rounds export`` (rule ``export_group``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from .. import io
from ..checkpoint import SAFETENSORS, load_checkpoint, write_safetensors
from .cards import group_card, member_scores
from .names import group_members

EXPORT_SUFFIXES = (".pth", SAFETENSORS, ".md")  # a final group's files in results/final/models/


def export_models(
    groups: pd.DataFrame,
    model_files: dict[str, str | Path],
    out_dir: str | Path,
    evaluation: pd.DataFrame,
    grouping: dict,
    config_hash: str = "",
    training_data: dict | None = None,
) -> list[Path]:
    """Every final group's model (its training checkpoint in ``model_files``, by group name) as
    :func:`export_model` writes it, into ``out_dir``, and no file of a group of an earlier
    partition left beside them. Returns the ``.pth`` paths; a missing model writes nothing."""
    names = list(dict.fromkeys(groups.group))
    for group in names:
        source = model_files.get(group)
        if source is None or not Path(source).is_file():
            raise FileNotFoundError(f"model of group {group!r} not found: {source or 'no file given'}")
    out_dir = Path(out_dir)
    for group in names:
        files = [out_dir / f"{group}{suffix}" for suffix in EXPORT_SUFFIXES]
        export_model(group, model_files[group], *files, groups, evaluation, grouping, config_hash, training_data)
    return [out_dir / f"{group}.pth" for group in names]


def export_model(
    group: str,
    source: str | Path,
    pth: str | Path,
    safetensors: str | Path,
    card: str | Path,
    groups: pd.DataFrame,
    evaluation: pd.DataFrame,
    grouping: dict,
    config_hash: str = "",
    training_data: dict | None = None,
) -> None:
    """Write final group ``group``'s model (its training checkpoint ``source``) as ``pth`` (slim),
    ``safetensors`` (the same tensors) and the model card ``card`` (:func:`grids.grouping.cards.group_card`),
    each file atomically; then remove, from their folder, the files of groups not in ``groups``
    (an earlier partition's).

    The slim file holds the weights under ``params`` (what BasicSR-style loaders read), the
    architecture and its keyword arguments, and what the group is: ``group``, ``members``,
    ``delta``, ``drops`` and ``gains`` (dB per member against its single-task model and against
    the input, on the grouping test set of ``evaluation``, JSON), ``recipe``, ``degradations`` and
    ``config_hash``; no optimizer or RNG state.
    """
    grouping, scores_of = member_scores(evaluation, grouping)
    full = load_checkpoint(source)
    members = group_members(group)
    scores = scores_of(members, group)
    slim = {
        "params": full["params"],
        "arch": full["arch"],
        "arch_kwargs": full["arch_kwargs"],
        "group": group,
        "members": members,
        "delta": float(grouping["delta"]),
        "drops": json.dumps({m: s.single - s.grouped for m, s in scores.items()}, sort_keys=True),
        "gains": json.dumps({m: s.grouped - s.identity for m, s in scores.items()}, sort_keys=True),
        "recipe": full.get("recipe", ""),
        "degradations": full.get("degradations", ""),
        "config_hash": config_hash,
        "grids_version": full.get("grids_version", ""),
    }
    with io.atomic_path(pth) as tmp:
        torch.save(slim, tmp)
    write_safetensors(safetensors, slim["params"], {k: v for k, v in slim.items() if k != "params"})
    digests = {suffix: io.sha256_file(path) for suffix, path in ((".pth", pth), (SAFETENSORS, safetensors))}
    with io.atomic_path(card) as tmp:
        tmp.write_text(group_card(slim, scores, digests, training_data, grouping))
    _remove_other_partitions(Path(pth).parent, set(groups.group))


def _remove_other_partitions(folder: Path, current: set[str]) -> None:
    """The exported files in ``folder`` of groups not in ``current``: an earlier partition's models,
    which would otherwise be shared beside the current ones."""
    for path in folder.iterdir():
        suffix = next((s for s in EXPORT_SUFFIXES if path.name.endswith(s)), None)
        if suffix and not path.name.startswith(".") and path.name[: -len(suffix)] not in current:
            path.unlink(missing_ok=True)


def exported_gains(folder: str | Path, groups: list[str]) -> dict[str, dict[str, float]]:
    """Each final group's gain over the degraded input per member (dB, on the grouping test set), as
    its export records them: the safetensors file's metadata (nothing unpickled), else the .pth
    beside it. A group without an export is left out."""
    from safetensors import safe_open

    found = {}
    for group in groups:
        stem = Path(folder) / group
        if stem.with_suffix(SAFETENSORS).is_file():
            with safe_open(str(stem.with_suffix(SAFETENSORS)), framework="pt") as f:
                gains = (f.metadata() or {}).get("gains")
        elif stem.with_suffix(".pth").is_file():
            gains = load_checkpoint(stem.with_suffix(".pth")).get("gains")
        else:
            continue
        if gains:
            found[group] = {member: float(gain) for member, gain in json.loads(gains).items()}
    return found
