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
from collections.abc import Iterator
from contextlib import contextmanager
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
        with user_code_errors(f"{what} {spec!r}: importing {path}"):
            module_spec.loader.exec_module(module)
    else:
        top = module_part.split(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            raise ValueError(f"{what} {spec!r}: {module_part} is part of Python's standard library; {hint}")
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as err:
            if err.name and module_part.startswith(err.name):  # the module itself, not one it imports
                raise ValueError(f"{what} {spec!r}: no module named {err.name!r}") from None
            raise ValueError(f"{what} {spec!r}: importing {module_part} raised {type(err).__name__}: {err}") from None
        except (Exception, SystemExit) as err:
            raise ValueError(f"{what} {spec!r}: importing {module_part} raised {_describe(err)}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{what} {spec!r}: {module_part} has no attribute {attr!r}") from None


def _describe(err: BaseException) -> str:
    """``Type: message`` on one line (a user's message may span several)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@contextmanager
def user_code_errors(doing: str) -> Iterator[None]:
    """Run a user's code: any exception it raises, SystemExit included (a stray ``sys.exit()`` or
    ``argparse`` at import), becomes one ValueError ``{doing} raised Type: message``, so it is one
    ``error:`` line naming the file and the object instead of a traceback or a silent exit."""
    try:
        yield
    except (Exception, SystemExit) as err:
        raise ValueError(f"{doing} raised {_describe(err)}") from None


def code_file(spec: str) -> str | None:
    """The ``.py`` file of a ``file.py:name`` spec (None for a module or a built-in name): an input
    of the jobs that run it, so that editing it reruns them."""
    file_part = spec.rpartition(":")[0]
    return file_part if file_part.endswith(".py") else None
