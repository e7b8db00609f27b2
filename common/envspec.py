"""EnvSpec: what a suite's tests need installed in the sandbox (pinned Python packages, the modules worth importing
once before the worker forks, environment variables, larger per-sample limits). Declared by a suite (`tasks`), built
into an image by the sandbox (`sandbox/envimage.py`): the shape both sides share."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([A-Za-z0-9.+!_-]+)$")


@dataclass(frozen=True)
class EnvSpec:
    name: str  # short, lower-case: part of the image tag (`codeparrot-sandbox-env:NAME-HASH`)
    requirements: tuple[str, ...]  # every package pinned, `name==version`, one per entry (a lock, not ranges)
    preload: tuple[str, ...] = ()  # modules imported by the worker before its zygote forks (warm interpreter)
    env: tuple[tuple[str, str], ...] = ()  # variables every sample of this environment sees
    limits: tuple[tuple[str, int], ...] = ()  # per-sample limits raised for this environment (memory_mb, nproc...)
    debian: tuple[str, ...] = ()  # Debian packages, where a suite needs them (installed with the offline base)
    files: tuple[tuple[str, str], ...] = ()  # (path in the image, file on the host): data a test reads offline
    note: str = field(default="", compare=False)  # where the pins come from, for the summary

    def __post_init__(self):
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.name):
            raise ValueError(f"environment name {self.name!r}: lower-case letters, digits, '.', '_', '-' only")
        for req in self.requirements:
            if not _REQ.match(req):
                raise ValueError(f"environment {self.name}: {req!r} is not pinned as name==version")

    def packages(self) -> dict[str, str]:
        """name (normalised as pip does) -> pinned version."""
        out = {}
        for req in self.requirements:
            m = _REQ.match(req)
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(3)
        return out

    def to_dict(self) -> dict:
        """The spec as it is addressed: a shipped file by its path in the image and its content's digest."""
        d = asdict(self)
        d.pop("note")
        d["files"] = [[dest, hashlib.sha256(Path(src).read_bytes()).hexdigest()] for dest, src in self.files]
        return d

    @cached_property
    def hash(self) -> str:
        """Content address of the whole spec (not of the note): a verdict cache and a calibration belong to it."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    @cached_property
    def image_hash(self) -> str:
        """Content address of what the image holds (packages, files): preload, variables and limits are the
        worker's run-time settings (`runtime()`), so changing them builds nothing."""
        d = self.to_dict()
        content = {k: d[k] for k in ("name", "requirements", "debian", "files")}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]

    def runtime(self) -> dict:
        """What the worker applies at start-up, before its zygote forks (sandbox/worker/loop.py)."""
        return {"name": self.name, "preload": list(self.preload), "env": [list(kv) for kv in self.env]}


def read_requirements(text: str) -> tuple[str, ...]:
    """A pinned requirements file's entries: comments and blank lines dropped."""
    return tuple(line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip())
