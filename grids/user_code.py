"""Code of the user's named in the config as ``file.py:name`` or ``package.module:name``.

User-defined degradations (``function:``) and architectures (``training.arch``) are found the same
way: a ``.py`` file relative to the working directory (where the config's other paths are too),
or an importable module. The standard library is refused, so that a config cannot name
``os:system``; what the object must be (a function, a class) is checked by the caller.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def load_attribute(spec: str, base_dir: str | Path, what: str, hint: str) -> Any:
    """The object ``spec`` names. Errors start with ``{what} {spec!r}:``; ``hint`` says what a
    user's object must be, for the standard-library refusal."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr:
        raise ValueError(f"{what} {spec!r}: expected 'file.py:name' or 'package.module:name'")
    if module_part.endswith(".py"):
        path = Path(base_dir) / module_part
        if not path.is_file():
            raise FileNotFoundError(f"{what} {spec!r}: file {path} not found")
        module_spec = importlib.util.spec_from_file_location(f"grids_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        top = module_part.split(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            raise ValueError(f"{what} {spec!r}: {module_part} is part of Python's standard library; {hint}")
        module = importlib.import_module(module_part)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{what} {spec!r}: {module_part} has no attribute {attr!r}") from None


def code_file(spec: str) -> str | None:
    """The ``.py`` file of a ``file.py:name`` spec (None for a module or a built-in name): an input
    of the jobs that run it, so that editing it reruns them."""
    file_part = spec.rpartition(":")[0]
    return file_part if file_part.endswith(".py") else None
