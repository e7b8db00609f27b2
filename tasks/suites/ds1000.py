"""DS-1000 (Lai et al., ICML 2023; CC-BY-SA-4.0, see tasks/data/ds1000/SOURCE.md): 1,000 data-science problems from
StackOverflow over seven libraries, each judged by its own execution check.

As the official evaluation does it (xlang-ai/DS-1000, the 2024 simplified format; bigcode-evaluation-harness runs the
same): the prompt is the problem's `prompt` (a completion model continues after its `<code>` or `# SOLUTION START`),
the completion is post-processed as the official `postprocess` does (cut at `</code>`, a fence or `END SOLUTION`),
and the program is the problem's `code_context` followed by `test_execution(code)` and, where the context defines it,
`test_string(code)`, with `code` the completion as a string literal. It passes when that program runs to its end.

The tests import pandas, matplotlib, scikit-learn, torch, tensorflow...: each task declares the environment it needs
(tasks/data/ds1000/requirements-*.txt, every package pinned to the versions of the official environment.yml, or the
nearest that installs offline, see SOURCE.md). Tasks that import a deep-learning library run on the larger image;
the others never pay for it.
"""
from __future__ import annotations

import ast
import gzip
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from common.envspec import EnvSpec, read_requirements
from common.errors import UserError
from tasks.registry import suite
from tasks.suite import Suite, Task

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "ds1000"
DATA = DATA_DIR / "ds1000.json.gz"
LIBRARIES = ("Pandas", "Numpy", "Matplotlib", "Scipy", "Sklearn", "Pytorch", "Tensorflow")  # the paper's order
STOP = ("</code>", "# SOLUTION END")  # the official generation's stop sequences (and bigcode-evaluation-harness's)
# a task whose context imports one of these runs on the deep-learning image
DL_MODULES = ("torch", "tensorflow", "keras", "gensim", "xgboost")
# Worth importing once per container: each sample then pays for its own code only (pandas + pyplot ~1 s otherwise).
CORE_PRELOAD = ("numpy", "pandas", "scipy", "scipy.stats", "scipy.optimize", "matplotlib", "matplotlib.pyplot",
                "seaborn", "sklearn", "PIL.Image", "yaml", "tokenize", "io", "copy")
