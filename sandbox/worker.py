"""In-container worker: reads jobs (JSON lines) on stdin, runs each in a forked, confined child, writes verdicts (JSON lines) on stdout.

Standard library only: this file is copied into the sandbox image and must run on the image's python3.
The interpreter stays warm; one fork per sample costs well under a millisecond.

Protocol, one JSON object per line:
    in:  {"id": ..., "program": "...", "timeout": 3.0}
    out: {"id": ..., "passed": bool, "result": "passed" | "failed: ..." | "timed out", "output": "...", "elapsed": s}
"""
import argparse
import builtins
import gc
import json
import os
import resource
import secrets
import select
import shutil
import signal
import sys
import time

READ_CHUNK = 65536
FLUSH_EVERY_S = 0.01  # verdicts are sent in batches at most this old: each write crosses the Docker attach proxy
# Imported once here so that a sample importing them pays nothing: the child inherits them from the fork.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "string", "random", "hashlib",
           "copy", "heapq", "bisect", "operator")
PAGE = resource.getpagesize()
MB = 2**20
SAMPLE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
# The child's file descriptors (the protocol between worker and sample): stdin is /dev/null, stdout and stderr
# share the capped output pipe, RESULT_FD carries the verdict marker; every other fd is closed before the sample.
STDIN_FD, STDOUT_FD, STDERR_FD, RESULT_FD = 0, 1, 2, 3
FIRST_CLOSED_FD = RESULT_FD + 1
RESULT_CAP = 1024  # bytes of the result pipe kept: the marker or an error message
KILL_GRACE_S = 0.5  # after SIGKILL, how long to wait for the kernel to reap before declaring the slot lost


def parse_args(argv):
    p = argparse.ArgumentParser()
    # The limits have no defaults here: the host passes every one (sandbox/limits.py is their only home).
    p.add_argument("--slots", type=int, required=True, help="samples run at the same time")
    p.add_argument("--work-root", default="/work", help="one sub-directory (a tmpfs in Docker) per slot")
    p.add_argument("--uid-base", type=int, required=True, help="slot i runs as uid/gid uid_base + i")
    p.add_argument("--no-setuid", action="store_true", help="host-process backend: keep the caller's uid")
    p.add_argument("--memory-mb", type=int, required=True, help="address-space budget above the child's size")
    p.add_argument("--fsize-mb", type=int, required=True, help="largest file a sample may write")
    p.add_argument("--nofile", type=int, required=True)
    p.add_argument("--nproc", type=int, required=True, help="processes + threads per sample uid")
    p.add_argument("--output-cap", type=int, required=True, help="bytes of stdout+stderr kept per sample")
    return p.parse_args(argv)


def describe_exception(exc):
    msg = str(exc)
    name = type(exc).__name__
    return f"{name}: {msg}" if msg else name


def run_child(program, result_fd, token):
    """Runs in the forked child after confinement. Never returns."""
    code = None
    try:
        code = compile(program, "<sample>", "exec")
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        exec(code, namespace)  # noqa: S102 - this is the sandboxed execution
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are failures too
        verdict = b"F" + describe_exception(exc)[:500].encode("utf-8", "replace")
    else:
        # Positive marker, only reachable once the whole program, check(...) included, returned.
        verdict = b"P" + token
    try:
        os.write(result_fd, verdict)
    finally:
        os._exit(0)


class Slot:
    """One concurrent sample: its uid, its work dir, and the state of the child running in it."""

    def __init__(self, index, work_root, uid):
        self.index = index
        self.uid = uid
        self.workdir = os.path.join(work_root, str(index))
        self.clear()

    def clear(self):
        """No sample in the slot. Every per-sample attribute is declared here."""
        self.job = None  # the job dict being run
        self.pid = None  # the child's pid (also its process group and session id)
        self.token = None  # the per-sample pass marker, known only to the worker and the child
        self.out_fd = None  # read end of the child's stdout+stderr pipe
        self.res_fd = None  # read end of the child's RESULT_FD pipe
        self.output = bytearray()  # captured output, at most --output-cap bytes
        self.dropped = 0  # output bytes read past the cap and dropped
        self.result = bytearray()  # what the child wrote on RESULT_FD, at most RESULT_CAP bytes
        self.started = 0.0  # monotonic start time
        self.deadline = 0.0  # monotonic wall-clock deadline
        self.timed_out = False

    def begin(self, job, pid, token, out_fd, res_fd, timeout):
        self.clear()
        self.job, self.pid, self.token, self.out_fd, self.res_fd = job, pid, token, out_fd, res_fd
        self.started = time.monotonic()
        self.deadline = self.started + timeout

    def busy(self):
        return self.job is not None


