"""Scores samples in the sandbox: cached, resumable verdicts -> results.jsonl, summary.json and a pass@k table."""
from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from common import atomic
from common.errors import UserError
from common.jsonl import read_log
from common.progress import progress
from harness import __version__
from harness.samples import Sample
from harness.summary import SUMMARY, Summary
from sandbox.jobs import IsolatedParts, Job
from tasks import Suite
from tasks.passk import pass_at_k

VERDICTS = "verdicts.jsonl"  # append-only cache of finished verdicts: what lets a killed run resume
RESULTS = "results.jsonl"
MANIFEST = "manifest.json"


def check_output_dir(out_dir: Path, suite: Suite) -> None:
    """One results directory belongs to one suite content hash; results are never mixed."""
    manifest = out_dir / MANIFEST
    if manifest.exists():
        try:
            held = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            raise UserError(f"{manifest} is unreadable: remove the directory {out_dir} or pick another --output-dir")
        if held.get("suite_hash") != suite.hash:
            raise UserError(f"{out_dir} holds results for suite {held.get('suite')!r} (hash {held.get('suite_hash')}), "
                            f"not {suite.name!r} (hash {suite.hash}): use another --output-dir")
    else:
        atomic.write_json(manifest, {"suite": suite.name, "suite_hash": suite.hash})


class LazyPool:
    """Opens the sandbox pool the first time it is needed (a fully cached scoring never starts a container).

    A `make_pool` that is a `StartedPool` hands over a pool its caller owns (and closes); any other is called here
    and the pool it makes is closed here."""

    def __init__(self, make_pool: Callable):
        self.make_pool, self.pool = make_pool, None

    def __call__(self):
        if self.pool is None:
            self.pool = self.make_pool()
        return self.pool

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None and not isinstance(self.make_pool, StartedPool):
            self.pool.close()


class StartedPool:
    """A sandbox pool started in the background now, so that its engines connect and its containers start while the
    caller reads and validates the samples. Calling it waits for the pool (re-raising what stopped it)."""

    def __init__(self, make_pool: Callable):
        import threading

        self.pool, self.error = None, None
        self._thread = threading.Thread(target=self._start, args=(make_pool,), daemon=True)
        self._thread.start()

    def _start(self, make_pool):
        try:
            self.pool = make_pool()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc

    def __call__(self):
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.pool

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._thread.join()
        if self.pool is not None:
            self.pool.close()


def isolated_parts(tasks: dict, sample: Sample, oracle: str) -> IsolatedParts | None:
    if oracle != "isolated":
        return None
    task = tasks[sample.task_id]
    return IsolatedParts(**task.isolated_parts(completion=sample.completion, solution=sample.solution))


def sample_key(index: int, program: str, timeout: float, oracle: str = "inline", env=None) -> str:
    salt = "" if oracle == "inline" else f"{oracle}\0"  # inline keys are those of earlier releases: caches stay valid
    salt += "" if env is None else f"env={env.hash}\0"  # a verdict belongs to the libraries it ran with
    digest = hashlib.sha1(f"{salt}{timeout}\0{program}".encode()).hexdigest()[:16]
    return f"{index}:{digest}"


def load_cached_verdicts(path: Path) -> dict[str, dict]:
    return {row["key"]: row for row in read_log(path, required=("key", "passed", "result"))}


def environment_record(suite: Suite, per_task: dict) -> dict[str, dict]:
    """Which tasks ran on which suite environment, with every pinned version (the summary says what ran where)."""
    out = {}
    for env in suite.envs():
        ids = [t.task_id for t in suite.tasks if t.env == env and t.task_id in per_task]
        if ids:
            out[env.name] = {"hash": env.hash, "tasks": len(ids), "packages": env.packages(), "note": env.note}
    return out


def result_kind(result: str) -> str:
    """'failed: AssertionError: x' -> 'failed: AssertionError'; 'passed' and 'timed out' stay as they are."""
    if result.startswith("failed: "):
        return "failed: " + result[len("failed: "):].split(":")[0].split(" (")[0]
    return result


