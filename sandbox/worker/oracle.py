"""The isolated oracle: the judge (trusted: the suite's prompt and test) and the candidate (untrusted: prompt +
completion) as two processes under two uids, each from the pristine zygote, talking plain data over a pipe.

The judge of a slot outlives samples (`serve_judge`): it runs nothing but the suite's code, so one judge per slot
serves sample after sample and the candidate is the only process forked per sample, as in the inline oracle. The
worker compiles each task's judge code once (`JudgeCode`, a HumanEval+ test with a thousand inputs costs more to
compile than to run) and sends the marshalled code objects to a judge once (it keeps the last JUDGE_CACHE_SIZE
tasks'); the candidate's payload is its own program and nothing else, so no test, no other sample and no worker
state is in its memory.
"""
import ast
import builtins
import fcntl
import importlib
import importlib.util
import json
import marshal
import os
import signal
import socket
import time
import types

from . import fds
from .plain import (Channel, NotPlainData, ProtocolError, Remote, decode_plain, encode_plain, raise_from_reply)
from .runner import verdict_bytes

CACHE_SIZE = 256  # tasks whose compiled judge code the worker keeps
JUDGE_CACHE_SIZE = 32  # tasks whose code objects a judge keeps (a HumanEval+ test's are megabytes)


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


class JudgeCode:
    """A task's judge code, compiled and marshalled once in the worker (which never runs untrusted code)."""
    _cache = {}

    @classmethod
    def payload(cls, prompt, test):
        """The part of the judge's payload after its token: a JSON header line, then the marshalled prompt and
        test. A test that does not compile becomes an error the judge raises (the sample fails, as inline)."""
        key = (prompt, test)
        blob = cls._cache.get(key)
        if blob is None:
            if len(cls._cache) >= CACHE_SIZE:
                cls._cache.clear()
            try:
                p, t = marshal.dumps(compile_prompt(prompt)), marshal.dumps(compile(test, "<test>", "exec"))
                header = {"free": free_names(test), "sizes": [len(p), len(t)]}
                blob = json.dumps(header).encode() + b"\n" + p + t
            except (SyntaxError, ValueError) as exc:
                blob = json.dumps({"error": [type(exc).__name__, str(exc)]}).encode() + b"\n"
            cls._cache[key] = blob
        return blob


class JudgeProcess:
    """The worker's handle on one slot's judge: a process from the zygote, under the slot's judge uid, that outlives
    samples. It runs only the suite's trusted code, so nothing a sample does stays in it; each sample's candidate is
    still a fresh child of the zygote that never held a test. Jobs go over `sock` (a stream socket): a JSON header
    line with the sample's pipe ends attached (SCM_RIGHTS), then the task's compiled code unless the judge holds it."""

    def __init__(self, pid, sock):
        self.pid, self.sock = pid, sock
        self.alive = True
        self.status = None  # its exit status, once it ended
        self.samples = 0
        self.known = []  # keys of the tasks whose code it holds, oldest first (the judge keeps the same list)

    def message(self, token, job):
        """(header line, code blob or b"") of one sample."""
        blob = JudgeCode.payload(job["trusted"], job["test"])
        key = hash((job["trusted"], job["test"]))
        clear = False
        if key in self.known:
            blob = b""
        elif len(self.known) >= JUDGE_CACHE_SIZE:
            self.known, clear = [], True
        if blob:
            self.known.append(key)
        self.samples += 1
        head = {"token": token.decode(), "entry_point": job.get("entry_point"),
                "calls_check": job.get("calls_check", True), "key": key, "size": len(blob), "clear": clear}
        return json.dumps(head).encode() + b"\n", blob


def load_judge_code(blob):
    """(free names, prompt code, test code), or the exception a test that does not compile raises."""
    line, _, blob = blob.partition(b"\n")
    header = json.loads(line)
    if "error" in header:
        try:
            raise_from_reply(header["error"])
        except Exception as exc:  # noqa: BLE001 - raised again in each sample of that task
            return exc
    n_prompt, _ = header["sizes"]
    return header["free"], marshal.loads(blob[:n_prompt]), marshal.loads(blob[n_prompt:])


def serve_judge():
    """The judge's life: one sample after another, until the worker closes the socket. Never returns.

    For each sample the pipe ends that arrive with its header are put at the protocol's descriptors (stdout, stderr,
    RESULT, the channel); once the verdict is written they are replaced by /dev/null, so the worker sees the
    sample's RESULT pipe end."""
    sock = socket.socket(fileno=fds.PAYLOAD)
    low = os.open(os.devnull, os.O_RDWR)
    devnull = fcntl.fcntl(low, fcntl.F_DUPFD, fds.FIRST_CLOSED)
    os.close(low)
    for target in (fds.CHAN_IN, fds.CHAN_OUT):
        os.dup2(devnull, target)  # the protocol's numbers stay taken, so the ends received land above them
    cache = {}  # key -> load_judge_code(...), the same keys the worker's JudgeProcess.known lists
    buf, passed = b"", []
    while True:
        while b"\n" not in buf:
            data, got, _, _ = socket.recv_fds(sock, 1 << 16, 4)
            if not data:
                os._exit(0)  # the worker is gone, or recycles this judge
            buf += data
            passed += got
        line, _, buf = buf.partition(b"\n")
        head = json.loads(line)
        while len(buf) < head["size"]:
            data = sock.recv(max(1 << 16, head["size"] - len(buf)))
            if not data:
                os._exit(0)
            buf += data
        blob, buf = buf[:head["size"]], buf[head["size"]:]
        if head["clear"]:
            cache.clear()
        if blob:
            cache[head["key"]] = load_judge_code(blob)
        del blob
        out, res, chan_in, chan_out = passed
        passed = []
        for fd, target in ((out, fds.STDOUT), (out, fds.STDERR), (res, fds.RESULT), (chan_in, fds.CHAN_IN),
                           (chan_out, fds.CHAN_OUT)):
            os.dup2(fd, target)
        for fd in (out, res, chan_in, chan_out):
            os.close(fd)
        code = cache[head["key"]]
        exc = code if isinstance(code, BaseException) else judge_one(head, *code)
        try:
            os.write(fds.RESULT, verdict_bytes(head["token"].encode(), exc))
        except OSError:
            pass  # the worker gave the sample up (a timeout): nothing reads this verdict
        for target in (fds.STDOUT, fds.STDERR, fds.RESULT, fds.CHAN_IN, fds.CHAN_OUT):
            os.dup2(devnull, target)
        if isinstance(exc, MemoryError):
            os._exit(0)  # a fresh judge for the next sample rather than one that ran out of memory mid-test


