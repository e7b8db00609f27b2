"""The zygote: a process forked at worker start-up, before any job was read, that forks every process that runs a
sample (and every cleanup helper), so none of them holds anything of the worker: no queue, no other sample, no test
cache, no token.

It holds the interpreter with the preloaded modules and reads only small fixed requests on a socket: "spawn a child of
this role under this uid, with these pipe ends" (the pipe ends come with the request, SCM_RIGHTS), and "sweep this
uid". A spawned child confines itself (session, descriptors, rlimits, uid) and then reads its one payload from its
own pipe (runner.py); the worker writes that payload. The zygote reaps its children and reports each exit with the
CPU time it used (wait4's rusage: the child and the descendants it waited for).
"""
import ctypes
import ctypes.util
import fcntl
import gc
import json
import os
import resource
import select
import signal
import socket

from . import cleanup, fds

PAGE = resource.getpagesize()
MB = 2**20
MAX_REQUEST = 4096
FD_NAMES = ("out", "err", "res", "payload", "chan_in", "chan_out")


# ---- in the zygote -----------------------------------------------------------------------------------------------
class Zygote:
    def __init__(self, sock, limits, setuid):
        self.sock = sock
        self.limits = limits  # the worker's parsed arguments (rlimits)
        self.setuid = setuid
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.helpers = {}  # pid of a sweep helper -> the uid it sweeps
        gc.freeze()  # children must not copy-on-write the whole heap: a frozen heap is never walked by their GC

    def serve(self):
        """Until the worker closes its end. Never returns."""
        while True:
            try:
                readable, _, _ = select.select([self.sock, self.wake_r], [], [])
            except InterruptedError:
                readable = []
            if self.wake_r in readable:
                try:
                    os.read(self.wake_r, 4096)
                except OSError:
                    pass
            self.reap()
            if self.sock in readable:
                try:
                    data, passed, _, _ = socket.recv_fds(self.sock, MAX_REQUEST, len(FD_NAMES))
                except InterruptedError:
                    continue
                if not data:
                    os._exit(0)  # the worker is gone
                self.handle(json.loads(data), passed)

    def send(self, msg):
        self.sock.send(json.dumps(msg).encode())

    def reap(self):
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            if pid in self.helpers:
                self.send({"swept": self.helpers.pop(pid), "status": status})
            else:
                self.send({"exit": pid, "status": status, "cpu": usage.ru_utime + usage.ru_stime})

    def handle(self, req, passed):
        if req["op"] == "sweep":
            uid = req["uid"]
            pid = os.fork()
            if pid == 0:
                sweep_as(uid)
            self.helpers[pid] = uid
            return
        named = dict(zip(req["fds"], passed))
        pid = os.fork()
        if pid == 0:
            child(req, named, self.limits, self.setuid)
        for fd in passed:  # the child has them now; our copies would keep the pipes open
            os.close(fd)
        self.send({"spawned": pid})


def sweep_as(uid):
    """A helper under the sample's uid: kill every process of that uid but itself, remove its IPC objects. As that uid
    (not as the worker) because System V IPC_RMID and kill(-1) need no capability then."""
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        os.kill(-1, signal.SIGKILL)
        cleanup.remove_ipc_of(uid, ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True))
    finally:
        os._exit(0)