THREADS = (("OMP_NUM_THREADS", "1"), ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"))
SEABORN_DATA = "/opt/sandbox/seaborn-data"
VARIABLES = THREADS + (("MPLBACKEND", "Agg"), ("TF_CPP_MIN_LOG_LEVEL", "3"), ("TF_NUM_INTEROP_THREADS", "1"),
                       ("TF_NUM_INTRAOP_THREADS", "1"), ("CUDA_VISIBLE_DEVICES", ""), ("SEABORN_DATA", SEABORN_DATA))
# 14 Matplotlib problems call seaborn.load_dataset, which downloads from GitHub unless the file is in its cache
# (SEABORN_DATA): the four datasets they use are shipped (tasks/data/ds1000/SOURCE.md) and placed there.
DATASETS = tuple((f"{SEABORN_DATA}/{p.name}", str(p)) for p in sorted((DATA_DIR / "seaborn-data").glob("*.csv")))


def environment(name: str, preload: tuple[str, ...], limits: tuple) -> EnvSpec:
    path = DATA_DIR / f"requirements-{name}.txt"
    return EnvSpec(name=name, requirements=read_requirements(path.read_text()), preload=preload, env=VARIABLES,
                   limits=limits, files=DATASETS, note=f"pinned in tasks/data/ds1000/{path.name}")


@lru_cache(maxsize=None)
def environments() -> dict[str, EnvSpec]:
    # torch and TensorFlow are imported once per container too (2.8 s and 4.8 s of CPU here): importing either starts
    # no thread (measured: one thread after both imports), so the zygote forks safely; their pools start in the child.
    return {
        "ds1000": environment("ds1000", CORE_PRELOAD, (("memory_mb", 2048), ("nproc", 64))),
        "ds1000-dl": environment("ds1000-dl", CORE_PRELOAD + ("torch", "tensorflow"),
                                 (("memory_mb", 8192), ("nproc", 256), ("pids", 2048), ("tmpfs_mb", 128))),
    }


def postprocess(code: str) -> str:
    """The official evaluation's clean-up of a completion (chat models add tags and fences despite the prompt)."""
    code = code.split("</code>")[0]
    code = code.replace("```python", "")
    code = code.split("```")[0]
    code = code.split("\nEND SOLUTION")[0]
    return code.replace("<code>", "")


@dataclass(frozen=True)
class DS1000Task(Task):
    """`test` holds the problem's code_context; `entry_point` is empty (the solution is a snippet, not a function)."""

    def program(self, completion: str) -> str:
        code = postprocess(completion)
        return (self.test + "\n" + f"code = {code!r}\n" + "test_execution(code)\n"
                + ("test_string(code)\n" if "test_string(" in self.test else "\n"))

    def program_from_solution(self, solution: str) -> str:
        return self.program(solution)

    def canonical_program(self) -> str:
        return self.program(self.canonical_solution or "")

    def isolated_parts(self, completion=None, solution=None) -> dict:
        raise UserError("DS-1000 runs the solution inside its own test (test_execution exec()s it on the test "
                        "inputs), so it cannot be judged in another process: use --oracle inline for ds1000")


def metadata(row: dict) -> dict:
    m = row["metadata"]
    return m if isinstance(m, dict) else ast.literal_eval(m)


def needs_dl(row: dict) -> bool:
    text = row["code_context"] + "\n" + row["prompt"]
    return any(re.search(rf"^\s*(?:import|from)\s+{m}\b", text, re.M) for m in DL_MODULES)


@lru_cache(maxsize=None)
def rows() -> list[dict]:
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        data = json.load(f)
    out = sorted(data["dev"] + data["test"], key=lambda r: metadata(r)["problem_id"])
    ids = [metadata(r)["problem_id"] for r in out]
    if ids != list(range(1000)):
        raise RuntimeError(f"{DATA}: expected problem ids 0-999 once each, got {len(ids)} rows")
    return out


def make_task(row: dict) -> DS1000Task:
    m = metadata(row)
    env = environments()["ds1000-dl" if needs_dl(row) else "ds1000"]
    return DS1000Task(task_id=f"DS1000/{m['problem_id']}", prompt=row["prompt"], entry_point="",
                      test=row["code_context"], canonical_solution=row["reference_code"], env=env,
                      group=m["library"])


# The official evaluation gives a program 120 s of wall clock; ours is CPU time (load cannot make a timeout), at
# least this much and at least 4x the reference's (calibrated, --timeout-factor): a correct but slower snippet passes.
MIN_TIMEOUT_S = 10.0
# References that cannot pass without the network (the sandbox has none; neither has the plain run it is compared
# with). bench/ds1000_agreement.py checks that each fails the same way in both.
BROKEN = (("DS1000/819", "calls sklearn's fetch_california_housing(), which downloads the data from figshare"),)


@suite("ds1000")
def ds1000() -> Suite:
    tasks = tuple(make_task(r) for r in rows())
    return Suite("ds1000", tasks, str(DATA), stop=STOP, broken=BROKEN, min_timeout=MIN_TIMEOUT_S)


def library_suite(library: str) -> Suite:
    tasks = tuple(t for t in ds1000().tasks if t.group == library)
    ids = {t.task_id for t in tasks}
    return Suite(f"ds1000-{library.lower()}", tasks, str(DATA), stop=STOP, min_timeout=MIN_TIMEOUT_S,
                 broken=tuple(b for b in BROKEN if b[0] in ids))


for _lib in LIBRARIES:  # one suite per library too: `--tasks ds1000-pandas` needs only the core image
    suite(f"ds1000-{_lib.lower()}")(lambda lib=_lib: library_suite(lib))
