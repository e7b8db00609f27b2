"""The job loop: jobs (JSON lines) on stdin, one slot per concurrent sample, verdicts (JSON lines) on stdout.

For each sample the worker makes the pipes, asks the zygote for the confined process, writes it its payload (and, for
the isolated oracle, sends the slot's long-lived judge its job), collects output and the result marker, charges CPU
time, enforces the limits, cleans up and checks that the container is back to its baseline. The worker itself never
runs untrusted code, and nothing that does was forked from it.
"""
import argparse
import json
import os
import secrets
import select
import signal
import socket
import sys
import time

from . import cleanup, cputime, oracle
from .zygote import PAGE, ZygoteClient

READ_CHUNK = 65536
FLUSH_EVERY_S = 0.01  # verdicts are sent in batches at most this old: each write crosses the Docker attach proxy
# Imported once, before the zygote forks, so that a sample importing them pays nothing.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "string", "random", "hashlib",
           "copy", "heapq", "bisect", "operator", "ast", "marshal", "ctypes")
SAMPLE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
CANDIDATE_UID_OFFSET = 50  # slot i: inline sample uid_base + i, candidate uid_base + 50 + i, judge uid_base + 100 + i
JUDGE_UID_OFFSET = 100
RESULT_CAP = 1024  # bytes of the result pipe kept: the marker or an error message
KILL_GRACE_S = 2.0  # after SIGKILL, how long to wait for the zygote to reap before declaring the container broken
CPU_POLL_S = 0.05  # how often a running sample's CPU time (all its processes) is read; shorter samples are never read
SETTLE_S = 0.2  # how long killed processes may take to disappear before the container counts as not at baseline
FETCH_CAP = 1 << 20  # bytes of each file a plain run asks back (fetch_files)
# A slot's judge is replaced after this many samples, this much CPU, or when it holds more than this share of the
# memory budget (it runs only trusted code, but a test's garbage and its code cache grow it).
JUDGE_SAMPLES = 2000
JUDGE_CPU_S = 3600  # its RLIMIT_CPU (a backstop: the worker charges each sample's share to that sample)
JUDGE_RSS_SHARE = 0.25
JUDGE_CHECK_EVERY = 50  # samples between two looks at a judge's CPU and memory


def suite_environment(work_root, spec):
    """The suite environment's run-time settings (`--suite-env`: preload, variables), {} for the base image. Its
    variables join the samples' environment; matplotlib gets a cache directory that only the worker can write (its
    font cache is built here, once, before the zygote forks: samples inherit it loaded)."""
    env = json.loads(spec) if spec else {}
    if not env:
        return {}
    os.environ.update(dict(env.get("env", ())))
    # some libraries write a temporary file at import (scipy.stats): the worker's own tmpfs, during preload only
    os.environ["TMPDIR"] = os.path.join(work_root, ".worker", "tmp")
    os.makedirs(os.environ["TMPDIR"], mode=0o700, exist_ok=True)
    if any(m.startswith("matplotlib") for m in env.get("preload", ())):
        os.environ["MPLCONFIGDIR"] = os.path.join(work_root, ".worker", "matplotlib")
        os.makedirs(os.environ["MPLCONFIGDIR"], mode=0o700, exist_ok=True)
    return env


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
    p.add_argument("--wall-factor", type=float, required=True,
                   help="wall-clock backstop = this x the sample's CPU-time limit (for programs that sleep or block)")
    p.add_argument("--suite-env", default="", help="a suite environment's preload and variables (JSON)")
    return p.parse_args(argv)


