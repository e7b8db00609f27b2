"""Per-input time limits, as EvalPlus gives them (evalplus 0.3.1, `untrusted_check`): input i of a test may take
max(floor, factor x the reference solution's time on that input), floor 1.0 s and factor 4.0 by default, and the
whole run min(60, sum of those) + 1 s (EvalPlus runs base and plus inputs as two such runs; ours are one test).

EvalPlus times the reference in-process with the wall clock and arms a wall-clock timer per input. Here the
reference's time on each input is its CPU time, measured in the sandbox (harness/calibrate.py), and each call of the
candidate is limited in CPU time (ITIMER_PROF) with a wall-clock backstop (ITIMER_REAL, the sandbox's wall factor x
that) that counts only time the program spent off the CPU by its own choice (sleeping, blocked: wall minus CPU minus
run-queue wait), so a busy machine does not make a slow input. The test is rewritten: each `candidate(*inp)` in its loop becomes
`_per_input(candidate, i, inp)`. Under the isolated oracle the candidate's own process arms the timers around the
call (the judge's stub asks it to); a candidate that disarms them escapes only the per-input limit, never the
sample's CPU-time limit.
"""
from __future__ import annotations

import ast
from dataclasses import replace

from tasks.suite import Task

CALL = "candidate(*inp)"
FLOOR_S = 1.0  # EvalPlus's DEFAULT_MIN_TIME_LIMIT
FACTOR = 4.0  # EvalPlus's DEFAULT_GT_TIME_LIMIT_FACTOR
RUN_CAP_S = 60.0  # EvalPlus's EVALPLUS_TIMEOUT_PER_TASK default, per run (base and plus)
RUNS = 2  # EvalPlus's base and plus runs, each capped: ours are one test
RECORD_ABOVE_S = 0.05  # reference times below this are not reported by the timing run (their limit is the floor)
MARK = "INPUT_TIME"

HELPER = '''
import signal as _signal
import time as _time

_INPUT_LIMITS = {limits}  # input index -> CPU seconds (the rest: _INPUT_FLOOR); None: time the reference
_INPUT_FLOOR = {floor}
_INPUT_WALL_FACTOR = {wall_factor}


def _run_queue_wait():
    try:
        with open("/proc/self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _per_input(fn, i, inp):
    """One call of the candidate under its input's limit (or timed, for the reference)."""
    if _INPUT_LIMITS is None:
        start = _time.process_time()
        out = fn(*inp)
        took = _time.process_time() - start
        if took > {record_above}:
            print("{mark}", i, round(took, 5))
        return out
    limit = _INPUT_LIMITS.get(i, _INPUT_FLOOR)
    limited = getattr(fn, "call_limited", None)  # the isolated oracle's stub: the candidate's process times it
    if limited is not None:
        return limited(limit, _INPUT_WALL_FACTOR * limit, *inp)
    started = _time.monotonic(), _time.process_time(), _run_queue_wait()

    def expired(signum, frame):
        if signum == _signal.SIGALRM and started[2] is not None:
            waited = _run_queue_wait()
            off_cpu = _time.monotonic() - started[0] - (_time.process_time() - started[1]) - (waited - started[2])
            if off_cpu < limit:  # it wanted a CPU and the machine had none: not the program's time
                _signal.setitimer(_signal.ITIMER_REAL, _INPUT_WALL_FACTOR * limit)
                return
        raise TimeoutError(f"input {{i}} ran past its time limit ({{limit:.2f}}s)")

    old = _signal.signal(_signal.SIGPROF, expired), _signal.signal(_signal.SIGALRM, expired)
    _signal.setitimer(_signal.ITIMER_PROF, limit)
    _signal.setitimer(_signal.ITIMER_REAL, _INPUT_WALL_FACTOR * limit)
    try:
        return fn(*inp)
    finally:
        _signal.setitimer(_signal.ITIMER_PROF, 0)
        _signal.setitimer(_signal.ITIMER_REAL, 0)
        _signal.signal(_signal.SIGPROF, old[0])
        _signal.signal(_signal.SIGALRM, old[1])
'''


def supports(task: Task) -> bool:
    """An EvalPlus-style test: a loop over `inputs` calling `candidate(*inp)` with the index `i`."""
    return CALL in task.test and "for i, " in task.test and input_count(task) > 0


def input_count(task: Task) -> int:
    """How many inputs the test's `inputs = [...]` holds (0 when it has none)."""
    for node in ast.walk(ast.parse(task.test)):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "inputs" and isinstance(node.value, ast.List)):
            return len(node.value.elts)
    return 0


def with_limits(task: Task, limits: dict[int, float] | None, wall_factor: float) -> Task:
    """The task with its test rewritten to limit (or, `limits` None, to time) each input."""
    helper = HELPER.format(limits="None" if limits is None else repr({int(k): float(v) for k, v in limits.items()}),
                           floor=FLOOR_S, wall_factor=wall_factor, record_above=RECORD_ABOVE_S, mark=MARK)
    return replace(task, test=helper + task.test.replace(CALL, "_per_input(candidate, i, inp)"))


def parse_times(output: str) -> dict[int, float]:
    """The timing run's report: input index -> the reference's CPU seconds (those above RECORD_ABOVE_S)."""
    times = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == MARK:
            times[int(parts[1])] = float(parts[2])
    return times


def limits_from_times(times: dict[int, float], factor: float = FACTOR) -> dict[int, float]:
    """EvalPlus's rule, max(floor, factor x reference time), kept only where it is above the floor."""
    return {i: round(factor * t, 4) for i, t in times.items() if factor * t > FLOOR_S}


def sample_limit(limits: dict[int, float], n_inputs: int) -> float:
    """The whole sample's CPU limit: EvalPlus's min(60, sum) + 1 for each of its two runs."""
    total = sum(limits.values()) + FLOOR_S * (n_inputs - len(limits))
    return round(min(RUNS * RUN_CAP_S, total) + RUNS, 3)
