"""Model cards a model hub accepts: the exported group models' and the descriptor's.

A card is YAML front matter in the Hugging Face model-card convention, then Markdown. The front
matter (:func:`front_matter`) holds the licence, tags, ``pipeline_tag``, the ``metrics`` reported
(PSNR, SSIM), the ``datasets`` trained on (well-formed ids, :func:`dataset_id`) and a
``model-index``: per task (one per group member) the dataset it was measured on (type a dataset id,
``config`` the degradation, ``split`` the test set) and the model's metrics beside the baseline's,
the degraded input itself (``config: input``; the descriptor's: bicubic upscaling). Every card is
checked against ``SCHEMA`` (:func:`check_front_matter`) before it is written, and a test checks
every card the package writes or ships.

The exported group models' card body is :mod:`grids.grouping.cards`; the descriptor's is written
by :mod:`grids.train_descriptor`. This module is the format both follow.
"""

from __future__ import annotations

import math
import re

import yaml

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