# ---- in a freshly forked child -----------------------------------------------------------------------------------
def child(req, named, limits, setuid):
    """Confine, then run the payload (runner.main), or serve as a slot's judge (oracle.serve_judge). Never returns."""
    try:
        confine(req, named, limits, setuid)
    except BaseException as exc:
        try:
            os.write(fds.RESULT, b"E" + f"{type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(70)
    if req.get("role") == "judge":
        from . import oracle

        oracle.serve_judge()
    from . import runner

    runner.main()


def confine(req, named, limits, setuid):
    """Own session, the protocol's descriptors and nothing else, limits, an unprivileged uid."""
    os.setsid()  # own session and process group, so the whole group can be killed at once
    devnull = os.open(os.devnull, os.O_RDONLY)
    # above every target fd first, so that placing one never overwrites another still to be placed
    high = {name: fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for name, fd in named.items()}
    high.setdefault("res", devnull)
    os.dup2(devnull, fds.STDIN)
    os.dup2(high["out"], fds.STDOUT)  # sys.stdout/sys.stderr (unbuffered, -u) now write into the capped pipe
    os.dup2(high.get("err", high["out"]), fds.STDERR)  # a plain run keeps stderr apart
    os.dup2(high["res"], fds.RESULT)
    os.dup2(high["payload"], fds.PAYLOAD)
    if "chan_in" in high:
        os.dup2(high["chan_in"], fds.CHAN_IN)
        os.dup2(high["chan_out"], fds.CHAN_OUT)
    else:  # the inline runner has no channel: whatever the zygote held at those numbers goes
        os.closerange(fds.CHAN_IN, fds.CHAN_OUT + 1)
    os.closerange(fds.FIRST_CLOSED, 1 << 16)  # the zygote's socket and wakeup pipe too
    signal.set_wakeup_fd(-1)  # else a signal in the sample writes a byte into whatever file reuses that fd
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if req.get("role") != "judge":  # a judge runs trusted code only, and a sample's calls wait on it
        os.nice(10)  # the worker keeps its share of the container's CPU beside a storm of a sample's processes
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        os.write(fd, b"1000")  # under memory pressure the kernel kills samples, never the worker
        os.close(fd)
    except OSError:
        pass
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    vm_size = int(os.read(fd, 200).split()[0]) * PAGE
    os.close(fd)
    # Per process, a backstop: the worker charges the CPU time of all the sample's processes against its limit.
    cpu = int(req["cpu"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory_mb = min(req.get("memory_mb") or limits.memory_mb, limits.memory_mb)  # a job may ask for less, not more
    resource.setrlimit(resource.RLIMIT_AS, (vm_size + memory_mb * MB,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.fsize_mb * MB,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.nofile,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    workdir, uid = req["workdir"], req["uid"]
    os.chdir(workdir)
    if setuid:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc,) * 2)  # per uid, so per sample
        if req.get("own_workdir"):
            os.chown(workdir, uid, uid)
            os.chmod(workdir, 0o700)  # other samples' uids cannot look in
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # drops every capability: the sample is an ordinary user
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir


# ---- in the worker -----------------------------------------------------------------------------------------------
class ZygoteClient:
    """The worker's end: start the zygote (before any job is read), ask it for children, collect their exits."""

    def __init__(self, limits, setuid):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            try:
                ours.close()
                devnull = os.open(os.devnull, os.O_RDWR)
                os.dup2(devnull, 0)  # the job stream and the verdict stream are the worker's alone
                os.dup2(devnull, 1)
                os.close(devnull)
                Zygote(theirs, limits, setuid).serve()
            finally:
                os._exit(1)
        theirs.close()
        self.sock = ours
        self.exits = {}  # pid -> (status, cpu seconds), received but not yet taken

    def fileno(self):
        return self.sock.fileno()

    def _recv(self):
        data = self.sock.recv(MAX_REQUEST)
        if not data:
            raise SystemExit("the zygote died")  # the container ends; the host replaces it and re-runs its samples
        msg = json.loads(data)
        if "exit" in msg:
            self.exits[msg["exit"]] = (msg["status"], msg["cpu"])
        return msg

    def _until(self, key):
        while True:
            try:
                msg = self._recv()
            except InterruptedError:
                continue
            if key in msg:
                return msg

    def spawn(self, *children):
        """Forks one confined child per (request, named_fds), all requests sent before the first reply is read;
        returns their pids in order. `named_fds`: name -> fd, the child's ends of its pipes."""
        for role_request, named_fds in children:
            names = list(named_fds)
            req = dict(role_request, op="spawn", fds=names)
            socket.send_fds(self.sock, [json.dumps(req).encode()], [named_fds[n] for n in names])
        return [self._until("spawned")["spawned"] for _ in children]

    def sweep(self, uid):
        self.sock.send(json.dumps({"op": "sweep", "uid": uid}).encode())
        self._until("swept")

    def poll(self):
        """Reads what the zygote sent (call when its socket is readable)."""
        os.set_blocking(self.sock.fileno(), False)
        try:
            while True:
                try:
                    self._recv()
                except (BlockingIOError, InterruptedError):
                    return
        finally:
            os.set_blocking(self.sock.fileno(), True)

    def wait_exit(self, pid, timeout):
        """The exit of `pid` (status, cpu), waiting at most `timeout` seconds; None if it did not come."""
        import time

        end = time.monotonic() + timeout
        while pid not in self.exits:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            self.poll()
        return self.exits.pop(pid)