class Slot:
    """One concurrent sample: its uids, its work dir, and the state of the processes running in it."""

    def __init__(self, index, work_root, uid):
        self.index = index
        self.uid = uid  # the sample's uid (inline, a plain run)
        self.cand_uid = uid + CANDIDATE_UID_OFFSET  # the candidate's uid (isolated)
        self.judge_uid = uid + JUDGE_UID_OFFSET  # the slot's judge's uid (isolated): no sample ever runs under it
        self.workdir = os.path.join(work_root, str(index))
        self.judge = None  # the slot's long-lived isolated judge (oracle.JudgeProcess), started on first use
        self.clear()

    def clear(self):
        """No sample in the slot. Every per-sample attribute is declared here."""
        self.job = None  # the job dict being run
        self.pid = None  # the sample's process (its session and group id): the program, or the isolated candidate
        self.judging = False  # isolated: the slot's judge runs the test; the sample ends when it answered
        self.cand_exit = None  # isolated: (status, cpu) of the candidate, once it ended
        self.killed = False  # SIGKILL sent to the sample's process group
        self.cpu_base = 0.0  # isolated: the judge's CPU seconds (and run-queue wait) when the sample started
        self.wait_base = 0.0
        self.token = None  # the per-sample pass marker, known only to the worker and the process that may pass
        self.out_fd = None  # read end of the sample's stdout (+stderr) pipe
        self.err_fd = None  # a plain run: read end of its stderr pipe
        self.res_fd = None  # read end of the RESULT pipe
        self.output = bytearray()  # captured output, at most --output-cap bytes
        self.dropped = 0  # output bytes read past the cap and dropped
        self.errput = bytearray()  # a plain run's stderr, at most --output-cap bytes
        self.err_dropped = 0
        self.result = bytearray()  # what the sample wrote on RESULT, at most RESULT_CAP bytes
        self.started = 0.0  # monotonic start time
        self.cpu_limit = 0.0  # seconds of CPU over all its processes
        self.deadline = 0.0  # monotonic wall-clock backstop
        self.next_poll = 0.0  # when its CPU time is next read
        self.cpu = 0.0  # CPU seconds charged so far
        self.timed_out = False

    def uids(self):
        return {self.judge_uid, self.cand_uid} if self.judging else {self.uid}

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
        self.retiring = None  # why this container takes no more samples (not back to baseline)
        self.fd_owner = {}  # fd -> (slot, "out" | "err" | "res")
        self.payloads = {}  # payload fd -> [slot, bytes still to write, close it once written]
        # Scrub the environment once, here, rather than in every child.
        os.environ.clear()
        os.environ.update(SAMPLE_ENV)
        env = suite_environment(args.work_root, args.suite_env)
        for name in PRELOAD + tuple(env.get("preload", ())):
            try:
                __import__(name)
            except Exception as exc:  # noqa: BLE001 - a sample importing it meets the same error itself
                print(f"worker: preloading {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if env:
            os.environ.pop("TMPDIR", None)
            import tempfile
            tempfile.tempdir = None  # chosen again in each sample, from its own TMPDIR (its work dir)
        # The zygote is forked now, before the first job is read: it never holds one.
        self.zygote = ZygoteClient(args, self.setuid)
        os.set_blocking(0, False)
        self.shmem_base = self.unexplained_shmem() if self.setuid else None

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
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "cancel" in msg:  # the host no longer waits for these: those not started are dropped
                    gone = set(msg["cancel"])
                    self.queue = [job for job in self.queue if job["id"] not in gone]
                else:
                    self.queue.append(msg)

    def emit(self, msg):
        if not self.outbuf:
            self.first_unsent = time.monotonic()
        self.outbuf.append(json.dumps(msg))

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

    def retire(self, why):
        """Not back to baseline: finish what runs, take nothing more, exit; the host starts a fresh container and
        re-runs the jobs queued here (no retry spent: not their fault)."""
        if self.retiring is None:
            self.retiring = why[:300]
            self.emit({"retire": self.retiring})
            self.flush(force=True)

    # ---- one sample ----------------------------------------------------------------------
    def start(self, slot, job):
        out_r, out_w = os.pipe()
        res_r, res_w = os.pipe()
        limit = float(job["timeout"])
        slot.clear()
        child = {"uid": slot.uid, "workdir": slot.workdir, "own_workdir": True, "cpu": limit,
                 "memory_mb": job.get("memory_mb")}
        token = secrets.token_hex(16).encode()  # the worker's alone, and the one process's that may pass
        if job.get("oracle") == "isolated":
            cand_r, cand_w = os.pipe()
            to_cand_r, to_cand_w = os.pipe()  # judge -> candidate: calls
            to_judge_r, to_judge_w = os.pipe()  # candidate -> judge: greeting and replies
            judge, blob = self.send_judge(slot, token, job, [out_w, res_w, to_judge_r, to_cand_w])
            slot.pid, = self.zygote.spawn((dict(child, uid=slot.cand_uid),
                                           {"out": out_w, "payload": cand_r, "chan_in": to_cand_r,
                                            "chan_out": to_judge_w}))
            for fd in (cand_r, to_cand_r, to_cand_w, to_judge_r, to_judge_w):
                os.close(fd)
            slot.judging = True
            self.write_payload(slot, cand_w, b"C" + job["untrusted"].encode("utf-8", "surrogatepass"))
            if blob:
                self.write_payload(slot, judge.sock.fileno(), blob, close=False)
        elif "run" in job:
            pay_r, pay_w = os.pipe()
            err_r, err_w = os.pipe()
            slot.pid, = self.zygote.spawn((child, {"out": out_w, "err": err_w, "res": res_w, "payload": pay_r}))
            os.close(pay_r)
            os.close(err_w)
            os.set_blocking(err_r, False)
            self.fd_owner[err_r] = (slot, "err")
            slot.err_fd = err_r
            head = json.dumps({"stdin": job["run"].get("stdin") or "", "files": job["run"].get("files") or {}})
            self.write_payload(slot, pay_w, b"R" + head.encode() + b"\n"
                               + job["program"].encode("utf-8", "surrogatepass"))
        else:
            pay_r, pay_w = os.pipe()
            slot.pid, = self.zygote.spawn((child, {"out": out_w, "res": res_w, "payload": pay_r}))
            os.close(pay_r)
            self.write_payload(slot, pay_w, b"I" + token + job["program"].encode("utf-8", "surrogatepass"))
        os.close(out_w)
        os.close(res_w)
        for fd in (out_r, res_r):
            os.set_blocking(fd, False)
        self.fd_owner[out_r] = (slot, "out")
        self.fd_owner[res_r] = (slot, "res")
        slot.job, slot.token, slot.out_fd, slot.res_fd = job, token, out_r, res_r
        slot.started = time.monotonic()
        slot.cpu_limit = limit
        slot.deadline = slot.started + self.args.wall_factor * limit
        slot.next_poll = slot.started + CPU_POLL_S

    # ---- the isolated oracle's judges -----------------------------------------------------------
    def send_judge(self, slot, token, job, ends):
        """Hands the slot's judge the sample's header and pipe ends (a fresh judge when it has none that answers);
        returns (judge, the code blob still to write). The judge's CPU so far becomes the sample's base."""
        head, blob = b"", b""
        for _ in range(2):
            judge = self.judge_for(slot)
            head, blob = judge.message(token, job)
            try:
                socket.send_fds(judge.sock, [head], ends)
                break
            except OSError:  # it died between samples: a new one
                self.drop_judge(slot)
        else:
            raise SystemExit("no judge could be started")  # the container ends; the host re-runs its samples
        slot.cpu_base, slot.wait_base = cputime.on_cpu(judge.pid)
        return judge, blob

    def judge_for(self, slot):
        """The slot's judge, started (from the zygote, under the slot's judge uid) when it has none or when the one
        it has is used up."""
        judge = slot.judge
        if judge is not None and (not judge.alive or judge.samples >= JUDGE_SAMPLES
                                  or judge.samples % JUDGE_CHECK_EVERY == 0 and self.judge_worn(judge)):
            self.drop_judge(slot)
        if slot.judge is None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            devnull = os.open(os.devnull, os.O_WRONLY)
            pid, = self.zygote.spawn(({"uid": slot.judge_uid, "workdir": "/", "cpu": JUDGE_CPU_S, "role": "judge"},
                                      {"out": devnull, "payload": theirs.fileno()}))
            theirs.close()
            os.close(devnull)
            ours.setblocking(False)
            slot.judge = oracle.JudgeProcess(pid, ours)
        return slot.judge

    def judge_worn(self, judge):
        cpu, _ = cputime.on_cpu(judge.pid)
        try:
            with open(f"/proc/{judge.pid}/statm", "rb") as f:
                rss = int(f.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            rss = 0
        return cpu > JUDGE_CPU_S / 2 or rss > JUDGE_RSS_SHARE * self.args.memory_mb * 2**20

    def drop_judge(self, slot):
        """The slot's judge goes (its exit is reaped by the zygote); the next isolated sample starts a new one."""
        judge, slot.judge = slot.judge, None
        if judge.alive:
            try:
                os.kill(judge.pid, signal.SIGKILL)
            except OSError:
                pass
        fd = judge.sock.fileno()
        if fd in self.payloads:
            del self.payloads[fd]
        judge.sock.close()

    def kill_judge(self, slot):
        """A judge in the middle of a sample that is given up: killed, and reaped before the slot takes another."""
        judge = slot.judge
        if judge is None:
            return
        if judge.alive:
            try:
                os.kill(judge.pid, signal.SIGKILL)
            except OSError:
                pass
            if self.zygote.wait_exit(judge.pid, KILL_GRACE_S) is None:
                self.retire("a judge survived SIGKILL")
            judge.alive = False
        self.drop_judge(slot)

    def write_payload(self, slot, fd, data, close=True):
        os.set_blocking(fd, False)
        self.payloads[fd] = [slot, memoryview(data), close]
        self.continue_payload(fd)

    def continue_payload(self, fd):
        data = self.payloads[fd][1]
        try:
            while data:
                data = data[os.write(fd, data):]
        except BlockingIOError:
            self.payloads[fd][1] = data
            return
        except OSError:  # the process died before it read everything: its verdict says why
            pass
        self.drop_payload(fd)

    def drop_payload(self, fd):
        _, _, close = self.payloads.pop(fd)
        if close:
            os.close(fd)

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
                elif kind == "err":
                    slot.err_fd = None
                else:
                    slot.res_fd = None
                return
            if kind == "res":
                slot.result += chunk[: RESULT_CAP - len(slot.result)]
            elif kind == "err":
                room = self.args.output_cap - len(slot.errput)
                slot.errput += chunk[:room]
                slot.err_dropped += max(0, len(chunk) - room)
            else:
                room = self.args.output_cap - len(slot.output)
                slot.output += chunk[:room]
                slot.dropped += max(0, len(chunk) - room)

    def kill_all(self, slot):
        """SIGKILL to the sample's process group (what left it, daemonised or in a session of its own, is swept by
        uid in `clean`). An isolated sample's judge is not in it: it goes only when the sample is given up."""
        if slot.pid is not None and not slot.killed:
            slot.killed = True
            try:
                os.killpg(slot.pid, signal.SIGKILL)
            except OSError:
                pass

    def finish(self, slot, status, main_cpu, requeue=False):
        """The sample is over: its process has exited (or was killed and reaped) and, isolated, its judge answered
        (or was given up). Verdict, then cleanup."""
        self.kill_all(slot)
        judge = slot.judge if slot.judging else None
        for fd in [fd for fd, (owner, _, _) in self.payloads.items() if owner is slot]:
            if judge is not None and fd == judge.sock.fileno():
                self.kill_judge(slot)  # it never got its whole job: its stream is out of step
            else:
                self.drop_payload(fd)  # it ended before it read all of its payload
        for fd in (slot.res_fd, slot.out_fd, slot.err_fd):
            if fd is not None:
                self.drain(fd)
                if fd in self.fd_owner:
                    del self.fd_owner[fd]
                    os.close(fd)
        job, uids = slot.job, slot.uids()
        cpu = main_cpu
        if judge is not None:
            if judge is slot.judge and judge.alive:
                cpu += max(0.0, cputime.on_cpu(judge.pid)[0] - slot.cpu_base)
                uids = {slot.cand_uid}  # the judge lives on: only the candidate's uid is swept
            elif judge.status is not None and not slot.result:
                status = judge.status  # the judge itself died (out of memory?): that is the verdict
                if not os.WIFSIGNALED(status):  # a judge that exits on its own is broken: the sandbox's fault
                    slot.result = bytearray(f"Ethe judge ended with code {exit_code(status)}".encode())
            if slot.judge is judge and not judge.alive:
                self.drop_judge(slot)
        cpu = max(slot.cpu, cpu)
        elapsed = time.monotonic() - slot.started
        if requeue:
            self.queue.insert(0, dict(job, rerun=True))
        else:
            msg = {"id": job["id"]}
            if "run" in job:
                msg["passed"], msg["result"] = self.run_verdict(slot, status)
                msg["exit_code"] = exit_code(status)
                msg["stderr"] = capped_text(slot.errput, slot.err_dropped)
                if job["run"].get("fetch"):
                    msg["files"] = cleanup.read_files(slot.workdir, job["run"]["fetch"], FETCH_CAP)
            else:
                msg["passed"], msg["result"] = self.verdict(slot, status)
            msg.update(output=capped_text(slot.output, slot.dropped), elapsed=round(elapsed, 4), cpu=round(cpu, 4))
            self.emit(msg)
        slot.clear()
        try:
            self.clean(slot, uids)
        except Exception as exc:  # noqa: BLE001 - nothing a sample leaves may stop the worker
            self.retire(f"cleanup failed: {type(exc).__name__}: {exc}")

    def clean(self, slot, uids):
        """Leftover processes, IPC objects and files of the sample removed; the container checked against its
        baseline (retired when it is not back to it). The usual sample leaves nothing: one /proc scan and one read
        of the IPC tables say so."""
        if self.setuid:
            ipc = cleanup.ipc_objects()
            left = {uid for _, uid in cleanup.uid_pids(uids)}
            left |= {u for _, _, uid, cuid, _ in ipc for u in (uid, cuid) if u in uids}
            left |= {u for u in uids if cleanup.posix_ipc_files({u})}
            for uid in sorted(left):
                self.zygote.sweep(uid)
            if left:
                self.check_swept(uids)
                ipc = cleanup.ipc_objects()
        cleanup.empty_dir(slot.workdir)
        if self.setuid and self.shmem_base is not None and self.retiring is None:
            extra = self.unexplained_shmem(ipc) - self.shmem_base
            if extra > cleanup.SHMEM_SLACK:
                self.retire(f"{extra // 2**20} MB of shared memory not back to baseline")

    def check_swept(self, uids):
        end = time.monotonic() + SETTLE_S
        while cleanup.uid_pids(uids):
            if time.monotonic() > end:
                return self.retire(f"processes of uid {sorted(uids)} survived the sweep")
            time.sleep(0.005)
        if cleanup.ipc_objects(uids) or cleanup.posix_ipc_files(uids):
            self.retire(f"IPC objects of uid {sorted(uids)} survived the sweep")

    def unexplained_shmem(self, ipc=None):
        """Shared memory charged to the container beyond the slots' tmpfs files and the live System V segments
        (those of samples still running), or None where the cgroup does not say."""
        shmem = cleanup.cgroup_shmem()
        if shmem is None:
            return None
        ipc = cleanup.ipc_objects() if ipc is None else ipc
        return (shmem - sum(cleanup.tmpfs_used(s.workdir) for s in self.slots)
                - sum(size for _, _, _, _, size in ipc))

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
            return signal_verdict(status)
        if res:
            return False, "failed: forged or corrupt pass marker"
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        return False, f"failed: process exited with code {code} before check() returned"

    def run_verdict(self, slot, status):
        """A plain run has no pass marker: it 'passed' when it exited with code 0 (SandboxFusion's Success)."""
        res = bytes(slot.result)
        if slot.timed_out:
            return False, "timed out"
        if res.startswith(b"E"):
            return False, "failed: sandbox error: " + res[1:].decode("utf-8", "replace")
        if os.WIFSIGNALED(status):
            return signal_verdict(status)
        code = exit_code(status)
        return code == 0, "passed" if code == 0 else f"failed: process exited with code {code}"

    # ---- limits --------------------------------------------------------------------------
    def kill_and_reap(self, slot):
        """A sample given up (out of time): its processes killed, and its judge too (it may be mid-test)."""
        self.kill_all(slot)
        if slot.judging:
            self.kill_judge(slot)
        if slot.cand_exit is not None:
            return slot.cand_exit
        got = self.zygote.wait_exit(slot.pid, KILL_GRACE_S)
        if got is None:
            raise SystemExit(f"sample {slot.job['id']!r} survived SIGKILL")
        return got

    def usage(self, slot):
        """(CPU seconds, run-queue wait) of the sample: every process of its uids, less what the slot's judge had
        used before the sample; without setuid (the process backend) only its main processes."""
        if self.setuid:
            cpu, wait = cputime.usage(uids=slot.uids() - {slot.judge_uid})
        else:
            cpu, wait = cputime.usage(pids=[slot.pid])
        judge = slot.judge if slot.judging and slot.judge is not None and slot.judge.alive else None
        if judge is not None:  # its share: what it used since the sample started
            j_cpu, j_wait = cputime.on_cpu(judge.pid)
            cpu += j_cpu - slot.cpu_base
            wait = None if wait is None or j_wait is None or slot.wait_base is None else wait + j_wait - slot.wait_base
        return cpu, wait

    def charge_cpu(self, now):
        """Every CPU_POLL_S, a running sample's CPU time over all its processes; at its limit it is timed out."""
        for slot in self.slots:
            if slot.busy() and now >= slot.next_poll:
                slot.cpu, _ = self.usage(slot)
                slot.next_poll = now + CPU_POLL_S
                if slot.cpu >= slot.cpu_limit:
                    slot.timed_out = True
                    self.finish(slot, *self.kill_and_reap(slot))

    def backstop(self, now):
        """The wall-clock backstop (wall_factor x the CPU limit): a program that sleeps or blocks. When its processes
        spent its whole CPU budget waiting for a CPU instead, the machine was too busy to tell: it is re-run once."""
        for slot in self.slots:
            if slot.busy() and now >= slot.deadline:
                _, waited = self.usage(slot)
                starved = waited is None or waited >= slot.cpu_limit
                rerun = starved and not slot.job.get("rerun")
                slot.timed_out = True
                self.finish(slot, *self.kill_and_reap(slot), requeue=rerun)

    # ---- event loop ----------------------------------------------------------------------
    def reap(self):
        exits = self.zygote.exits
        for slot in self.slots:
            judge = slot.judge
            if judge is not None and judge.alive and judge.pid in exits:
                judge.status, _ = exits.pop(judge.pid)
                judge.alive = False
            if not slot.busy():
                continue
            if slot.judging:
                if slot.cand_exit is None and slot.pid in exits:
                    slot.cand_exit = exits.pop(slot.pid)
                if slot.res_fd is None or not judge.alive:  # the judge answered (or died)
                    if slot.cand_exit is None:
                        self.kill_all(slot)  # a candidate still serving calls, or spinning: its exit comes next
                    else:
                        self.finish(slot, *slot.cand_exit)
            elif slot.pid in exits:
                status, cpu = exits.pop(slot.pid)
                self.finish(slot, status, cpu)  # may read more exits (of other slots too): they stay queued
        waited_for = {s.pid for s in self.slots if s.busy()} | {s.judge.pid for s in self.slots if s.judge}
        for pid in [p for p in exits if p not in waited_for]:
            del exits[pid]  # a recycled judge, a cleanup helper's stray: nothing waits on it any more

    def run(self):
        while self.stdin_open and not (self.retiring and not any(s.busy() for s in self.slots)):
            for slot in self.slots:
                if not slot.busy() and self.queue and not self.retiring:
                    self.start(slot, self.queue.pop(0))
            now = time.monotonic()
            deadlines = [min(s.deadline, s.next_poll) for s in self.slots if s.busy()]
            if self.outbuf:
                deadlines.append(self.first_unsent + FLUSH_EVERY_S)
            wait = max(0.0, min(deadlines) - now) if deadlines else None
            if any(s.busy() and s.pid in self.zygote.exits for s in self.slots):
                wait = 0.0  # an exit already read (while spawning or sweeping) is taken at once
            fds = [self.zygote.fileno()] + list(self.fd_owner)
            if self.stdin_open:
                fds.append(0)
            try:
                readable, writable, _ = select.select(fds, list(self.payloads), [], wait)
            except InterruptedError:
                readable, writable = [], []
            for fd in writable:
                self.continue_payload(fd)
            for fd in readable:
                if fd == 0:
                    self.read_stdin()
                elif fd == self.zygote.fileno():
                    self.zygote.poll()
                elif fd in self.fd_owner:
                    self.drain(fd)
            self.reap()
            now = time.monotonic()
            self.charge_cpu(now)
            self.backstop(now)
            self.flush()
        self.flush(force=True)
        # The host closed our stdin (it finished, or it died), or the container retires: leave nothing behind.
        for slot in self.slots:
            if slot.busy():
                self.kill_all(slot)
            if slot.judge is not None:
                self.drop_judge(slot)


def signal_verdict(status):
    sig = os.WTERMSIG(status)
    if sig == signal.SIGXCPU:
        return False, "timed out"
    if sig == signal.SIGKILL:
        return False, "failed: killed by SIGKILL (out of memory?)"
    if sig == signal.SIGXFSZ:
        return False, "failed: killed by SIGXFSZ (file size limit)"
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
    return False, f"failed: killed by signal {name}"


def exit_code(status):
    """As subprocess reports it: the exit code, or minus the signal that ended the process."""
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)


def capped_text(data, dropped):
    text = bytes(data)
    if dropped:
        text += f"\n[... {dropped} more bytes of output dropped]".encode()
    return text.decode("utf-8", "replace")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        Worker(args).run()
    except BrokenPipeError:
        pass  # the host went away: nothing left to report to
