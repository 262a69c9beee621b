"""The exported group models' model card (``results/final/models/{group}.md``).

The front matter follows :mod:`grids.cards` (checked against its schema before writing). The body
(:func:`group_card`): what the model is, its files, the PSNR per member against the input and the
single-task model, intended use, limitations (every member it did not learn, by the rule of
:mod:`grids.learning`, and the test images it makes worse), how to load it (safetensors) and how to
cite it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from ..cards import CITATION, dataset_id, front_matter, metric
from ..data import SHIPPED_PHOTOS
from ..learning import BELOW_INPUT, HARM_DB, LEARNED, judge, learning
from .evidence import mean_psnr, test_rows, test_set_of
from .names import IDENTITY


def training_datasets(training_data: dict | None) -> list[str]:
    """The training images of a ``training.images`` section as dataset ids: scikit-image's photos,
    the package's shipped ones, a folder, the synthetic dead-leaves images."""
    data = training_data or {}
    names = [f"{'grids-photos' if p in SHIPPED_PHOTOS else 'scikit-image'}-{p}" for p in data.get("photos") or []]
    names += [f"folder-{str(data['folder']).rstrip('/').rsplit('/', 1)[-1]}"] if data.get("folder") else []
    names += ["dead-leaves-synthetic"] if (data.get("dead_leaves") or {}).get("count", 0) else []
    return [dataset_id(n) for n in names] or ["unspecified"]


@dataclass(frozen=True)
class MemberScore:
    """One group member on the grouping test set: mean PSNR of the single-task model, of the group
    model and of the input; mean SSIM of the group model and of the input (NaN without the input's
    evaluation); the group model's harmed test images and learning outcome (:mod:`grids.learning`)."""

    single: float
    grouped: float
    identity: float
    ssim: float
    ssim_input: float
    harmed: int
    learning: str
    images: int


def member_scores(evaluation: pd.DataFrame, grouping: dict):
    """``grouping`` with its test set named (the first evaluated where the config leaves it out),
    and ``(members, group) -> {member: MemberScore}`` on that set."""
    test_set = test_set_of(grouping, evaluation)
    rows = test_rows(evaluation, test_set)
    means = mean_psnr(evaluation, test_set).set_index(["trained_on", "degradation"]).psnr
    ssim = rows.groupby(["trained_on", "degradation"]).ssim.mean()
    counts = rows.groupby(["trained_on", "degradation"]).size()
    inputs = rows.groupby("degradation").psnr_input.mean()
    judged = judge(rows, grouping["min_learned_gain"]).droplevel("test_set")

    def scores(members: list[str], group: str) -> dict[str, MemberScore]:
        return {
            m: MemberScore(
                single=float(means[(m, m)]),
                grouped=float(means[(group, m)]),
                identity=float(inputs[m]),
                ssim=float(ssim[(group, m)]),
                ssim_input=float(ssim.get((IDENTITY, m), float("nan"))),
                harmed=int(judged.harmed[(group, m)]),
                learning=str(judged.learning[(group, m)]),
                images=int(counts[(group, m)]),
            )
            for m in members
        }

    return {**grouping, "test_set": test_set}, scores


def group_card(slim: dict, scores: dict[str, MemberScore], digests: dict[str, str], training_data, grouping) -> str:
    """The model card of one exported group model: front matter, then Markdown (module doc)."""
    members, test_set = slim["members"], grouping["test_set"]
    results = [
        {
            "task": f"Image restoration: {m}",
            "dataset": {
                "type": dataset_id(f"grids-{test_set}"),
                "name": f"{test_set}: {m}",
                "config": m,
                "split": "test",
            },
            "metrics": [
                metric("psnr", s.grouped),
                metric("ssim", s.ssim),
                metric("psnr", s.identity, "input"),
                metric("ssim", s.ssim_input, "input"),
            ],
        }
        for m, s in scores.items()
    ]
    text = front_matter(f"grids-{slim['group']}", training_datasets(training_data), results, members)
    text += f"# GRIDS group model: {slim['group']}\n\n"
    text += (
        "Restores images degraded by any one of: " + ", ".join(f"`{m}`" for m in members) + ".\n"
        if len(members) > 1
        else f"The single-task model of `{members[0]}` (a group of one).\n"
    )
    for suffix, digest in digests.items():
        text += f"\n- file: `{slim['group']}{suffix}`, sha256 `{digest}`"
    text += "\n- the same weights in both files; `.safetensors` keeps the rest as its metadata\n"
    text += f"- architecture: `{slim['arch']}` {slim['arch_kwargs']}; weights under `params` (no optimizer state)\n"
    text += "- input and output: RGB in [0, 1], (B, 3, H, W), same size\n"
    text += f"- training recipe: `{slim['recipe']}`\n"
    if training_data is not None:
        text += f"- training data (clean images, degraded online): `{json.dumps(training_data, sort_keys=True)}`\n"
    text += f"- degradations as configured: `{slim['degradations']}`\n"
    text += f"- config hash (sha256 of the validated config): `{slim['config_hash']}`\n"
    if scores:
        text += _psnr_section(slim, scores, test_set)
    text += _intended_use(members) + _limitations(scores, grouping, test_set)
    return text + _how_to_load(slim["group"]) + "\n" + CITATION


