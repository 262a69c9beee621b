"""Model cards a model hub accepts: the exported group models' and the descriptor's.

A card is YAML front matter in the Hugging Face model-card convention, then Markdown. The front
matter (:func:`front_matter`) holds the licence, tags, ``pipeline_tag``, the ``metrics`` reported
(PSNR, SSIM), the ``datasets`` trained on (well-formed ids, :func:`dataset_id`) and a
``model-index``: per task (one per group member) the dataset it was measured on (type a dataset id,
``config`` the degradation, ``split`` the test set) and the model's metrics beside the baseline's,
the degraded input itself (``config: input``; the descriptor's: bicubic upscaling). Every card is
checked against ``SCHEMA`` (:func:`check_front_matter`) before it is written, and a test checks
every card the package writes or ships.

The body (:func:`group_card`): what the model is, its files, the PSNR per member against the input
and the single-task model, intended use, limitations (every member it did not learn, by the rule
of :mod:`grids.learning`, and the test images it makes worse), how to load it (safetensors) and
how to cite it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import pandas as pd
import yaml

from .grouping.evidence import mean_psnr, test_rows, test_set_of
from .learning import BELOW_INPUT, HARM_DB, LEARNED, judge, learning

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$"  # a hub dataset id
METRICS = ("psnr", "ssim")
TAGS = ("image-to-image", "image-restoration", "grids")
LICENSE = "mit"  # the package's licence; the training photos' own licences: their LICENSES.md
_METRIC = {
    "type": "object",
    "required": ["type", "name", "value"],
    "properties": {
        "type": {"enum": list(METRICS)},
        "name": {"type": "string", "minLength": 1},
        "value": {"type": "number"},
        "config": {"type": "string", "minLength": 1},
    },
}
_RESULT = {
    "type": "object",
    "required": ["task", "dataset", "metrics"],
    "properties": {
        "task": {
            "type": "object",
            "required": ["type", "name"],
            "properties": {"type": {"const": "image-to-image"}, "name": {"type": "string", "minLength": 1}},
        },
        "dataset": {
            "type": "object",
            "required": ["type", "name"],
            "properties": {
                "type": {"type": "string", "pattern": ID_PATTERN},
                "name": {"type": "string", "minLength": 1},
                "config": {"type": "string", "minLength": 1},
                "split": {"type": "string", "minLength": 1},
            },
        },
        "metrics": {  # the model's PSNR, and its baseline's (a metric with a config)
            "type": "array",
            "items": _METRIC,
            "allOf": [
                {"contains": {"properties": {"type": {"const": "psnr"}}, "not": {"required": ["config"]}}},
                {"contains": {"properties": {"type": {"const": "psnr"}}, "required": ["config"]}},
            ],
        },
    },
}
SCHEMA = {  # the front matter every card must have (JSON Schema, draft 2020-12)
    "type": "object",
    "required": ["library_name", "license", "tags", "pipeline_tag", "metrics", "datasets", "model-index"],
    "properties": {
        "library_name": {"const": "grids"},
        "license": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
        "tags": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[a-z0-9_.+-]+$"}},
        "pipeline_tag": {"const": "image-to-image"},
        "metrics": {"type": "array", "items": {"enum": list(METRICS)}, "contains": {"const": "psnr"}},
        "datasets": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": ID_PATTERN}},
        "model-index": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "results"],
                "properties": {
                    "name": {"type": "string", "pattern": ID_PATTERN},
                    "results": {"type": "array", "minItems": 1, "items": _RESULT},
                },
            },
        },
    },
}
CITATION = """## Citation

The method (GRIDS) and this pipeline (its `CITATION.cff`):