def score(samples: list[Sample], suite: Suite, out_dir: str | Path, make_pool: Callable, timeout: float,
          ks: list[int], meta: dict | None = None, notes: list[str] | None = None, sandbox: str = "docker",
          timeout_factor: float = 0.0, oracle: str = "inline", stages: dict | None = None) -> Summary:
    """Judges every sample not already judged, writes results.jsonl and summary.json, returns the Summary.
    `timeout`: the base per-sample timeout; with `timeout_factor` > 0 a task whose reference needs longer gets
    factor x the reference's time (calibrate.py). `meta`: Summary fields that say where the samples came from."""
    from harness import calibrate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_output_dir(out_dir, suite)
    tasks = suite.by_id()
    notes = list(notes or [])
    stages = dict(stages or {})
    with LazyPool(make_pool) as pool:
        timeout = max(timeout, suite.min_timeout)
        timeouts = {t.task_id: timeout for t in suite.tasks}
        broken, raised = {}, {}
        if timeout_factor > 0:
            t0 = time.perf_counter()
            sampled = {s.task_id for s in samples}
            times = calibrate.canonical_times(suite, sandbox, pool, oracle, only=sampled)
            timeouts = calibrate.task_timeouts(suite, times, timeout, timeout_factor)
            broken = {tid: t["result"] for tid, t in times.items() if not t["passed"] and tid in sampled}
            raised = {t: v for t, v in timeouts.items() if v > timeout}
            per_input = calibrate.input_times(suite, sandbox, pool)
            if per_input:
                tasks, timeouts = calibrate.with_input_limits(tasks, per_input, timeouts, timeout_factor)
                notes.append(f"per-input time limits (EvalPlus's max(1 s, {timeout_factor:g} x the reference's time "
                             f"on that input)) on {len(per_input)} task(s)")
            stages["calibrate_s"] = time.perf_counter() - t0
        programs = [tasks[s.task_id].program_from_solution(s.solution) if s.solution is not None
                    else tasks[s.task_id].program(s.completion) for s in samples]
        keys = [sample_key(i, p, timeouts[s.task_id], oracle, tasks[s.task_id].env)
                for i, (s, p) in enumerate(zip(samples, programs))]
        cached = load_cached_verdicts(out_dir / VERDICTS)
        todo = [i for i, k in enumerate(keys) if k not in cached]

        t0 = time.perf_counter()
        if todo:
            t_wait = time.perf_counter()
            pool()
            stages["pool_wait_s"] = time.perf_counter() - t_wait  # what container start-up still costs here
            if len(todo) < len(samples):
                print(f"resuming: {len(samples) - len(todo)} of {len(samples)} verdicts already in "
                      f"{out_dir / VERDICTS}", file=sys.stderr)
            jobs = [Job(i, programs[i], timeouts[samples[i].task_id], isolated_parts(tasks, samples[i], oracle),
                        env=tasks[samples[i].task_id].env) for i in todo]
            with open(out_dir / VERDICTS, "a", encoding="utf-8") as log:
                for job, v in progress(pool().run(jobs), total=len(jobs), desc=f"executing {suite.name}",
                                       unit="sample"):
                    row = {"key": keys[job.key], "passed": v.passed, "result": v.result, "elapsed": v.elapsed}
                    log.write(json.dumps(row) + "\n")
                    log.flush()  # written as it finishes: a killed run keeps everything judged so far
                    cached[row["key"]] = row
        exec_s = time.perf_counter() - t0

    t_write = time.perf_counter()
    rows, per_task, kinds = [], {}, Counter()
    for s, k in zip(samples, keys):
        v = cached[k]
        rows.append({**s.fields, "passed": v["passed"], "result": v["result"]})
        n, c = per_task.get(s.task_id, (0, 0))
        per_task[s.task_id] = (n + 1, c + int(v["passed"]))
        kinds[result_kind(v["result"])] += 1
    atomic.write_jsonl(out_dir / RESULTS, rows)

    missing = [t.task_id for t in suite.tasks if t.task_id not in per_task]
    if missing:
        notes.append(f"{len(missing)} of {len(suite.tasks)} task(s) had no sample and were not scored")
    if broken:
        notes.append(f"{len(broken)} task(s) whose reference solution fails in this sandbox: "
                     + ", ".join(f"{t} ({r[:60]})" for t, r in sorted(broken.items())[:5]))
    table, k_notes = pass_at_k(per_task, ks)
    notes += k_notes
    groups: dict[str, dict] = {}
    for t in suite.tasks:
        if t.group is not None and t.task_id in per_task:
            groups.setdefault(t.group, {})[t.task_id] = per_task[t.task_id]
    by_group = {g: pass_at_k(of_group, ks)[0] for g, of_group in groups.items()}
    ns = sorted({n for n, _ in per_task.values()})
    summary = Summary(
        suite=suite.name, suite_label=suite.label or None, suite_hash=suite.hash, samples=len(samples),
        timeout_s=timeout, sandbox=sandbox, oracle=oracle, harness_version=__version__, pass_at_k=table,
        pass_at_k_by_group=by_group, environments=environment_record(suite, per_task),
        tasks_scored=[t for t in suite.by_id() if t in per_task], tasks_missing=missing,
        samples_per_task=ns[0] if len(ns) == 1 else {"min": ns[0], "max": ns[-1]},
        result_counts=dict(kinds.most_common()),
        timings={"execute_s": round(exec_s, 3), "executed": len(todo), "cached": len(samples) - len(todo)},
        timeout_factor=timeout_factor,
        raised_timeouts=raised,
        notes=notes, **(meta or {}))
    stages["write_s"] = time.perf_counter() - t_write
    summary.timings["stages_s"] = {k: round(v, 3) for k, v in stages.items()}
    summary.write(out_dir / SUMMARY)
    return summary
