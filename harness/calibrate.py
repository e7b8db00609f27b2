"""Calibrated timeouts: some tasks (HumanEval+ runs up to a thousand inputs) need longer than --timeout even for
their reference solution. Each task's canonical solution is timed once in the sandbox, the times are cached per
suite content hash and sandbox image, and a task gets max(--timeout, factor x its canonical time). EvalPlus scales
its per-input limits from ground-truth time the same way (a factor of 4)."""
from __future__ import annotations

import json
from pathlib import Path

from common import atomic
from common.paths import cache_root
from common.progress import progress
from sandbox.jobs import IsolatedParts, Job
from sandbox.limits import WALL_FACTOR
from tasks import Suite, Task, per_input

TIMEOUT_FACTOR = 4.0
CALIBRATION_TIMEOUT_S = 60.0  # the reference itself gets this long while being timed


def cache_path(suite: Suite, backend: str, oracle: str = "inline") -> Path:
    if backend == "docker":
        from sandbox.image import image_tag

        engine = image_tag().replace(":", "-")
    else:
        engine = backend
    suffix = "" if oracle == "inline" else f"-{oracle}"
    return cache_root() / "timeouts" / f"{suite.hash}-{engine}{suffix}.json"


def canonical_times(suite: Suite, backend: str, pool, oracle: str = "inline", only=None) -> dict[str, dict]:
    """task_id -> {"seconds", "passed", "result"} for every task with a canonical solution (of `only`, the task ids
    that have samples, when given), timed under the oracle the evaluation uses (the isolated one pays for every call
    crossing a pipe); `pool` is a function returning an open pool, called only for tasks the cache lacks. Timed
    tasks join the cache, so scoring a slice of a large suite (DS-1000) times that slice only."""
    path = cache_path(suite, backend, oracle)
    times: dict[str, dict] = {}
    if path.exists():
        try:
            times = json.loads(path.read_text())
        except json.JSONDecodeError:
            pass  # a torn file: time again
    wanted = set(only) if only is not None else None
    limit = max(CALIBRATION_TIMEOUT_S, suite.min_timeout)  # a suite whose evaluator allows longer (BigCodeBench)
    jobs = [Job(t.task_id, t.canonical_program(), limit,
                IsolatedParts(**t.isolated_parts(t.canonical_solution)) if oracle == "isolated" else None, env=t.env)
            for t in suite.tasks if t.canonical_solution is not None and t.task_id not in times
            and (wanted is None or t.task_id in wanted)]
    if not jobs:
        return times
    for job, v in progress(pool().run(jobs), total=len(jobs), desc=f"timing {suite.name} references", unit="task"):
        # CPU seconds: what the sandbox charges a sample's timeout in (the wall clock depends on the machine's load)
        times[job.key] = {"seconds": round(v.cpu or v.elapsed, 4), "passed": v.passed, "result": v.result}
    atomic.write_json(path, times)
    return times


def input_times(suite: Suite, backend: str, pool) -> dict[str, dict]:
    """task_id -> {"n": inputs, "times": {input index: CPU seconds}} for every task whose test is EvalPlus-style
    (tasks/per_input.py): the reference's CPU time on each input above per_input.RECORD_ABOVE_S, timed once in the
    sandbox (inline: the candidate's own computation is the same under both oracles) and cached like the above."""
    todo = [t for t in suite.tasks if t.canonical_solution is not None and per_input.supports(t)]
    if not todo:
        return {}
    path = cache_path(suite, backend, "per-input")
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    by_id = {t.task_id: t for t in todo}
    jobs = [Job(t.task_id, per_input.with_limits(t, None, WALL_FACTOR).canonical_program(), CALIBRATION_TIMEOUT_S,
                env=t.env)
            for t in todo]
    times = {}
    for job, v in progress(pool().run(jobs), total=len(jobs), desc=f"timing {suite.name} references per input",
                           unit="task"):
        times[job.key] = {"n": per_input.input_count(by_id[job.key]), "times": per_input.parse_times(v.output),
                          "passed": v.passed}
    atomic.write_json(path, times)
    return times


def with_input_limits(tasks: dict[str, Task], times: dict[str, dict], timeouts: dict[str, float],
                      factor: float) -> tuple[dict[str, Task], dict[str, float]]:
    """The tasks with per-input limits (EvalPlus's max(floor, factor x reference time) per input) and their sample
    timeouts raised to what those limits add up to (EvalPlus's cap)."""
    tasks, timeouts = dict(tasks), dict(timeouts)
    for tid, rec in times.items():
        if tid in tasks and rec["passed"]:
            limits = per_input.limits_from_times({int(i): t for i, t in rec["times"].items()}, factor)
            tasks[tid] = per_input.with_limits(tasks[tid], limits, WALL_FACTOR)
            timeouts[tid] = max(timeouts[tid], per_input.sample_limit(limits, rec["n"]))
    return tasks, timeouts


def task_timeouts(suite: Suite, times: dict[str, dict], base: float, factor: float) -> dict[str, float]:
    """Every task's timeout: max(base, factor x canonical seconds); base where there is no canonical time."""
    return {t.task_id: round(max(base, factor * times[t.task_id]["seconds"]), 3) if t.task_id in times else base
            for t in suite.tasks}
