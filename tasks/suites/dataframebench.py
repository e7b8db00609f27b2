"""DataFrameBench 0.1.1 (CC-BY-4.0, see tasks/data/dataframebench/SOURCE.md): 100 BigCodeBench problems rewritten so
that neither the statement nor the tests name a dataframe library, each with a pandas and a polars reference.

As the package itself evaluates it (dataframebench 0.1.1: prompt.py, parser.py, sandbox.py, evaluate.py):
- The prompt is an instruction (statement, a line naming the library, the stub in a fence); its two placeholders are
  filled for the condition: `dataframebench` leaves the choice to the model (what the benchmark measures),
  `dataframebench-pandas` and `-polars` pin one library, in prose and as the stub's import line.
- The model answers with the whole function. Its code is drawn from the answer as the package's parser does it
  (reasoning tags cut off, then of the fenced python or untagged blocks the longest that parses), not by
  harness/chat.py's sanitiser: the package judges the block as it is (a demo under `if __name__ == "__main__":`
  runs too) and judges an answer without a fenced block as failed without running it.
- The program is the package's: a headless matplotlib header, the code, the task's unittest `test_code`, then
  `unittest.main()`, run as the interpreter's `__main__` module (as `python -` runs it). It passes only when that
  unittest run ran its tests and every one passed; the package's exit code 0 is not enough here (a program that
  calls `sys.exit(0)` before the tests passes there and fails here, as DESIGN.md wants).

The tests import pandas or polars (the solution's), matplotlib, seaborn, scikit-learn, statsmodels...: every task
runs on one environment, pinned in tasks/data/dataframebench/requirements-dataframebench.txt.
"""
from __future__ import annotations

import ast
import gzip
import json
import re
import sys
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from common.envspec import EnvSpec, read_requirements
from common.errors import UserError
from tasks.registry import suite
from tasks.suite import Suite, Task

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "dataframebench"
LIBRARIES = ("pandas", "polars")  # the two the references are written in: each a pinned condition of its own

# The condition placeholders and what the package fills them with (prompt.py): the benchmark's wording, kept exact.
IMPORT_PLACEHOLDER, INSTRUCTION_PLACEHOLDER = "{library_import}", "{library_instruction}"
IMPORT_LINES = {"pandas": "import pandas as pd", "polars": "import polars as pl"}
INSTRUCTION_LINE = "Use {library} as the data processing library in your solution."
FREE_IMPORT = "import ___  # you MUST import and use a data processing library here - which one is your choice"
FREE_INSTRUCTION = "Choose, import and use a data processing library in your solution."

# Imported once per container: pandas, polars, pyplot and sklearn take most of a second each otherwise. statsmodels
# (4 tasks) is left to the tasks that import it.
PRELOAD = ("numpy", "pandas", "polars", "matplotlib", "matplotlib.pyplot", "seaborn", "sklearn",
           "sklearn.preprocessing", "sklearn.decomposition", "sklearn.linear_model", "sklearn.model_selection",
           "unittest", "unittest.mock", "tempfile")
# The package fixes polars' thread pool (8) so that a verdict does not depend on the machine's cores; a slot here
# has one core, so one thread, like the BLAS pools. PYTHONHASHSEED=0 is the sandbox's already.
VARIABLES = (("OMP_NUM_THREADS", "1"), ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
             ("POLARS_MAX_THREADS", "1"), ("MPLBACKEND", "Agg"))


@lru_cache(maxsize=None)
def environment() -> EnvSpec:
    path = DATA_DIR / "requirements-dataframebench.txt"
    return EnvSpec(name="dataframebench", requirements=read_requirements(path.read_text()), preload=PRELOAD,
                   env=VARIABLES, limits=(("memory_mb", 2048), ("nproc", 64)),
                   note=f"pinned in tasks/data/dataframebench/{path.name}")


def fill_condition(text: str, library: str | None) -> str:
    """Both placeholders filled for a condition (None: free choice), by plain replacement: stubs hold braces."""
    if library is None:
        imp, instruction = FREE_IMPORT, FREE_INSTRUCTION
    else:
        imp, instruction = IMPORT_LINES.get(library, f"import {library}"), INSTRUCTION_LINE.format(library=library)
    return text.replace(IMPORT_PLACEHOLDER, imp).replace(INSTRUCTION_PLACEHOLDER, instruction)


