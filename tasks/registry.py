"""The one place suites are registered. Each module of `tasks/suites/` registers its suites with `@suite("name")`;
adding a suite is adding one module there (the registry imports every module of that package)."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

from common.errors import UserError
from tasks.suite import Suite, load_jsonl_suite

_LOADERS: dict[str, Callable[[], Suite]] = {}
_LOADED: dict[str, Suite] = {}


def suite(name: str):
    """Decorator: registers a zero-argument function that returns the Suite called `name`."""
    def register(fn: Callable[[], Suite]):
        if name in _LOADERS:
            raise ValueError(f"suite {name!r} registered twice")
        _LOADERS[name] = fn
        return fn
    return register


_DISCOVERED = []


def _discover() -> None:
    """Imports every suite module once (a module imported directly before registers its suites early: that must not
    hide the others)."""
    if _DISCOVERED:
        return
    import tasks.suites

    for mod in pkgutil.iter_modules(tasks.suites.__path__):
        importlib.import_module(f"tasks.suites.{mod.name}")
    _DISCOVERED.append(True)


def names() -> list[str]:
    _discover()
    return sorted(_LOADERS)


def load_suite(spec: str) -> Suite:
    """A registered name (`humaneval`, `humanevalplus`, `mbpp`, `mbpp-full`...) or a path to a JSONL(.gz) suite."""
    _discover()
    if spec in _LOADERS:
        if spec not in _LOADED:
            _LOADED[spec] = _LOADERS[spec]()
        return _LOADED[spec]
    if spec.endswith((".jsonl", ".jsonl.gz", ".json")) or Path(spec).exists():
        return load_jsonl_suite(spec)
    raise UserError(f"unknown task suite {spec!r}: use one of {', '.join(names())} or a path to a JSONL file of tasks")


def load_suites(spec: str) -> list[Suite]:
    """`humaneval,humanevalplus,mbpp`: several suites, in the order given, each once."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise UserError("--tasks needs at least one suite name or file")
    if len(set(parts)) < len(parts):
        raise UserError(f"--tasks names a suite twice: {spec!r}")
    return [load_suite(p) for p in parts]
