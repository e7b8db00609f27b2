"""JSON Lines: strict reading of files users give us, tolerant reading of our own append-only caches."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from common.errors import UserError


def iter_json_objects(path, lines: Iterable[str], what: str) -> Iterator[tuple[int, dict]]:
    """(line number, dict) for each non-blank line; a line that is not a JSON object is a UserError naming it."""
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


def read_log(path: str | Path, required: tuple[str, ...] = ()) -> Iterator[dict]:
    """Rows of an append-only log we wrote ourselves. A run killed mid-write leaves at most one torn line: it is
    skipped (its work is done again), as is any row lacking a `required` field."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and all(k in row for k in required):
                yield row
