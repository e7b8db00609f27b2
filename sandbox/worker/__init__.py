"""The in-container worker: standard library only, copied into the sandbox image whole and run as
`python3 -u -I /opt/sandbox/worker` (the directory; `__main__.py` starts it).

One page per part:
    loop.py      the job loop: jobs in, verdicts out, slots, limits (CPU time, wall-clock backstop), cleanup calls
    zygote.py    the pristine process every sample's process (and each slot's judge) is forked from, and the
                 confinement of a child
    runner.py    what a child does: read its one payload from its pipe, run it (the inline oracle, a plain run), report
    oracle.py    the isolated oracle: the slot's long-lived judge (suite's test) and the candidate (prompt + completion)
    plain.py     the isolated oracle's plain-data channel
    cleanup.py   what a sample leaves (processes, IPC objects, files of any depth) and the baseline check
    cputime.py   CPU time over all of a sample's processes; run-queue wait
    fds.py       the descriptors of a sample's process

Protocol, one JSON object per line:
    in:  {"id": ..., "program": "...", "timeout": 3.0}
         {"id": ..., "oracle": "isolated", "untrusted": "...", "trusted": "...", "test": "...",
          "entry_point": "f", "calls_check": true, "timeout": 3.0}
         {"id": ..., "program": "...", "run": {"stdin": "...", "files": {path: base64}, "fetch": [path]},
          "timeout": 3.0}                  a plain run: its exit code is the result
         any of them may carry "memory_mb" (below the worker's --memory-mb)
         {"cancel": [id, ...]}             drop these jobs if they have not started (nothing is answered for them)
    out: {"id": ..., "passed": bool, "result": "passed" | "failed: ..." | "timed out", "output": "...",
          "elapsed": wall seconds, "cpu": CPU seconds}
         a plain run adds "exit_code", "stderr" (then "output" is its stdout) and "files" {path: base64}
         {"retire": "why"}  the container is not back to its baseline: it takes no more jobs and exits once the
                            running ones are answered (the host re-runs the others elsewhere)
`timeout` is CPU seconds over all the sample's processes; the wall clock only backs it up (--wall-factor x).
"""
