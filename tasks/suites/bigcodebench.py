"""BigCodeBench (Zhuo et al., 2024; BigCode; Apache-2.0, see tasks/data/bigcodebench/SOURCE.md): 1,140 practical
tasks over 139 libraries, each judged by its own `unittest.TestCase` class.

- `bigcodebench`: the complete split (the function's signature and docstring, a base model's task) on v0.1.4, the
  version `bigcodebench` 0.2.5 evaluates by default, rebuilt here from v0.1.0_hf with BigCode's own fix scripts;
- `bigcodebench-instruct`: the instruct split (a natural-language instruction, for chat models), same tasks;
- `bigcodebench-v0.1.0` and `bigcodebench-instruct-v0.1.0`: the v0.1.0_hf release as published.
The Hard subset (148 tasks) is a list published on the Hugging Face Hub only; it was not found, so there is no
`bigcodebench-hard`.

As bigcodebench 0.2.5's evaluator does it (bigcodebench/evaluate.py, eval/__init__.py, eval/utils.py):
- the solution is the sample's `solution`, else `complete_prompt + completion` (both splits); "calibrated" (its
  default, what its leaderboard reports) puts the task's `code_prompt` and `pass` in front, so that an answer that
  leaves out the imports or the signature still has them;
- the program is the solution, a newline and the test, executed as a module named `__test__` that starts with
  `sys`, `os` and `environ` defined, in a fresh temporary directory, in TZ=UTC, with `exit`/`quit` gone, stdin,
  stdout and stderr swapped for a write-only buffer, and `os.kill`, `os.system`, `subprocess.*`, `os.popen` and
  `os.exec*` replaced by its guarded versions (kill only your own children, `ps` output empty, exec a no-op...);
- it passes when the code and the test class load and `TestCases` runs with no failure and no error (skips count
  as passes, as there);
- its time limit is per task: max(240 s, the reference's time) + 1 s for the test run (BIGCODEBENCH_TIMEOUT_PER_TASK
  unset, which 0.2.5 needs: a value set there is a string it cannot compare). Ours is the same 240 s, charged as
  CPU time like every limit here, with the usual wall-clock backstop; calibrated timeouts raise it for a reference
  that needs longer.
The reported score is greedy pass@1 (`--n 1 --temperature 0`); the generation stops where BigCodeBench's does for a
base model (its EOS list and its extra stops for direct completion).
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from common.envspec import EnvSpec, read_requirements
from common.errors import UserError
from tasks.registry import suite
from tasks.suite import Suite, Task

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "bigcodebench"
VERSIONS = {"v0.1.4": DATA_DIR / "BigCodeBench-v0.1.4-rebuilt.jsonl.gz",
            "v0.1.0": DATA_DIR / "BigCodeBench-v0.1.0_hf.jsonl.gz"}
LOCK = DATA_DIR / "requirements-bigcodebench.txt"
# bigcodebench/provider/utility.py: EOS, then extra_eos_for_direct_completion("bigcodebench") for a base model
STOP = ("<|endoftext|>", "<|endofmask|>", "</s>", "\nif __name__", "\ndef main(", "\nprint(",
        "\ndef ", "\nclass ", "\nimport ", "\nfrom ", "\nassert ")
TIME_LIMIT_S = 240.0  # bigcodebench.eval.utils.TIMEOUT_LIMIT, the per-task floor of 0.2.5's evaluator
# bigcodebench/generate.py's defaults for a chat model: what the instruction and the answer start with
INSTRUCTION_PREFIX = ("Please provide a self-contained Python script that solves the following problem in a "
                      "markdown code block:")
RESPONSE_PREFIX = ("Below is a Python script with a self-contained function that solves the problem and passes "
                   "corresponding tests:")
THREADS = (("OMP_NUM_THREADS", "1"), ("OPENBLAS_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"))
VARIABLES = THREADS + (("MPLBACKEND", "Agg"), ("TF_CPP_MIN_LOG_LEVEL", "3"), ("TF_ENABLE_ONEDNN_OPTS", "0"),
                       ("CUDA_VISIBLE_DEVICES", ""), ("TZ", "UTC"))
# Imported once per container, before the zygote forks: most tasks use these, and bigcodebench imports pyplot
# before every sample anyway (reliability_guard). TensorFlow is not (threads at import do not survive a fork).
PRELOAD = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot", "scipy", "scipy.stats", "sklearn", "seaborn",
           "PIL.Image", "unittest", "unittest.mock", "subprocess", "tempfile", "contextlib", "io", "types")
# bigcodebench runs each sample under RLIMIT_AS = RLIMIT_DATA = 30 GB: TensorFlow, librosa and scikit-learn tasks
# need far more address space and threads than HumanEval's defaults; files of a few MB are written often.
LIMITS = (("memory_mb", 4096), ("nproc", 256), ("pids", 2048), ("tmpfs_mb", 256), ("fsize_mb", 64),
          ("nofile", 1024))

# The evaluator's execution of one sample, re-implemented after bigcodebench 0.2.5 (eval/__init__.py unsafe_execute,
# eval/utils.py safe_environment, swallow_io, reliability_guard): what a sample sees there, it sees here. Trusted
# code, but it runs in the sample's own interpreter (the inline oracle's threat model); its names start with `_bcb`
# and the sample's module is a fresh one, so the code under test never meets them by accident.
RUNNER = r'''
def _bcb_run(_bcb_code, _bcb_test):
    import builtins, contextlib, faulthandler, io, os, signal, subprocess, sys, time, types, unittest

    class WriteOnly(io.StringIO):
        def read(self, *a, **k):
            raise IOError
        def readline(self, *a, **k):
            raise IOError
        def readlines(self, *a, **k):
            raise IOError
        def readable(self, *a, **k):
            return False

    kill, killpg, system, popen = os.kill, os.killpg, os.system, os.popen
    call, check_output, run, Popen = subprocess.call, subprocess.check_output, subprocess.run, subprocess.Popen
    me, my_group, children = os.getpid(), os.getpgid(os.getpid()), []

    def safe_kill(pid, sig):
        try:
            os.getpgid(pid)
            if pid == me or pid in children:
                kill(pid, sig)
            else:
                print(f"Prevented attempt to kill PID {pid} with signal {sig}")
        except ProcessLookupError:
            pass

    def safe_killpg(pgid, sig):
        if pgid == my_group or pgid in {os.getpgid(p) for p in children}:
            killpg(pgid, sig)
        else:
            print(f"Prevented attempt to kill PGID {pgid} with signal {sig}")

    def safe_system(command):
        print(f"Intercepted system command: {command}")
        return 0 if "kill" in command or "killall" in command else system(command)

    def safe_call(command, *a, **k):
        print(f"Intercepted subprocess call: {command}")
        return 0 if "kill" in command or "killall" in command else call(command, *a, **k)

    def safe_check_output(command, *a, **k):
        print(f"Intercepted command: {command}")
        return b"" if "ps" in command else check_output(command, *a, **k)

    def safe_run(*a, **k):
        print(f"Intercepted subprocess run command: {a}")
        if "kill" in a[0] or "killall" in a[0]:
            return subprocess.CompletedProcess(a, 0, b"", b"")
        return run(*a, **k)

    class SafePopen(Popen):
        def __init__(self, *a, **k):
            print(f"Intercepted Popen command: {a}")
            k["preexec_fn"] = os.setsid
            super().__init__(*a, **k)
            children.append(self.pid)

        def communicate(self, *a, **k):
            try:
                return super().communicate(*a, **k)
            except subprocess.TimeoutExpired:
                print("Timeout expired, intercepted and returning None")
                return None, None

        def kill(self):
            print(f"Intercepted kill call for PID {self.pid}")
            safe_kill(self.pid, signal.SIGTERM)

        def terminate(self):
            print(f"Intercepted terminate call for PID {self.pid}")
            safe_kill(self.pid, signal.SIGTERM)

    def safe_popen(command):
        print(f"Intercepted os.popen command: {command}")
        return popen("echo Intercepted") if "kill" in command or "killall" in command else popen(command)

    def safe_exec(*a, **k):
        print(f"Intercepted exec command: {a}")

    os.kill, os.killpg, os.system, os.popen = safe_kill, safe_killpg, safe_system, safe_popen
    os.execv = os.execvp = os.execvpe = safe_exec
    subprocess.call, subprocess.check_output, subprocess.run = safe_call, safe_check_output, safe_run
    subprocess.Popen = SafePopen

    os.environ["TZ"] = "UTC"
    time.tzset()
    os.environ.update(OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    import matplotlib.pyplot
    matplotlib.pyplot.close("all")

    module = types.ModuleType("__test__")
    module.__dict__.update({"__builtins__": builtins, "__file__": "__test__.py", "__package__": None,
                            "__doc__": None, "sys": sys, "os": os, "environ": os.environ})

    def piped(fn):  # swallow_subprocess_output: a child's output goes to a pipe unless the caller captures it
        def wrapped(*a, **k):
            if k.get("capture_output"):
                k.pop("stdout", None)
                k.pop("stderr", None)
            else:
                k.setdefault("stdout", subprocess.PIPE)
                k.setdefault("stderr", subprocess.PIPE)
            return fn(*a, **k)
        return wrapped

    sink = WriteOnly()
    saved = sys.stdin, sys.stdout, sys.stderr, subprocess.Popen, subprocess.run
    sys.stdin = sys.stdout = sys.stderr = sink
    subprocess.Popen, subprocess.run = piped(subprocess.Popen), piped(subprocess.run)
    try:
        exec(compile(_bcb_code + "\n" + _bcb_test, "__test__.py", "exec"), module.__dict__)
        sys.modules["__test__"] = module
        result = unittest.TestResult()
        unittest.TestLoader().loadTestsFromTestCase(module.TestCases).run(result)
    finally:
        sys.stdin, sys.stdout, sys.stderr, subprocess.Popen, subprocess.run = saved
    problems = result.failures + result.errors
    if problems:
        test, trace = problems[0]
        after = trace.rsplit("\n  File ", 1)[-1].splitlines()[1:]  # the exception line, not assertEqual's diff
        last = next((line for line in after if line and not line.startswith(" ")), "?")
        raise AssertionError(f"{len(problems)} of {result.testsRun} tests failed; "
                             f"{test.id().split('.')[-1]}: {last}")
'''


@dataclass(frozen=True)
class BigCodeBenchTask(Task):
    """`prompt` is what the model is asked (the complete or the instruct prompt); `test` the TestCases class;
    `complete_prompt` and `code_prompt` are what the program is built from, for both splits."""
    complete_prompt: str = ""
    code_prompt: str = ""
    calibrated: bool = True

    def solution_program(self, solution: str) -> str:
        code = (self.code_prompt + "\n    pass\n" + solution) if self.calibrated else solution
        return RUNNER + f"\n_bcb_run({code!r}, {self.test!r})\n"

    def program(self, completion: str) -> str:
        return self.solution_program(self.complete_prompt + completion)

    def program_from_solution(self, solution: str) -> str:
        return self.solution_program(solution)

    def reference_solution(self) -> str:
        """What bigcodebench's ground-truth check runs: the complete prompt, a newline, the canonical solution."""
        return self.complete_prompt + "\n" + (self.canonical_solution or "")

    def canonical_program(self) -> str:
        return self.solution_program(self.reference_solution())

    def isolated_parts(self, completion=None, solution=None) -> dict:
        raise UserError("BigCodeBench's tests are a unittest class run in the solution's own module (they patch its "
                        "names), so they cannot be judged in another process: use --oracle inline for bigcodebench")

    def chat_messages(self) -> list[dict]:
        """The user turn bigcodebench's generator sends a chat model (make_raw_chat_prompt, no prefill)."""
        body = (f"{INSTRUCTION_PREFIX}\n```\n{self.prompt.strip()}\n```\n" if self.prompt == self.complete_prompt
                else f"{INSTRUCTION_PREFIX}\n{self.prompt.strip()}\n")
        return [{"role": "user", "content": body}]