# The answer's code, as the package's parser finds it.
REASONING = r"(?:think|thinking|reasoning|thought)"
CLOSE_REASONING = re.compile(rf"</{REASONING}>", re.I)
OPEN_REASONING = re.compile(rf"^\s*<{REASONING}>\s*", re.I)
FENCED = re.compile(r"```(\w*)\n(.*?)(?:```|$)", re.S)  # an unclosed fence runs to the end of the answer
FENCE_OPENER = re.compile(r"```[\w+-]*[ \t]*\r?\n")
PYTHON_TAGS = ("python", "py", "python3")


def parse(code: str) -> ast.Module:
    with warnings.catch_warnings():  # a reference's "\s" in a plain string: the data's, not worth a warning each load
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        return ast.parse(code)


def parses(code: str) -> bool:
    try:
        parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def answer_code(answer: str) -> str | None:
    """The code the package would run for a model's answer, None where it finds none. After a closing reasoning tag
    only what follows counts (an opening tag never closed: no answer). Candidates: the fenced blocks tagged python
    or untagged, and, for an answer with more than two fences, everything from the first fence to the last (a
    solution whose docstring holds a fence). Of those that parse the one with the most lines, else of all."""
    close = CLOSE_REASONING.search(answer)
    if close:
        answer = answer[close.end():].strip()
    elif OPEN_REASONING.search(answer):
        return None
    blocks = [body.strip() for tag, body in FENCED.findall(answer) if not tag or tag.lower() in PYTHON_TAGS]
    fences = [m.start() for m in re.finditer("```", answer)]
    if len(fences) > 2 and FENCE_OPENER.match(answer, fences[0]):
        blocks.append(answer[answer.index("\n", fences[0]) + 1:fences[-1]])
    if not blocks:
        return None
    code = max([b for b in blocks if parses(b)] or blocks, key=lambda b: len(b.splitlines()))
    return code or None


# The package's program (sandbox.py): the header, the code, the test, unittest.main() (the test's own, when it has
# one, runs first and exits). It runs here as `python -` runs it: a fresh __main__ module (unittest.main() finds its
# tests there), argv ["-"], __file__ "<stdin>"; every unittest run's result is kept, and the last one decides.
HEADER = 'import matplotlib\nmatplotlib.use("Agg")  # plot problems must never need a display\n'
MAIN = ('if __name__ == "__main__":\n    import unittest as _unittest\n\n'
        '    _unittest.main(argv=["harness"], exit=True, verbosity=2)\n')
RUNNER = '''
import sys as _sys
import types as _types
import unittest as _unittest
import unittest.runner as _runner

_results = []


class _Recording(_runner.TextTestRunner):
    def run(self, test):
        result = super().run(test)
        _results.append(result)
        return result


_runner.TextTestRunner = _unittest.TextTestRunner = _Recording
_main = _types.ModuleType("__main__")
_main.__file__ = "<stdin>"
_sys.modules["__main__"] = _main
_sys.argv = ["-"]
try:
    exec(compile(_SOURCE, "<stdin>", "exec"), _main.__dict__)
except SystemExit:
    pass  # unittest.main()'s exit: the verdict is its result's, below, never an exit code
if not _results:
    raise AssertionError("DataFrameBench: the program ended before its unittest run")
_r = _results[-1]
if _r.testsRun == 0 and not _r.skipped:
    raise AssertionError("DataFrameBench: no test ran (Python 3.12's unittest exits 5)")
if not _r.wasSuccessful():
    _bad = _r.failures + _r.errors + [(t, "unexpected success") for t in _r.unexpectedSuccesses]
    _name = getattr(_bad[0][0], "_testMethodName", str(_bad[0][0]))
    _why = (_bad[0][1].strip().splitlines() or ["?"])[-1]
    raise AssertionError(f"DataFrameBench: {len(_bad)} of {_r.testsRun} tests failed; {_name}: {_why}"[:400])
'''
NO_CODE = ("raise AssertionError('DataFrameBench: no code in the answer (no fenced python or untagged block): '\n"
           "                     'failed without running, as the package scores it')\n")


def package_program(code: str, test: str) -> str:
    """The module the package runs with `python -` (and judges by its exit code)."""
    return HEADER + "\n" + code + "\n\n" + test + "\n\n" + MAIN


def program_for(code: str, test: str) -> str:
    return f"_SOURCE = {package_program(code, test)!r}\n" + RUNNER