def judge_one(job, free, prompt_code, test_code):
    """One sample: prompt + test in a fresh namespace, the candidate behind Remote stubs. Returns the exception the
    test ended with, or None (passed). Alone decides the verdict."""
    channel = Channel(fds.CHAN_IN, fds.CHAN_OUT)
    try:
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        exec(prompt_code, namespace)  # noqa: S102 - trusted: the suite's prompt (while the candidate loads)
        hello = channel.recv()  # the candidate loaded its program, or says why not
        if type(hello) is not dict or ("raise" not in hello and hello.get("loaded") is not True):
            raise ProtocolError("no greeting from the candidate")
        if "raise" in hello:
            raise_from_reply(hello["raise"])
        # The prompt's own definition of the entry point is a stub (a signature and a docstring): the completion
        # implements it, so a test that calls it by name (HumanEval/33 does, MBPP's asserts all do, even one named
        # like a builtin: Mbpp/126's `sum`) reaches the candidate's.
        entry = job.get("entry_point")
        if entry:
            namespace[entry] = Remote(channel, entry)
        modules = hello.get("modules", [])
        for name in free:
            if name in namespace:
                continue
            # a module the program imported and the test uses (Mbpp/596's `sys`): the judge imports its own copy
            if type(modules) is list and name in modules and importlib.util.find_spec(name) is not None:
                namespace[name] = importlib.import_module(name)
            else:
                namespace[name] = Remote(channel, name)
        exec(test_code, namespace)  # noqa: S102 - trusted: the suite's test
        if job.get("calls_check", True) and entry:
            namespace["check"](namespace[entry])
    except BaseException as exc:  # noqa: BLE001 - every way the test ends but returning is a failure
        return exc
    return None


def run_candidate(program):
    """The untrusted process: prompt + completion, then answers calls with plain data until the channel closes."""
    channel = Channel(fds.CHAN_IN, fds.CHAN_OUT)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        code = compile(program, "<sample>", "exec")
        del program
        exec(code, namespace)  # noqa: S102 - this is the sandboxed execution
        hello = {"loaded": True, "modules": [k for k, v in namespace.items() if type(v) is types.ModuleType]}
    except BaseException as exc:
        hello = {"raise": [type(exc).__name__, str(exc)[:500]]}
    try:
        channel.send(hello)
        while "raise" not in hello:
            serve_one(channel, namespace, channel.recv())
    except BaseException:
        pass  # the judge is gone (or the candidate broke its own channel): nothing left to answer
    os._exit(0)


def run_queue_wait():
    """Seconds this process spent runnable but waiting for a CPU (schedstat), or None where the kernel does not say."""
    try:
        with open("/proc/self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def call_limited(fn, args, kwargs, cpu_s, wall_s):
    """A call under a CPU-time limit (ITIMER_PROF) with a wall-clock backstop (ITIMER_REAL) that counts only the
    time the call spent off the CPU by its own choice: run-queue waits (a busy machine) re-arm it."""
    started = time.monotonic(), time.process_time(), run_queue_wait()

    def expired(signum, frame):
        if signum == signal.SIGALRM and started[2] is not None:
            off_cpu = (time.monotonic() - started[0] - (time.process_time() - started[1])
                       - (run_queue_wait() - started[2]))
            if off_cpu < cpu_s:
                signal.setitimer(signal.ITIMER_REAL, wall_s)
                return
        raise TimeoutError(f"the call ran past its time limit ({cpu_s:.2f}s)")

    old = signal.signal(signal.SIGPROF, expired), signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_PROF, cpu_s)
    signal.setitimer(signal.ITIMER_REAL, wall_s)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGPROF, old[0])
        signal.signal(signal.SIGALRM, old[1])


def serve_one(channel, namespace, request):
    args = [decode_plain(a) for a in request["args"]]
    kwargs = {k: decode_plain(v) for k, v in request["kwargs"].items()}
    reply = {"seq": request["seq"]}
    limit = request.get("limit")
    try:
        fn = namespace.get(request["call"])
        if fn is None:
            raise NameError(f"name {request['call']!r} is not defined")
        if limit is None:
            out = fn(*args, **kwargs)
        else:
            out = call_limited(fn, args, kwargs, *limit)
        reply["return"] = encode_plain(out)
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