def _psnr_section(slim: dict, scores: dict[str, MemberScore], test_set: str) -> str:
    text = (
        f"\n## PSNR per member on {test_set} (dB)\n\nA group is accepted when no member loses more "
        f"than delta = {slim['delta']:g} dB against its single-task model. `input` is the degraded "
        "image itself: `gain` is what this model restores over doing nothing; `harmed` counts the test images "
        f"it makes worse than their input by more than {HARM_DB:g} dB.\n\n"
        "| member | input | single-task | this model | gain | harmed | drop | learned |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    for m, s in scores.items():
        text += (
            f"| {m} | {s.identity:.3f} | {s.single:.3f} | {s.grouped:.3f} | {s.grouped - s.identity:+.3f} "
            f"| {s.harmed} of {s.images} | {s.single - s.grouped:+.3f} | {s.learning} |\n"
        )
    return text


def _intended_use(members: list[str]) -> str:
    return (
        "\n## Intended use\n\n"
        f"Restoring RGB photographs degraded by {', '.join(f'`{m}`' for m in members)}, at the strengths "
        "configured for training (above), as one model of the partition the GRIDS search found. `grids restore` "
        "chooses among the final group models for an image of unknown degradation and flags inputs unlike the "
        "training degradations. Not intended for other degradations, nor as a state-of-the-art restorer: it is "
        "a research artefact of the configured recipe and training images.\n"
    )


def _limitations(scores: dict[str, MemberScore], grouping: dict, test_set: str) -> str:
    """Every member the model did not learn (or makes worse), its harmed images, weak single-task models."""
    min_gain = grouping["min_learned_gain"]
    lines = []
    for m, s in scores.items():
        if s.learning == BELOW_INPUT:
            lines.append(
                f"**Did not learn `{m}`: it makes it worse** ({s.grouped - s.identity:+.2f} dB against the degraded "
                "input): do not use it for this degradation (a failed mixed training)."
            )
        elif s.learning != LEARNED:
            lines.append(
                f"**Did not learn `{m}`**: it gains {s.grouped - s.identity:+.2f} dB over the degraded input, below "
                f"grouping.min_learned_gain = {min_gain:g} dB: it restores almost nothing there."
            )
        if s.harmed:
            lines.append(f"On `{m}` it makes {s.harmed} of {s.images} test images worse by more than {HARM_DB:g} dB.")
    weak = [m for m, s in scores.items() if learning(s.single - s.identity, min_gain) != LEARNED]
    if weak and len(scores) > 1:  # a group of one is its single-task model: said above
        lines.append(
            f"The single-task model of {', '.join(weak)} gains less than grouping.min_learned_gain = {min_gain:g} dB "
            "over its input: it did not learn, so this group's verdict is uninformative."
        )
    if scores and not lines:
        lines.append(
            f"Every member gains at least grouping.min_learned_gain = {min_gain:g} dB over its input on {test_set}."
        )
    lines.append(
        f"Measured on {test_set} only (PSNR/SSIM on RGB uint8, no border cropped): a small test set; "
        "the training images are few, so photographs unlike them may be restored worse."
    )
    return "\n## Limitations\n\n" + "".join(f"- {line}\n" for line in lines)


def _how_to_load(group: str) -> str:
    return f"""
## How to load

```python
from grids.checkpoint import load_model

model, meta = load_model("{group}.safetensors")  # the architecture and members from its metadata
# model(x): x RGB in [0, 1], (B, 3, H, W); or `grids restore IMAGE` picks the group itself

from safetensors.torch import load_file

state = load_file("{group}.safetensors")  # the weights alone, BasicSR key names
```
"""
