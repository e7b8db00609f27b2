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
from tasks import Suite

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


def canonical_times(suite: Suite, backend: str, pool, oracle: str = "inline") -> dict[str, dict]:
    """task_id -> {"seconds", "passed", "result"} for every task with a canonical solution, timed under the oracle
    the evaluation uses (the isolated one pays for every call crossing a pipe); `pool` is a function returning an
    open pool, called only when the cache lacks the suite."""
    path = cache_path(suite, backend, oracle)
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass  # a torn file: time again
    jobs = [Job(t.task_id, t.canonical_program(), CALIBRATION_TIMEOUT_S,
                IsolatedParts(**t.isolated_parts(t.canonical_solution)) if oracle == "isolated" else None)
            for t in suite.tasks if t.canonical_solution is not None]
    times = {}
    for job, v in progress(pool().run(jobs), total=len(jobs), desc=f"timing {suite.name} references", unit="task"):
        times[job.key] = {"seconds": round(v.elapsed, 4), "passed": v.passed, "result": v.result}
    atomic.write_json(path, times)
    return times


def task_timeouts(suite: Suite, times: dict[str, dict], base: float, factor: float) -> dict[str, float]:
    """Every task's timeout: max(base, factor x canonical seconds); base where there is no canonical time."""
    return {t.task_id: round(max(base, factor * times[t.task_id]["seconds"]), 3) if t.task_id in times else base
            for t in suite.tasks}
