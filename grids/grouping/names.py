"""Degradation groups: canonical names (members sorted, joined with ``+``), kept torch-free so the
workflow can import them when it is parsed."""

from __future__ import annotations

import re
from collections.abc import Iterable

SEPARATOR = "+"
IDENTITY = "input"  # the model name (`trained_on`) of the degraded input itself: no restoration
CLEAN = "clean"  # the clean images: the similarity's reference set, and a test case of their own
IDENTITY_GROUP = "identity"  # the choice "nothing to restore": the input is returned unchanged


def group_name(members: Iterable[str]) -> str:
    """Canonical name of a group: ``group_name(["jpeg", "sr"]) == "jpeg+sr"``."""
    return SEPARATOR.join(sorted(set(members)))


def group_members(name: str) -> list[str]:
    return name.split(SEPARATOR)


def group_pattern(names: Iterable[str]) -> str:
    """A regex matching any ``+``-joined sequence of ``names`` (a Snakemake wildcard constraint)."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return f"(?:{alternatives})(?:\\{SEPARATOR}(?:{alternatives}))*"


def mix_all_group(names: Iterable[str]) -> str | None:
    """The mix-all baseline's group: every degradation, a model of its own only with more than one
    (with one degradation it would be that degradation's single-task model: None)."""
    names = set(names)
    return group_name(names) if len(names) > 1 else None


def upper_bound_groups(names: list[str]) -> list[str]:
    """The models of the upper-bound table: one per degradation and the mix-all baseline."""
    return [*names, *filter(None, [mix_all_group(names)])]
