"""What crosses into and out of the sandbox: a `Job` (one program) and its `Verdict`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.limits import DEFAULT_TIMEOUT_S


@dataclass
class Job:
    """One program for the sandbox. `key` is opaque to the sandbox and comes back with the verdict."""
    key: Any
    program: str
    timeout: float = DEFAULT_TIMEOUT_S


@dataclass
class Verdict:
    passed: bool
    result: str  # "passed" | "failed: ..." | "timed out"
    output: str = ""
    elapsed: float = 0.0