@lru_cache(maxsize=None)
def environment() -> EnvSpec:
    return EnvSpec(name="bigcodebench", requirements=read_requirements(LOCK.read_text()), preload=PRELOAD,
                   env=VARIABLES, limits=LIMITS, note=f"pinned in tasks/data/bigcodebench/{LOCK.name} "
                   "(BigCodeBench's requirements-eval.txt, moved to Python 3.11 where it must: see SOURCE.md)")


# CI's environment: the same pins as the full lock, for the packages that 684 of the 1,140 tasks need beside the
# standard library (numpy, pandas, matplotlib, dateutil, pytz; about 60 MB of wheels against the full lock's
# 900 MB). tests/test_environments.py judges a slice of those tasks on it; the full image is never built in CI.
SMALL = ("numpy", "pandas", "matplotlib", "python-dateutil", "pytz", "tzdata", "six", "contourpy", "cycler",
         "fonttools", "kiwisolver", "packaging", "pillow", "pyparsing")


@lru_cache(maxsize=None)
def small_environment() -> EnvSpec:
    pins = environment().packages()
    return EnvSpec(name="bigcodebench-small", requirements=tuple(f"{p}=={pins[p]}" for p in SMALL),
                   preload=("numpy", "pandas", "matplotlib", "matplotlib.pyplot", "unittest", "unittest.mock",
                            "subprocess", "tempfile"),
                   env=VARIABLES, limits=LIMITS, note=f"a subset of tasks/data/bigcodebench/{LOCK.name}, for CI")


