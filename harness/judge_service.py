"""The judge service behind `harness serve`: one SandboxPool fed by many concurrent requests, with a bounded queue
(backpressure, not collapse), a deadline per request, the queued work of a client that went away dropped, and
infrastructure faults retried inside and, when they persist, answered as `error`, never as a failed sample.

Requests become `Job`s exactly as `harness eval --samples` makes them (the same calibrated per-task timeouts and
per-input limits, the same oracle), so a verdict from the service is the offline verdict for the same sample.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from common.errors import UserError
from harness import calibrate
from harness.config import SandboxConfig
from harness.samples import Sample
from harness.scoring import isolated_parts
from sandbox.jobs import IsolatedParts, Job, RunParts, Verdict
from sandbox.pool import JobFeed, SandboxPool
from tasks import Suite, Task

STATUSES = ("passed", "failed", "timeout", "error")
RETRIES = 2  # further tries of an item whose verdict is a sandbox error (the pool already re-ran a dead worker's)
RATE_WINDOW = 256  # recent verdicts the rate that Retry-After is estimated from is measured over


def verdict_status(v: Verdict) -> str:
    if v.passed:
        return "passed"
    if v.infrastructure_error:
        return "error"
    if v.result == "timed out":
        return "timeout"
    return "failed"


class BadItem(UserError):
    """An item the service cannot judge (unknown suite or task, no code): the request is answered 4xx."""

    def __init__(self, message: str, status_code: int = 422):
        super().__init__(message)
        self.status_code = status_code


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the judge queue is full: retry in {retry_after} s")
        self.retry_after = retry_after


class ServiceDown(Exception):
    """No sandbox worker is left (every engine failed): nothing can be judged until the server restarts."""


class SuiteCatalog:
    """The suites a server judges, calibrated once at start-up (before the pool is shared), and the Job for an item."""

    def __init__(self, suites: list[Suite], sandbox: SandboxConfig, pool: SandboxPool):
        self.sandbox = sandbox
        self.suites = {s.name: s for s in suites}
        self.by_id = {s.name: s.by_id() for s in suites}
        self.times: dict[str, dict] = {}
        self.per_input: dict[str, dict] = {}
        if sandbox.timeout_factor > 0:
            for s in suites:  # cached on disk per suite and image: a restart with the same image times nothing
                self.times[s.name] = calibrate.canonical_times(s, sandbox.backend, lambda: pool, sandbox.oracle)
                self.per_input[s.name] = calibrate.input_times(s, sandbox.backend, lambda: pool)
        self._limits: dict[tuple[str, float], tuple[dict[str, Task], dict[str, float]]] = {}

    def limits(self, name: str, base: float) -> tuple[dict[str, Task], dict[str, float]]:
        """(tasks, timeouts) of a suite for a base timeout, as `harness eval` computes them (scoring.score)."""
        suite = self.suites[name]
        base = max(base, suite.min_timeout)
        key = (name, base)
        if key not in self._limits:
            tasks = self.by_id[name]
            timeouts = {t: base for t in tasks}
            if self.sandbox.timeout_factor > 0:
                factor = self.sandbox.timeout_factor
                timeouts = calibrate.task_timeouts(suite, self.times[name], base, factor)
                if self.per_input[name]:
                    tasks, timeouts = calibrate.with_input_limits(tasks, self.per_input[name], timeouts, factor)
            if len(self._limits) > 64:
                self._limits.clear()
            self._limits[key] = tasks, timeouts
        return self._limits[key]

    def task(self, suite: str, task_id) -> Task:
        if suite not in self.suites:
            raise BadItem(f"unknown suite {suite!r}: this server judges {', '.join(sorted(self.suites))}", 404)
        tasks = self.by_id[suite]
        tid = str(task_id)
        if tid not in tasks and isinstance(task_id, int):  # SandboxFusion's integer ids: MBPP's 11 is Mbpp/11
            prefix = next(iter(tasks)).rpartition("/")[0]
            tid = f"{prefix}/{task_id}"
        if tid not in tasks:
            raise BadItem(f"unknown task {task_id!r} in suite {suite!r} (ids look like {next(iter(tasks))!r})", 404)
        return tasks[tid]

    def suite_job(self, key, suite: str, task_id, completion: str | None, solution: str | None,
                  timeout: float | None, memory_mb: int | None) -> Job:
        task = self.task(suite, task_id)
        if (completion is None) == (solution is None):
            raise BadItem(f"item for {suite} {task.task_id} needs exactly one of 'completion' (the text after the "
                          "prompt) or 'solution' (a whole program)")
        tasks, timeouts = self.limits(suite, self.sandbox.timeout if timeout is None else timeout)
        task = tasks[task.task_id]  # with its per-input limits, where the suite has them
        sample = Sample(task.task_id, solution if solution is not None else completion, solution=solution)
        program = task.program_from_solution(solution) if solution is not None else task.program(completion)
        return Job(key, program, timeouts[task.task_id], isolated_parts(tasks, sample, self.sandbox.oracle),
                   memory_mb=memory_mb)

    def program_job(self, key, program: str, test: str | None, entry_point: str | None, timeout: float | None,
                    memory_mb: int | None) -> Job:
        """A bare program (its own asserts: judged inline, whatever the oracle), or a program with a human-eval
        test (`check(candidate)`) and the entry point it checks (judged by the server's oracle)."""
        timeout = self.sandbox.timeout if timeout is None else timeout
        if test is None:
            return Job(key, program, timeout, memory_mb=memory_mb)
        if not entry_point:
            raise BadItem("an item with a 'test' needs the 'entry_point' its check(candidate) is called with")
        parts = None
        if self.sandbox.oracle == "isolated":
            parts = IsolatedParts(untrusted=program, trusted="", test=test, entry_point=entry_point)
        return Job(key, program + "\n" + test + f"\ncheck({entry_point})\n", timeout, parts, memory_mb=memory_mb)

    def run_job(self, key, program: str, timeout: float, memory_mb: int | None, stdin: str, files: dict[str, str],
                fetch: list[str]) -> Job:
        return Job(key, program, timeout, run=RunParts(stdin=stdin, files=files, fetch=fetch), memory_mb=memory_mb)


@dataclass(eq=False)
class Ticket:
    """One request's items inside the service: filled in by the dispatcher thread, awaited by the request."""
    jobs: list[Job]
    deadline: float  # monotonic
    loop: asyncio.AbstractEventLoop | None
    verdicts: list[Verdict | None] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    left: int = 0
    cancelled: bool = False
    future: asyncio.Future | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self) -> None:
        self.done.set()
        if self.future is not None:
            self.loop.call_soon_threadsafe(lambda: self.future.done() or self.future.set_result(None))