```bibtex
@inproceedings{cao2024grids,
  title     = {{GRIDS}: Grouped Multiple-Degradation Restoration with Image Degradation Similarity},
  author    = {Cao, Shuo and Liu, Yihao and Zhang, Wenlong and Qiao, Yu and Dong, Chao},
  booktitle = {Computer Vision -- {ECCV} 2024},
  year      = {2024}
}
```
"""


def dataset_id(text: str) -> str:
    """``text`` as a well-formed dataset id (letters, digits, ``_.-``; other runs become ``-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-._") or "images"


def metric(kind: str, value: float, baseline: str | None = None) -> dict:
    """One model-index metric: the model's ``psnr``/``ssim``, or its ``baseline``'s (``config``)."""
    label = {"psnr": "PSNR (dB)", "ssim": "SSIM"}[kind]
    entry = {"type": kind, "name": label if baseline is None else f"{label} of the baseline: {baseline}"}
    entry["value"] = round(float(value), 4)
    return entry | ({"config": baseline} if baseline else {})


def check_front_matter(front: dict) -> None:
    """Raise ValueError naming every way ``front`` breaks ``SCHEMA``."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(front), key=lambda e: list(e.path))
    if errors:
        raise ValueError("model card front matter: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors))


def read_front_matter(card: str) -> dict:
    """The YAML front matter of a card's text (between its first two ``---`` lines)."""
    if not card.startswith("---\n"):
        raise ValueError("model card: no front matter (the text does not start with ---)")
    return yaml.safe_load(card.split("---\n")[1])


def front_matter(name: str, datasets: list[str], results: list[dict], tags: list[str] = ()) -> str:
    """A card's front matter (``results``: each ``{"task", "dataset", "metrics"}``, the dataset a
    dict, the metrics :func:`metric` entries; unknown values left out), checked."""
    index = []
    for r in results:
        metrics = [m for m in r["metrics"] if math.isfinite(m["value"])]
        index.append(
            {"task": {"type": "image-to-image", "name": r["task"]}, "dataset": r["dataset"], "metrics": metrics}
        )
    front = {
        "library_name": "grids",
        "pipeline_tag": "image-to-image",
        "tags": list(
            dict.fromkeys(["image-to-image", "image-restoration", "grids", *(dataset_id(t).lower() for t in tags)])
        ),
        "license": LICENSE,
        "datasets": list(dict.fromkeys(datasets)),
        "metrics": [k for k in METRICS if any(m["type"] == k for r in index for m in r["metrics"])],
        "model-index": [{"name": dataset_id(name), "results": index}],
    }
    check_front_matter(front)
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n"


def training_datasets(training_data: dict | None) -> list[str]:
    """The training images of a ``training.images`` section as dataset ids: scikit-image's photos,
    the package's shipped ones, a folder, the synthetic dead-leaves images."""
    from .data import SHIPPED_PHOTOS

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
    from .evaluate import IDENTITY

    test_set = test_set_of(grouping, evaluation)
    rows = test_rows(evaluation, test_set)
    means = mean_psnr(evaluation, test_set).set_index(["trained_on", "degradation"]).psnr
    ssim = rows.groupby(["trained_on", "degradation"]).ssim.mean()
    counts = rows.groupby(["trained_on", "degradation"]).size()
    inputs = rows.groupby("degradation").psnr_input.mean()
    judged = judge(rows, grouping["min_gain"]).droplevel("test_set")

    def scores(members: list[str], group: str) -> dict[str, MemberScore]:
        return {
            m: MemberScore(
                *(float(means[(m, m)]), float(means[(group, m)]), float(inputs[m]), float(ssim[(group, m)])),
                float(ssim.get((IDENTITY, m), float("nan"))),
                int(judged.harmed[(group, m)]),
                str(judged.learning[(group, m)]),
                int(counts[(group, m)]),
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
    min_gain = grouping["min_gain"]
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
                f"grouping.min_gain = {min_gain:g} dB: it restores almost nothing there."
            )
        if s.harmed:
            lines.append(f"On `{m}` it makes {s.harmed} of {s.images} test images worse by more than {HARM_DB:g} dB.")
    weak = [m for m, s in scores.items() if learning(s.single - s.identity, min_gain) != LEARNED]
    if weak and len(scores) > 1:  # a group of one is its single-task model: said above
        lines.append(
            f"The single-task model of {', '.join(weak)} gains less than grouping.min_gain = {min_gain:g} dB over "
            "its input: it did not learn, so this group's verdict is uninformative."
        )
    if scores and not lines:
        lines.append(f"Every member gains at least grouping.min_gain = {min_gain:g} dB over its input on {test_set}.")
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
