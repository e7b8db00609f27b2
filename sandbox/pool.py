"""SandboxPool: long-lived hardened worker containers that judge programs, replacing any that die."""
from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

from common.errors import UserError
from sandbox import image as sandbox_image
from sandbox.jobs import Job, Verdict
from sandbox.limits import Limits
from sandbox.policy import LABEL, OWNER_LABEL, docker_run_args

WORKER_PY = Path(__file__).resolve().parent / "worker.py"
BACKENDS = ("docker", "process")


WINDOW_PER_SLOT = 8  # jobs queued inside a worker per slot, so that it never waits on the host


def refill_plan(loads: list[int | None], pending: int, window: int, slots: int) -> list[int]:
    """How many pending jobs to hand each worker now. `loads[i]` is worker i's jobs in flight, None when dead.

    A worker is refilled only once it is down to half its window (so refills are batched: one write each), up to the
    full window; near the end what is left is spread over the workers instead of queued behind the first.
    """
    plan = []
    alive = max(1, len(loads))
    for load in loads:
        room = 0 if load is None or load > window // 2 else window - load
        room = min(room, max(slots, pending // alive), pending)
        plan.append(room)
        pending -= room
    return plan


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_containers() -> int:
    """Removes sandbox containers whose owning process (on this host) is gone. Returns how many."""
    r = sandbox_image.docker("ps", "-a", "--filter", f"label={LABEL}=1", "--format",
                             '{{.ID}} {{.Label "' + OWNER_LABEL + '"}}', check=False)
    stale = []
    for line in r.stdout.split("\n"):
        parts = line.split()
        if len(parts) != 2:
            continue
        cid, owner = parts
        host, _, pid = owner.rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            stale.append(cid)
    if stale:
        sandbox_image.docker("rm", "-f", *stale, check=False)
    return len(stale)


class _Worker:
    """One worker process (a container, or a host process for the process backend) and what it holds."""

    def __init__(self, pool: "SandboxPool", index: int):
        self.pool = pool
        self.index = index
        self.inflight: dict[int, tuple[Job, int]] = {}
        self.dead = False
        self.last_seen = time.monotonic()
        self.name = f"codeparrot-sandbox-{os.getpid()}-{index}-{uuid.uuid4().hex[:6]}"
        limits = pool.limits
        if pool.backend == "docker":
            cmd = sandbox_image.docker_cmd() + docker_run_args(limits, pool.image, self.name, _owner(), index)
        else:
            self.workdir = tempfile.mkdtemp(prefix="sandbox-process-")
            cmd = [sys.executable, "-u", "-I", str(WORKER_PY), "--no-setuid", "--work-root", self.workdir,
                   *limits.worker_args(index)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL if pool.backend == "docker" else None, bufsize=0)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.pool.events.put(("result", self, msg))
        self.pool.events.put(("dead", self, None))

    def send(self, batch: list[tuple[int, Job, int]]) -> bool:
        """Hands jobs over in one write (each write crosses the Docker attach proxy)."""
        if not self.inflight:
            self.last_seen = time.monotonic()  # the hang clock starts when it has work
        lines = []
        for jid, job, attempt in batch:
            self.inflight[jid] = (job, attempt)
            lines.append(json.dumps(job.message(jid)))
        try:
            self.proc.stdin.write(("\n".join(lines) + "\n").encode())
            return True
        except (BrokenPipeError, OSError):
            return False

    def kill(self):
        self.dead = True
        if self.pool.backend == "docker":
            sandbox_image.docker("rm", "-f", self.name, check=False)
        if self.proc.poll() is None:
            self.proc.kill()

    def stop(self):
        """Closing stdin tells the worker to stop; the container is --rm and removes itself."""
        self.dead = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def close(self, wait: float = 5.0):
        self.stop()
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.pool.backend == "process":
            shutil.rmtree(self.workdir, ignore_errors=True)


class SandboxPool:
    """Judges programs in parallel. Use as a context manager; `run` yields (job, verdict) as they finish."""

    def __init__(self, backend: str = "docker", workers: int | None = None, limits: Limits | None = None,
                 max_retries: int = 2, hang_after_s: float = 60.0):
        if backend not in BACKENDS:
            raise UserError(f"unknown sandbox backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.limits = limits or Limits()
        self.n_workers = workers or os.cpu_count() or 1
        self.max_retries = max_retries
        self.hang_after_s = hang_after_s
        self.events: queue.Queue = queue.Queue()
        self.replaced = 0
        if backend == "docker":
            self.image = sandbox_image.ensure_image()
            # cleanup of earlier crashed owners: nothing here depends on it, so it does not delay the start
            threading.Thread(target=remove_orphan_containers, daemon=True).start()
        else:
            print("WARNING: --sandbox process runs model-written code as ordinary processes on THIS host. "
                  "It is not isolation: use it only on machines without Docker, for code you would run yourself.",
                  file=sys.stderr, flush=True)
        self.workers: list[_Worker] = []
        starters = [threading.Thread(target=self._spawn, args=(i,)) for i in range(self.n_workers)]
        for t in starters:
            t.start()
        for t in starters:
            t.join()
        self.workers.sort(key=lambda w: w.index)
        self._next_index = self.n_workers
        atexit.register(self.close)

    def _spawn(self, index: int) -> _Worker:
        w = _Worker(self, index)
        self.workers.append(w)
        return w

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        workers, self.workers = self.workers, []
        for w in workers:
            w.stop()  # all of them first: the containers wind down in parallel
        for w in workers:
            w.close()

    def _replace(self, dead: _Worker) -> None:
        self.workers = [w for w in self.workers if w is not dead]
        self.replaced += 1
        self._spawn(self._next_index)
        self._next_index += 1

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Verdict]]:
        pending: deque[tuple[int, Job, int]] = deque((i, job, 0) for i, job in enumerate(jobs))
        # Jobs queued inside each worker so it never waits on us; refilled in batches (one write each).
        window = WINDOW_PER_SLOT * self.limits.slots
        outstanding = len(pending)
        while outstanding:
            workers = list(self.workers)
            loads = [None if w.dead else len(w.inflight) for w in workers]
            for w, take in zip(workers, refill_plan(loads, len(pending), window, self.limits.slots)):
                batch = [pending.popleft() for _ in range(take)]
                if batch and not w.send(batch):
                    w.kill()  # its reader reports it dead; its jobs, these included, are re-queued
            try:
                kind, w, msg = self.events.get(timeout=1.0)
            except queue.Empty:
                self._kill_hung_workers()
                continue
            if kind == "result":
                w.last_seen = time.monotonic()
                job, _ = w.inflight.pop(msg["id"], (None, 0))
                if job is None:
                    continue
                outstanding -= 1
                yield job, Verdict(passed=bool(msg["passed"]), result=msg["result"],
                                   output=msg.get("output", ""), elapsed=float(msg.get("elapsed", 0.0)))
            elif kind == "dead" and w in self.workers:
                w.kill()
                held, w.inflight = w.inflight, {}
                for jid, (job, attempt) in held.items():
                    if attempt + 1 > self.max_retries:
                        outstanding -= 1
                        yield job, Verdict(False, "failed: sandbox error (worker died on every retry)")
                    else:
                        pending.appendleft((jid, job, attempt + 1))
                self._replace(w)

    def _kill_hung_workers(self):
        now = time.monotonic()
        for w in self.workers:
            if w.inflight and now - w.last_seen > self.hang_after_s:
                w.kill()
            elif not w.inflight:
                w.last_seen = now

    def judge(self, jobs: Iterable[Job]) -> list[Verdict]:
        """All verdicts, in input order."""
        jobs = list(jobs)
        index = {id(job): i for i, job in enumerate(jobs)}
        out: list[Verdict | None] = [None] * len(jobs)
        for job, verdict in self.run(jobs):
            out[index[id(job)]] = verdict
        return out  # type: ignore[return-value]