class Metrics:
    """Prometheus counters of the service, in a registry of its own (one server, one registry)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the *_created series say when the process started, nothing a reader needs
        self.registry = CollectorRegistry()
        self.requests = Counter("harness_serve_requests", "HTTP requests answered", ["endpoint", "code"],
                                registry=self.registry)
        self.verdicts = Counter("harness_serve_verdicts", "Items judged, by status", ["status"],
                                registry=self.registry)
        self.retries = Counter("harness_serve_retries", "Items re-run after a sandbox error", registry=self.registry)
        self.dropped = Counter("harness_serve_dropped", "Items dropped: their client went away or their deadline "
                                                        "passed", registry=self.registry)
        self.rejected = Counter("harness_serve_rejected", "Requests refused with 429 (queue full)",
                                registry=self.registry)
        self.queue_depth = Gauge("harness_serve_queue_depth", "Items accepted and not yet judged",
                                 registry=self.registry)
        self.latency = Histogram("harness_serve_request_seconds", "Request latency", ["endpoint"],
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
                                 registry=self.registry)
        for status in STATUSES:
            self.verdicts.labels(status)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class JudgeService:
    """Owns the pool's run loop (a thread) and the bounded queue in front of it. Thread-safe `submit`."""

    def __init__(self, pool: SandboxPool, catalog: SuiteCatalog, max_queue: int = 4096, deadline_s: float = 300.0):
        self.pool, self.catalog = pool, catalog
        self.max_queue, self.deadline_s = max_queue, deadline_s
        self.metrics = Metrics()
        self.feed = JobFeed(pool, skip=lambda job: job.key[0].cancelled)
        self.down: str | None = None
        self._lock = threading.Lock()
        self._tickets: set[Ticket] = set()
        self._in_system = 0  # items accepted and not yet answered
        self._recent: deque[float] = deque(maxlen=RATE_WINDOW)  # when the last verdicts came
        self._thread = threading.Thread(target=self._dispatch, name="judge-dispatch", daemon=True)
        self._thread.start()

    # ---- requests' side ------------------------------------------------------------------------
    def submit(self, jobs: list[Job], deadline_s: float | None = None,
               loop: asyncio.AbstractEventLoop | None = None) -> Ticket:
        """Queues a request's jobs (their keys are replaced by (ticket, index)). QueueFull when they do not fit."""
        if self.down:
            raise ServiceDown(self.down)
        ticket = Ticket(jobs, time.monotonic() + (deadline_s or self.deadline_s), loop,
                        verdicts=[None] * len(jobs), attempts=[0] * len(jobs), left=len(jobs))
        if loop is not None:
            ticket.future = loop.create_future()
        with self._lock:
            if self._in_system and self._in_system + len(jobs) > self.max_queue:
                self.metrics.rejected.inc()
                raise QueueFull(self.retry_after())
            self._in_system += len(jobs)
            self._tickets.add(ticket)
            self.metrics.queue_depth.set(self._in_system)
        for i, job in enumerate(jobs):
            job.key = (ticket, i)
            self.feed.put(job)
        if not jobs:
            ticket.finish()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """The client went away or its deadline passed: what is still queued is dropped, what runs is ignored."""
        with self._lock:
            if ticket.cancelled or ticket not in self._tickets:
                return
            ticket.cancelled = True
            self._tickets.discard(ticket)
            self._in_system -= ticket.left
            self.metrics.dropped.inc(ticket.left)
            self.metrics.queue_depth.set(self._in_system)
        self.feed.dropped()

    def retry_after(self) -> int:
        """Seconds until the queue has room, from the recent verdict rate (at least 1, at most 60)."""
        recent = list(self._recent)
        span = recent[-1] - recent[0] if len(recent) > 1 else 0.0
        rate = (len(recent) - 1) / span if span > 0 else 1.0
        return int(min(60, max(1, math.ceil(self._in_system / rate))))

    def depth(self) -> int:
        return self._in_system

    def health(self) -> dict:
        workers = self.pool.live_workers()
        engines = {w.engine.url for w in workers if w.engine is not None}
        return {"status": "ok" if workers and not self.down else "down", "reason": self.down,
                "workers": len(workers), "slots": len(workers) * self.pool.limits.slots,
                "engines": len(engines) if self.pool.engines else 0, "engines_total": len(self.pool.engines),
                "queue": self._in_system, "oracle": self.catalog.sandbox.oracle,
                "suites": sorted(self.catalog.suites)}

    def close(self) -> None:
        self.feed.close()
        self._thread.join(10)

    # ---- the dispatcher thread -----------------------------------------------------------------
    def _dispatch(self) -> None:
        try:
            for job, verdict in self.pool.run(self.feed):
                self._resolve(job, verdict)
        except BaseException as exc:  # noqa: BLE001 - every engine failed: answered as errors, ping says down
            self.down = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            with self._lock:
                tickets, self._tickets = list(self._tickets), set()
                self._in_system = 0
            for ticket in tickets:
                for i, v in enumerate(ticket.verdicts):
                    if v is None:
                        ticket.verdicts[i] = Verdict(False, f"failed: sandbox error ({self.down})")
                ticket.finish()

    def _resolve(self, job: Job, verdict: Verdict) -> None:
        ticket, i = job.key
        if ticket.cancelled:
            return
        if verdict.infrastructure_error and ticket.attempts[i] < RETRIES and time.monotonic() < ticket.deadline:
            ticket.attempts[i] += 1
            self.metrics.retries.inc()
            self.feed.put(job)
            return
        with self._lock:
            if ticket.cancelled:
                return
            self.metrics.verdicts.labels(verdict_status(verdict)).inc()
            ticket.verdicts[i] = verdict
            ticket.left -= 1
            self._in_system -= 1
            self.metrics.queue_depth.set(self._in_system)
            self._recent.append(time.monotonic())
            finished = ticket.left == 0
            if finished:
                self._tickets.discard(ticket)
        if finished:
            ticket.finish()