class Worker:
    def __init__(self, args):
        self.args = args
        self.setuid = not args.no_setuid and os.geteuid() == 0
        self.slots = [Slot(i, args.work_root, args.uid_base + i) for i in range(args.slots)]
        for slot in self.slots:
            os.makedirs(slot.workdir, exist_ok=True)
        self.queue = []
        self.outbuf = []
        self.first_unsent = 0.0  # when the oldest unsent verdict was buffered
        self.inbuf = b""
        self.stdin_open = True
        self.fd_owner = {}  # fd -> (slot, "out" | "res")
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        os.set_blocking(0, False)
        # Scrub the environment once, here, rather than in every child (clearing os.environ costs a fork's worth).
        os.environ.clear()
        os.environ.update(SAMPLE_ENV)
        for name in PRELOAD:
            try:
                __import__(name)
            except ImportError:
                pass
        # Children must not copy-on-write the whole heap: a frozen heap is never walked by the child's GC.
        gc.freeze()

    # ---- host protocol -------------------------------------------------------------------
    def read_stdin(self):
        while True:
            try:
                chunk = os.read(0, READ_CHUNK)
            except BlockingIOError:
                return
            if not chunk:
                self.stdin_open = False
                return
            self.inbuf += chunk
            *lines, self.inbuf = self.inbuf.split(b"\n")
            for line in lines:
                if line.strip():
                    self.queue.append(json.loads(line))

    def emit(self, job, passed, result, output, elapsed):
        if not self.outbuf:
            self.first_unsent = time.monotonic()
        self.outbuf.append(json.dumps({"id": job["id"], "passed": passed, "result": result,
                                       "output": output.decode("utf-8", "replace"), "elapsed": round(elapsed, 4)}))

    def flush(self, force=False):
        """Sends buffered verdicts when the batch is old enough, or when nothing else is running."""
        if not self.outbuf:
            return
        idle = not any(s.busy() for s in self.slots) and not self.queue
        if not (force or idle or time.monotonic() - self.first_unsent >= FLUSH_EVERY_S):
            return
        data = ("\n".join(self.outbuf) + "\n").encode()
        self.outbuf = []
        while data:
            try:
                data = data[os.write(1, data):]
            except BlockingIOError:
                select.select([], [1], [])

    # ---- one sample ----------------------------------------------------------------------
    def start(self, slot, job):
        out_r, out_w = os.pipe()
        res_r, res_w = os.pipe()
        token = secrets.token_hex(16).encode()
        timeout = float(job["timeout"])
        pid = os.fork()
        if pid == 0:
            self.confine_child(slot, out_w, res_w, timeout)
            run_child(job["program"], RESULT_FD, token)
        os.close(out_w)
        os.close(res_w)
        for fd in (out_r, res_r):
            os.set_blocking(fd, False)
        self.fd_owner[out_r] = (slot, "out")
        self.fd_owner[res_r] = (slot, "res")
        slot.begin(job, pid, token, out_r, res_r, timeout)

    def confine_child(self, slot, out_w, res_w, timeout):
        """In the child: own session, fresh fds, limits, unprivileged uid, scrubbed environment."""
        # Every Python object touched here costs a copy-on-write page fault, so this stays at the syscall level.
        try:
            os.setsid()  # own session and process group, so the whole group can be killed at once
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, STDIN_FD)
            os.dup2(out_w, STDOUT_FD)  # sys.stdout/sys.stderr (unbuffered, -u) now write into the capped pipe
            os.dup2(out_w, STDERR_FD)
            os.dup2(res_w, RESULT_FD)
            os.closerange(FIRST_CLOSED_FD, 1 << 16)  # also closes the signal wakeup pipe and the worker's protocol fds
            signal.set_wakeup_fd(-1)  # else a signal in the sample writes a byte into whatever file reuses that fd
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
                os.write(fd, b"1000")  # under memory pressure the kernel kills samples, never the worker
                os.close(fd)
            except OSError:
                pass
            fd = os.open("/proc/self/statm", os.O_RDONLY)
            vm_size = int(os.read(fd, 200).split()[0]) * PAGE
            os.close(fd)
            a = self.args
            cpu = int(timeout) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_AS, (vm_size + a.memory_mb * MB,) * 2)
            resource.setrlimit(resource.RLIMIT_FSIZE, (a.fsize_mb * MB,) * 2)
            resource.setrlimit(resource.RLIMIT_NOFILE, (a.nofile,) * 2)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.chdir(slot.workdir)
            if self.setuid:
                resource.setrlimit(resource.RLIMIT_NPROC, (a.nproc,) * 2)  # per uid, so per sample
                os.chown(slot.workdir, slot.uid, slot.uid)
                os.chmod(slot.workdir, 0o700)  # other samples' uids cannot look in
                os.setgroups([])
                os.setgid(slot.uid)
                os.setuid(slot.uid)  # drops every capability: the sample is an ordinary user
            os.environ["HOME"] = os.environ["TMPDIR"] = slot.workdir
        except BaseException as exc:
            try:
                os.write(RESULT_FD, b"E" + describe_exception(exc).encode())
            finally:
                os._exit(70)

    def drain(self, fd):
        slot, kind = self.fd_owner[fd]
        while True:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                del self.fd_owner[fd]
                os.close(fd)
                if kind == "out":
                    slot.out_fd = None
                else:
                    slot.res_fd = None
                return
            if kind == "res":
                slot.result += chunk[: RESULT_CAP - len(slot.result)]
            else:
                room = self.args.output_cap - len(slot.output)
                slot.output += chunk[:room]
                slot.dropped += max(0, len(chunk) - room)

    def kill_leftovers(self, slot):
        """Kill everything the sample started, including processes that left its process group."""
        try:
            os.killpg(slot.pid, signal.SIGKILL)
        except OSError:
            pass
        if not self.setuid or not self.uid_has_processes(slot.uid):
            return
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(slot.uid)
                os.setuid(slot.uid)
                os.kill(-1, signal.SIGKILL)  # as the sample's uid: every process of that uid but this one
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    @staticmethod
    def uid_has_processes(uid):
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.stat(f"/proc/{name}").st_uid == uid:
                        return True
                except OSError:
                    pass
        return False

    def finish(self, slot, status):
        self.kill_leftovers(slot)
        for fd in (slot.res_fd, slot.out_fd):
            if fd is not None:
                self.drain(fd)
                if fd in self.fd_owner:
                    del self.fd_owner[fd]
                    os.close(fd)
        elapsed = time.monotonic() - slot.started
        passed, result = self.verdict(slot, status)
        output = bytes(slot.output)
        if slot.dropped:
            output += f"\n[... {slot.dropped} more bytes of output dropped]".encode()
        job = slot.job
        slot.clear()
        self.clean_workdir(slot)
        self.emit(job, passed, result, output, elapsed)

    def verdict(self, slot, status):
        res = bytes(slot.result)
        if slot.timed_out:
            return False, "timed out"
        if res == b"P" + slot.token:
            return True, "passed"
        if res.startswith(b"F"):
            return False, "failed: " + res[1:].decode("utf-8", "replace")
        if res.startswith(b"E"):
            return False, "failed: sandbox error: " + res[1:].decode("utf-8", "replace")
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU:
                return False, "timed out"
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            if sig == signal.SIGKILL:
                return False, "failed: killed by SIGKILL (out of memory?)"
            if sig == signal.SIGXFSZ:
                return False, "failed: killed by SIGXFSZ (file size limit)"
            return False, f"failed: killed by signal {name}"
        if res:
            return False, "failed: forged or corrupt pass marker"
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        return False, f"failed: process exited with code {code} before check() returned"

    def clean_workdir(self, slot):
        try:
            entries = os.listdir(slot.workdir)
        except OSError:
            return
        for name in entries:
            path = os.path.join(slot.workdir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # ---- event loop ----------------------------------------------------------------------
    def reap(self):
        for slot in self.slots:
            if slot.busy():
                try:
                    pid, status = os.waitpid(slot.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = slot.pid, 0
                if pid:
                    self.finish(slot, status)

    def expire(self, now):
        for slot in self.slots:
            if slot.busy() and now >= slot.deadline:
                slot.timed_out = True
                self.kill_leftovers(slot)
                end = time.monotonic() + KILL_GRACE_S
                status = 0
                while time.monotonic() < end:
                    pid, status = os.waitpid(slot.pid, os.WNOHANG)
                    if pid:
                        break
                    time.sleep(0.002)
                else:
                    raise SystemExit(f"sample {slot.job['id']!r} survived SIGKILL")
                self.finish(slot, status)

    def run(self):
        while self.stdin_open:
            for slot in self.slots:
                if not slot.busy() and self.queue:
                    self.start(slot, self.queue.pop(0))
            now = time.monotonic()
            deadlines = [s.deadline for s in self.slots if s.busy()]
            if self.outbuf:
                deadlines.append(self.first_unsent + FLUSH_EVERY_S)
            wait = max(0.0, min(deadlines) - now) if deadlines else None
            fds = [self.wake_r] + list(self.fd_owner)
            if self.stdin_open:
                fds.append(0)
            try:
                readable, _, _ = select.select(fds, [], [], wait)
            except InterruptedError:
                readable = []
            for fd in readable:
                if fd == 0:
                    self.read_stdin()
                elif fd == self.wake_r:
                    try:
                        os.read(self.wake_r, 4096)
                    except OSError:
                        pass
                elif fd in self.fd_owner:
                    self.drain(fd)
            self.reap()
            self.expire(time.monotonic())
            self.flush()
        # The host closed our stdin (it finished, or it died): leave nothing running behind us.
        for slot in self.slots:
            if slot.busy():
                self.kill_leftovers(slot)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        Worker(args).run()
    except BrokenPipeError:
        pass  # the host went away: nothing left to report to


if __name__ == "__main__":
    main()