@dataclass(frozen=True)
class DataFrameBenchTask(Task):
    """`test` holds the task's unittest test_code; `references` both solutions, (library, code)."""
    references: tuple[tuple[str, str], ...] = ()

    def program(self, completion: str) -> str:
        """A model's answer (the whole text): its code as the package's parser draws it, then the tests."""
        code = answer_code(completion)
        return NO_CODE if code is None else program_for(code, self.test)

    def program_from_solution(self, solution: str) -> str:
        """A whole solution (EvalPlus's `solution`, bigcode's generations): the code as it is."""
        return program_for(solution, self.test)

    def canonical_program(self) -> str:
        return self.program_from_solution(self.canonical_solution or "")

    def reference_program(self, library: str) -> str:
        return self.program_from_solution(dict(self.references)[library])

    def isolated_parts(self, completion=None, solution=None) -> dict:
        raise UserError("DataFrameBench's tests are unittest cases that call the solution in their own interpreter "
                        "(dataframes in, plots out), so it cannot be judged across a pipe: use --oracle inline")


@lru_cache(maxsize=None)
def rows(split: str) -> tuple[dict, ...]:
    path = DATA_DIR / f"{split}.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def make_task(row: dict, library: str | None) -> DataFrameBenchTask:
    references = tuple((lib, row["ground_truth"][lib]) for lib in LIBRARIES)
    return DataFrameBenchTask(task_id=row["task_id"], prompt=fill_condition(row["prompt"], library),
                              entry_point=row["entry_point"], test=row["test_code"],
                              canonical_solution=dict(references)[library or "pandas"], env=environment(),
                              instruct=True, references=references)


# The package gives a program 30 s of wall clock; ours is CPU time (load cannot make a timeout), at least this much
# and at least 4x the reference's (calibrated, --timeout-factor): a polars answer in the free suite, whose reference
# is the pandas one, has room too. One test (B0049, a seaborn pairplot in a font that is not installed) takes over
# a minute of CPU here: its calibrated limit covers it.
MIN_TIMEOUT_S = 10.0


def condition_suite(name: str, split: str, library: str | None) -> Suite:
    tasks = tuple(make_task(r, library) for r in rows(split))
    # a chat answer runs to the end of the model's turn; a base model's completion too (no stop cuts a fenced answer)
    return Suite(name, tasks, str(DATA_DIR / f"{split}.jsonl.gz"), stop=(), min_timeout=MIN_TIMEOUT_S)


# CI builds a slice of the environment (the whole one is minutes of pip install on 2 CPUs): the same pins of the
# libraries below and of what they need, nothing else; the tasks whose tests and references import nothing more.
SLICE_LIBRARIES = ("pandas", "polars", "numpy", "matplotlib", "seaborn")
SLICE_PACKAGES = frozenset(SLICE_LIBRARIES + ("polars-runtime-32", "python-dateutil", "six", "contourpy", "cycler",
                                             "fonttools", "kiwisolver", "packaging", "pillow", "pyparsing"))


def imported_roots(code: str) -> set[str]:
    tree = parse(code)
    return ({a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            | {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
               and not n.level})


@lru_cache(maxsize=None)
def slice_environment() -> EnvSpec:
    full = environment()
    pins = tuple(r for r in full.requirements if re.sub(r"[-_.]+", "-", r.split("==")[0]).lower() in SLICE_PACKAGES)
    return EnvSpec(name="dataframebench-slice", requirements=pins,
                   preload=tuple(m for m in full.preload if not m.startswith("sklearn")), env=full.env,
                   limits=full.limits, note=f"{full.note}: the pins of {', '.join(SLICE_LIBRARIES)} and their needs")


def slice_suite(task_ids: tuple[str, ...], library: str | None = None) -> Suite:
    """These tasks (each must import nothing beyond SLICE_LIBRARIES and the standard library) on the slice."""
    by_id = condition_suite("dataframebench", "test", library).by_id()
    allowed = set(SLICE_LIBRARIES) | set(sys.stdlib_module_names)
    tasks = []
    for tid in task_ids:
        t = by_id[tid]
        extra = set().union(*(imported_roots(c) for c in (t.test, *dict(t.references).values()))) - allowed
        if extra:
            raise ValueError(f"{tid} imports {sorted(extra)}: not in the environment slice")
        tasks.append(replace(t, env=slice_environment()))
    return Suite("dataframebench-slice", tuple(tasks), str(DATA_DIR / "test.jsonl.gz"), stop=(),
                 min_timeout=MIN_TIMEOUT_S)


suite("dataframebench")(lambda: condition_suite("dataframebench", "test", None))
suite("dataframebench-val")(lambda: condition_suite("dataframebench-val", "val", None))
for _lib in LIBRARIES:
    suite(f"dataframebench-{_lib}")(lambda lib=_lib: condition_suite(f"dataframebench-{lib}", "test", lib))
