"""SandboxPool: long-lived hardened worker containers, on one or several Docker engines, that judge programs.

A container that dies is replaced and its samples re-run; an engine that dies takes its containers with it and
their samples finish on the other engines.
"""
from __future__ import annotations

import atexit
import itertools
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

from common.envspec import EnvSpec
from common.errors import UserError
from sandbox import envimage, image as sandbox_image
from sandbox.engine import Engine, engine_error, engine_urls
from sandbox.jobs import Job, Verdict
from sandbox.limits import Limits
from sandbox.policy import LABEL, OWNER_LABEL, container_spec

WORKER_DIR = Path(__file__).resolve().parent / "worker"  # run as a directory, as in the image
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


def plan_workers(cpus: list[int], total: int | None) -> list[int]:
    """Containers per engine, in proportion to the engines' CPUs (largest remainder); default one per CPU.

    Every engine gets at least one while there are as many containers as engines.
    """
    if not cpus:
        return []
    weights = [max(1, c) for c in cpus]
    total = sum(weights) if total is None else total
    floor = 1 if total >= len(weights) else 0
    rest = total - floor * len(weights)
    shares = [rest * w / sum(weights) for w in weights]
    plan = [floor + int(s) for s in shares]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in by_remainder[:total - sum(plan)]:
        plan[i] += 1
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


def remove_orphan_containers(engine: Engine) -> int:
    """Removes sandbox containers whose owning process (on this host) is gone. Returns how many."""
    stale = []
    try:
        for c in engine.labelled_containers(f"{LABEL}=1"):
            host, _, pid = (c.get("Labels") or {}).get(OWNER_LABEL, "").rpartition(":")
            if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
                stale.append(c["Id"])
    except Exception:  # noqa: BLE001 - cleanup is best effort; nothing depends on it
        return 0
    for cid in stale:
        engine.remove(cid)
    return len(stale)


class _Worker:
    """One worker: a container on an engine (docker backend) or a host process (process backend)."""

    def __init__(self, pool: "SandboxPool", index: int, engine: Engine | None):
        self.pool = pool
        self.index = index
        self.engine = engine
        self.inflight: dict[int, tuple[Job, int]] = {}
        self.dead = False
        self.retiring = False  # said it is not back to its baseline: gets no more jobs, is replaced when it exits
        self.last_seen = time.monotonic()
        self.name = f"codeparrot-sandbox-{os.getpid()}-{index}-{uuid.uuid4().hex[:6]}"
        limits = pool.limits
        if engine is not None:
            self.proc = None
            self.conn = engine.start_attached(container_spec(limits, pool.images[engine.url], self.name, _owner(),
                                                             index, pool.worker_extra_args()))
            lines = self.conn.lines()
        else:
            self.conn = None
            self.workdir = tempfile.mkdtemp(prefix="sandbox-process-")
            cmd = [sys.executable, "-u", "-I", str(WORKER_DIR), "--no-setuid", "--work-root", self.workdir,
                   *limits.worker_args(index), *pool.worker_extra_args()]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            lines = self.proc.stdout
        self.reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self.reader.start()

    def _read(self, lines):
        try:
            for line in lines:
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.pool.events.put(("result", self, msg))
        finally:
            self.pool.events.put(("dead", self, None))

    def send(self, batch: list[tuple[int, Job, int]]) -> bool:
        """Hands jobs over in one write (each write crosses the engine's attach connection)."""
        if not self.inflight:
            self.last_seen = time.monotonic()  # the hang clock starts when it has work
        lines = []
        for jid, job, attempt in batch:
            self.inflight[jid] = (job, attempt)
            lines.append(json.dumps(job.message(jid)))
        data = ("\n".join(lines) + "\n").encode()
        try:
            if self.conn is not None:
                self.conn.write(data)
            else:
                self.proc.stdin.write(data)
            return True
        except (BrokenPipeError, OSError):
            return False

    def cancel(self, jids: list[int]) -> None:
        """Jobs nobody waits for any more: the worker drops those it has not started (the others' verdicts, when
        they come, are ignored: they are no longer in `inflight`)."""
        for jid in jids:
            self.inflight.pop(jid, None)
        data = (json.dumps({"cancel": jids}) + "\n").encode()
        try:
            if self.conn is not None:
                self.conn.write(data)
            else:
                self.proc.stdin.write(data)
        except (BrokenPipeError, OSError):
            pass  # its reader reports it dead

    def kill(self):
        self.dead = True
        if self.conn is not None:
            self.engine.remove(self.conn.cid)
            self.conn.close()
        elif self.proc.poll() is None:
            self.proc.kill()

    def stop(self):
        """Closing stdin tells the worker to stop; the container is auto-removed when it exits."""
        self.dead = True
        try:
            if self.conn is not None:
                self.conn.close_stdin()
            else:
                self.proc.stdin.close()
        except OSError:
            pass

    def close(self, wait: float = 5.0):
        self.stop()
        if self.conn is not None:
            self.reader.join(wait)  # the stream ends when the container has exited
            if self.reader.is_alive():
                self.kill()
            self.conn.close()
            return
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