@lru_cache(maxsize=None)
def rows(version: str) -> tuple[dict, ...]:
    with gzip.open(VERSIONS[version], "rt", encoding="utf-8") as f:
        out = tuple(json.loads(line) for line in f if line.strip())
    if [r["task_id"] for r in out] != [f"BigCodeBench/{i}" for i in range(1140)]:
        raise RuntimeError(f"{VERSIONS[version]}: expected BigCodeBench/0-1139 in order, got {len(out)} rows")
    return out


def make_task(row: dict, split: str, env: EnvSpec | None) -> BigCodeBenchTask:
    return BigCodeBenchTask(task_id=row["task_id"], prompt=row[f"{split}_prompt"], entry_point=row["entry_point"],
                            test=row["test"], canonical_solution=row["canonical_solution"], env=env,
                            complete_prompt=row["complete_prompt"], code_prompt=row["code_prompt"])


def make_suite(name: str, version: str, split: str, env: EnvSpec | None = None) -> Suite:
    env = environment() if env is None else env
    tasks = tuple(make_task(r, split, env) for r in rows(version))
    return Suite(name, tasks, str(VERSIONS[version]), stop=STOP, min_timeout=TIME_LIMIT_S,
                 label=f"{name} ({version} rebuilt)" if version == "v0.1.4" else f"{name} (v0.1.0_hf)")


@suite("bigcodebench")
def bigcodebench() -> Suite:
    return make_suite("bigcodebench", "v0.1.4", "complete")


@suite("bigcodebench-instruct")
def bigcodebench_instruct() -> Suite:
    return make_suite("bigcodebench-instruct", "v0.1.4", "instruct")


@suite("bigcodebench-v0.1.0")
def bigcodebench_v010() -> Suite:
    return make_suite("bigcodebench-v0.1.0", "v0.1.0", "complete")


@suite("bigcodebench-instruct-v0.1.0")
def bigcodebench_instruct_v010() -> Suite:
    return make_suite("bigcodebench-instruct-v0.1.0", "v0.1.0", "instruct")
