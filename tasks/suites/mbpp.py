"""MBPP (Austin et al. 2021; CC-BY-4.0, see tasks/data/mbpp/LICENSE).

- `mbpp`: the hand-verified "sanitized" subset, 427 tasks.
- `mbpp-full`: the original test split, task ids 11-510 (500 tasks), the split the paper reports on.

Task ids are `Mbpp/N`, EvalPlus's naming, N the original task id. The prompt is built as bigcode-evaluation-harness
builds it: the description and the first test assert in a docstring. The model writes the whole function; the
program is the prompt and completion, then the test imports (`test_setup_code` in mbpp-full), then every assert.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from tasks.registry import suite
from tasks.suite import Suite, Task

DATA = Path(__file__).resolve().parent.parent / "data" / "mbpp"
# bigcode-evaluation-harness's MBPP stop words: a completion that writes a whole function ends at the next
# top-level class, assert, docstring, print or if.
MBPP_STOP = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")


def prompt_of(description: str, first_test: str) -> str:
    return f'"""\n{description.strip()}\n{first_test.strip()}\n"""\n'


def entry_point(code: str, tests: list[str]) -> str:
    """The function the tests call: the first function the reference defines that the first test names."""
    defined = re.findall(r"^def\s+(\w+)\s*\(", code, flags=re.M)
    for name in defined:
        if re.search(rf"\b{re.escape(name)}\s*\(", tests[0]):
            return name
    return defined[0] if defined else ""


def make_task(task_id: int, description: str, code: str, setup: str, tests: list[str]) -> Task:
    test = "\n".join([setup.replace("\r\n", "\n").strip()] + [t.strip() for t in tests]).strip("\n")
    return Task(f"Mbpp/{task_id}", prompt_of(description, tests[0]), entry_point(code, tests), test,
                canonical_solution=code.replace("\r\n", "\n"), calls_check=False)


@suite("mbpp")
def mbpp() -> Suite:
    rows = json.loads((DATA / "sanitized-mbpp.json").read_text(encoding="utf-8"))
    tasks = tuple(make_task(r["task_id"], r["prompt"], r["code"], "\n".join(r["test_imports"]), r["test_list"])
                  for r in sorted(rows, key=lambda r: r["task_id"]))
    return Suite("mbpp", tasks, str(DATA / "sanitized-mbpp.json"), stop=MBPP_STOP)


@suite("mbpp-full")
def mbpp_full() -> Suite:
    with open(DATA / "mbpp.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    tasks = tuple(make_task(r["task_id"], r["text"], r["code"], r["test_setup_code"], r["test_list"])
                  for r in sorted(rows, key=lambda r: r["task_id"]) if 11 <= r["task_id"] <= 510)
    return Suite("mbpp-full", tasks, str(DATA / "mbpp.jsonl"), stop=MBPP_STOP)