class SandboxPool:
    """Judges programs in parallel. Use as a context manager; `run` yields (job, verdict) as they finish.

    The containers start in the background: construct the pool first, read the samples, then call `run`.
    `engines` lists Docker engine URLs (default: `--docker-host` / HARNESS_DOCKER_HOSTS / DOCKER_HOST / local).
    """

    def __init__(self, backend: str = "docker", workers: int | None = None, limits: Limits | None = None,
                 max_retries: int = 2, hang_after_s: float = 60.0, engines: list[str] | None = None,
                 env: EnvSpec | None = None):
        if backend not in BACKENDS:
            raise UserError(f"unknown sandbox backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.env = env
        self.limits = (limits or Limits()).raised(env.limits if env is not None else ())
        self.max_retries = max_retries
        self.hang_after_s = hang_after_s
        self.events: queue.Queue = queue.Queue()
        self.replaced = 0
        self.engine_errors: dict[str, str] = {}
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._spawn_errors: list[str] = []
        if backend == "docker":
            self.engines = connect_engines(engine_urls(engines))
            self.images = ensure_images(self.engines, env)
            per_engine = plan_workers([e.cpus for e in self.engines], workers)
            placements = [e for e, n in zip(self.engines, per_engine) for _ in range(n)]
            for e in self.engines:  # cleanup of earlier crashed owners: nothing waits on it
                threading.Thread(target=remove_orphan_containers, args=(e,), daemon=True).start()
        else:
            print("WARNING: --sandbox process runs model-written code as ordinary processes on THIS host. "
                  "It is not isolation: use it only on machines without Docker, for code you would run yourself.",
                  file=sys.stderr, flush=True)
            self.engines = []
            placements = [None] * (workers or os.cpu_count() or 1)
        self.n_workers = len(placements)
        self._starters = [threading.Thread(target=self._spawn, args=(i, e), daemon=True)
                          for i, e in enumerate(placements)]
        for t in self._starters:
            t.start()
        self._next_index = self.n_workers
        atexit.register(self.close)

    def worker_extra_args(self) -> tuple[str, ...]:
        """The suite environment's run-time settings (preload, variables) for the worker's command line."""
        return ("--suite-env", json.dumps(self.env.runtime())) if self.env is not None else ()

    @property
    def workers(self) -> list[_Worker]:
        """The live workers, once every container of the first start is up."""
        self.wait_started()
        return self._workers

    def live_workers(self) -> list[_Worker]:
        """The workers that take jobs now (not dead, not retiring); callable from any thread (harness serve's ping)."""
        return [w for w in list(self._workers) if not w.dead and not w.retiring]

    def wait_started(self) -> None:
        for t in self._starters:
            t.join()
        self._starters = []
        if not self._workers and self.n_workers:
            raise UserError("no sandbox container started: " + "; ".join(dict.fromkeys(self._spawn_errors))[:500])
        self._workers.sort(key=lambda w: w.index)

    def _spawn(self, index: int, engine: Engine | None) -> _Worker | None:
        try:
            w = _Worker(self, index, engine)
        except Exception as exc:  # noqa: BLE001 - recorded; the run fails only when no engine can start one
            if engine is None:
                raise
            self._spawn_errors.append(engine_error(engine.url, exc))
            return None
        with self._lock:
            self._workers.append(w)
        return w

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for t in self._starters:
            t.join()
        workers, self._workers = self._workers, []
        for w in workers:
            w.stop()  # all of them first: the containers wind down in parallel
        for w in workers:
            w.close()

    def _live_engines(self) -> list[Engine]:
        return [e for e in self.engines if not e.dead]

    def _lose_engine(self, engine: Engine, why: str) -> None:
        engine.dead = True
        self.engine_errors[engine.url] = why
        print(f"[sandbox] lost Docker engine {engine.url} ({why}); its samples finish on the other engines",
              file=sys.stderr, flush=True)

    def _replace(self, dead: _Worker, engine_lost: bool) -> None:
        """A new worker for a dead one: on the same engine, or (engine gone) only if no worker is left at all."""
        self._workers = [w for w in self._workers if w is not dead]
        if engine_lost and any(not w.dead for w in self._workers):
            return  # the surviving engines' containers (sized to their CPUs) take the samples
        candidates = [None] if dead.engine is None else (
            ([dead.engine] if not engine_lost else []) + [e for e in self._live_engines() if e is not dead.engine])
        for engine in candidates:
            if self._spawn(self._next_index, engine) is not None:
                self._next_index += 1
                self.replaced += 1
                return
            if engine is not None and not engine.alive():
                self._lose_engine(engine, self._spawn_errors[-1] if self._spawn_errors else "it stopped answering")
        if not any(not w.dead for w in self._workers):
            lost = "; ".join(f"{u}: {why}" for u, why in self.engine_errors.items()) or "; ".join(self._spawn_errors)
            raise UserError(f"every Docker engine of this run failed ({lost[:400]}): start an engine or point "
                            "--docker-host / HARNESS_DOCKER_HOSTS at one that answers, then re-run "
                            "(finished evaluations are cached)")

    def run(self, jobs: Iterable[Job | None]) -> Iterator[tuple[Job, Verdict]]:
        """Yields (job, verdict) as verdicts come. `jobs` is consumed lazily (a generator of any length runs in
        flat memory): only a look-ahead of a few windows per worker is held here. A source that yields None has
        nothing right now but is not finished (a `JobFeed`): the loop goes on with what it holds and asks again
        when an event (a verdict, or the feed's wake-up) comes."""
        source = iter(jobs)
        dropped = getattr(source, "take_dropped", None)  # a JobFeed whose clients may go away
        ids = itertools.count()
        pending: deque[tuple[int, Job, int]] = deque()
        self.wait_started()
        # Jobs queued inside each worker so it never waits on us; refilled in batches (one write each).
        window = WINDOW_PER_SLOT * self.limits.slots
        outstanding = 0
        exhausted = False
        while True:
            if not exhausted:
                lookahead = 2 * window * max(1, len(self._workers))
                while len(pending) < lookahead:
                    try:
                        job = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    if job is None:
                        break  # a live feed with nothing more for now
                    pending.append((next(ids), job, 0))
                    outstanding += 1
            if not outstanding and exhausted:
                return
            workers = list(self._workers)
            loads = [None if w.dead or w.retiring else len(w.inflight) for w in workers]
            # before the source is exhausted, the tail is not near: no spreading yet
            left = len(pending) if exhausted else len(pending) + window * len(workers)
            for w, take in zip(workers, refill_plan(loads, left, window, self.limits.slots)):
                batch = [pending.popleft() for _ in range(min(take, len(pending)))]
                if batch and not w.send(batch):
                    w.kill()  # its reader reports it dead; its jobs, these included, are re-queued
            try:
                kind, w, msg = self.events.get(timeout=1.0)
            except queue.Empty:
                self._kill_hung_workers()
                continue
            if kind == "wake":
                if dropped is not None and dropped():
                    outstanding -= self._drop(pending, source.skip)
                continue  # a JobFeed has jobs, dropped some, or closed
            if kind == "result" and "retire" in msg:
                w.retiring = True
                print(f"[sandbox] replacing container {w.name}: {msg['retire']}", file=sys.stderr, flush=True)
            elif kind == "result":
                w.last_seen = time.monotonic()
                job, _ = w.inflight.pop(msg["id"], (None, 0))
                if job is None:
                    continue  # a late answer from a worker already given up: its job was re-queued
                outstanding -= 1
                yield job, Verdict(passed=bool(msg["passed"]), result=msg["result"],
                                   output=msg.get("output", ""), elapsed=float(msg.get("elapsed", 0.0)),
                                   cpu=float(msg.get("cpu", 0.0)), stderr=msg.get("stderr", ""),
                                   exit_code=msg.get("exit_code"), files=msg.get("files", {}))
            elif kind == "dead" and w in self._workers:
                engine_lost = w.engine is not None and not w.engine.alive()
                if engine_lost and w.engine.url not in self.engine_errors:
                    self._lose_engine(w.engine, "it stopped answering")
                w.kill()
                held, w.inflight = w.inflight, {}
                for jid, (job, attempt) in held.items():
                    if engine_lost or w.retiring:
                        pending.appendleft((jid, job, attempt))  # not the sample's fault: no retry spent
                        # (a retiring container answered every sample it ran: what it held had not started)
                    elif attempt + 1 > self.max_retries:
                        outstanding -= 1
                        yield job, Verdict(False, "failed: sandbox error (worker died on every retry)")
                    else:
                        pending.appendleft((jid, job, attempt + 1))
                self._replace(w, engine_lost)

    def _drop(self, pending: deque, skip) -> int:
        """Removes the jobs `skip` says nobody waits for, from the look-ahead and from the workers' queues. Returns
        how many."""
        kept = [p for p in pending if not skip(p[1])]
        n = len(pending) - len(kept)
        pending.clear()
        pending.extend(kept)
        for w in self._workers:
            gone = [jid for jid, (job, _) in w.inflight.items() if skip(job)]
            if gone and not w.dead:
                w.cancel(gone)
                n += len(gone)
        return n

    def _kill_hung_workers(self):
        now = time.monotonic()
        for w in self._workers:
            if not w.inflight:
                w.last_seen = now
                continue
            # a sample answers within its wall-clock backstop (twice that when it is re-run once): a worker is hung
            # only when it has been silent for longer than its longest sample may take
            longest = max(job.timeout for job, _ in w.inflight.values())
            if now - w.last_seen > self.hang_after_s + 2 * self.limits.wall_factor * longest:
                w.kill()

    def judge(self, jobs: Iterable[Job]) -> list[Verdict]:
        """All verdicts, in input order."""
        return judge_in_order(self.run, jobs)


def judge_in_order(run, jobs: Iterable[Job]) -> list[Verdict]:
    """`run(jobs)`'s verdicts (yielded as they finish) put back in the jobs' order."""
    jobs = list(jobs)
    index = {id(job): i for i, job in enumerate(jobs)}
    out: list[Verdict | None] = [None] * len(jobs)
    for job, verdict in run(jobs):
        out[index[id(job)]] = verdict
    return out  # type: ignore[return-value]


class JobFeed:
    """A job source for `SandboxPool.run` that stays open while jobs are put in from other threads (the judge
    service): iterating yields the next job, or None when there is none right now; `put` wakes the pool's loop, and
    the run ends once the feed is closed and drained. Jobs for which `skip(job)` is true when their turn comes (their
    client went away) are dropped without running."""

    def __init__(self, pool: "SandboxPool", skip=None):
        self._events = pool.events
        self._jobs: deque[Job] = deque()
        self.skip = skip or (lambda job: False)
        self.closed = False
        self._dropped = False

    def dropped(self) -> None:
        """Some jobs became skippable (their client went away): the pool removes them from its queues too."""
        self._dropped = True
        self._events.put(("wake", None, None))

    def take_dropped(self) -> bool:
        was, self._dropped = self._dropped, False
        return was

    def put(self, job: Job) -> None:
        self._jobs.append(job)  # deque.append is atomic: no lock needed between one producer side and the pool
        self._events.put(("wake", None, None))

    def close(self) -> None:
        self.closed = True
        self._events.put(("wake", None, None))

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self):
        return self

    def __next__(self) -> Job | None:
        while True:
            try:
                job = self._jobs.popleft()
            except IndexError:
                if self.closed:
                    raise StopIteration
                return None
            if not self.skip(job):
                return job


def connect_engines(urls: list[str]) -> list[Engine]:
    """Every engine that answers; one that does not is skipped with a line, none answering is the error."""
    engines, errors = [], []
    for url in urls:
        try:
            engines.append(Engine(url))
        except UserError as exc:
            errors.append(str(exc))
    if not engines:
        raise UserError(errors[0] if len(errors) == 1 else
                        f"no Docker engine answers ({', '.join(urls)}): start one or fix --docker-host / "
                        "HARNESS_DOCKER_HOSTS, or pass --sandbox process (no isolation)")
    for e in errors:
        print(f"[sandbox] skipping an engine: {e}", file=sys.stderr, flush=True)
    return engines


def ensure_images(engines: list[Engine], env: EnvSpec | None = None) -> dict[str, str]:
    """The sandbox image (and, with `env`, that environment's image on top of it) on every engine: built once,
    then copied to the engines that lack it."""
    have = sorted(engines, key=lambda e: not e.has_image(sandbox_image.image_tag()))
    images: dict[str, str] = {}
    for engine in have:
        images[engine.url] = sandbox_image.ensure_image(engine=engine, donors=[e for e in have if e.url in images])
    if env is None:
        return images
    base = sandbox_image.image_tag()
    have = sorted(engines, key=lambda e: not e.has_image(envimage.env_tag(env, base)))
    env_images: dict[str, str] = {}
    for engine in have:
        env_images[engine.url] = envimage.ensure_env_image(env, base, engine,
                                                           donors=[e for e in have if e.url in env_images])
    return env_images
