"""Our DataFrameBench verdicts against the package's own procedure, sample by sample, and how long each takes.

The samples (whole solutions, as `solution`): both references of every task (pandas and polars), plus one mutant of
each cycling through kinds a model produces (an off-by-one in the first integer literal of the function, an
exception, extra printed output, a wrong return value, a slow but correct call) and, for one reference in
--loop-every, an endless loop. Ours: `harness eval --samples FILE --tasks dataframebench` end to end (a separate
process: interpreter, containers, reference calibration, writing). Plain: dataframebench 0.1.1's procedure
(sandbox.py): the package's own module (matplotlib header, solution, test_code, `unittest.main()`) in a fresh
`python3` per sample, in a fresh temporary directory, in the same image, with the package's variables
(MPLBACKEND=Agg, PYTHONHASHSEED=0, POLARS_MAX_THREADS=8), passing when it exits 0 (bench/plain_reference.py; `-c`
where the package pipes it to `python -`), with as many workers as our sandbox runs samples at once. Every
difference is listed with both results.

    python bench/dataframebench_agreement.py [--limit N] [--no-mutants] [--plain-timeout 30] [--timeout S]
Prints `agreement` (fraction of equal verdicts) and `speedup_vs_plain` last. `--smoke`: 3 tasks on the environment
slice CI builds (tasks/suites/dataframebench.py), through the same `harness eval`.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from plain_reference import run_plain  # noqa: E402
from tasks import load_suite  # noqa: E402
from tasks.suites import dataframebench as dfb  # noqa: E402

BIN = os.path.dirname(sys.executable)
KINDS = ("offbyone", "exception", "output", "wrong", "slow")
SMOKE_TASKS = ("DFB/B0095", "DFB/B0100", "DFB/B0048")  # fast ones within the environment slice
PACKAGE_VARIABLES = {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0", "POLARS_MAX_THREADS": "8"}
# a wrapper around the solution's entry point, appended after it: the solution stays as it was written
WRAP = "\n\n_mutant_impl = task_func\n\n\ndef task_func(*args, **kwargs):\n{body}\n"
BODIES = {"exception": "    raise ValueError('mutant')",
          "wrong": "    _mutant_impl(*args, **kwargs)\n    return None",
          "slow": "    import time\n    time.sleep(0.3)\n    return _mutant_impl(*args, **kwargs)",
          "loop": "    while True:\n        pass"}


def mutate(ref: str, kind: str) -> str:
    if kind == "offbyone":  # in the function's body, not in the imports or constants above it
        start = ref.find("def task_func")
        m = re.compile(r"(?<![\w.\"'])(\d+)(?![\w.\"'])").search(ref, max(start, 0))
        return ref[:m.start()] + str(int(m.group(1)) + 1) + ref[m.end():] if m else mutate(ref, "wrong")
    if kind == "output":
        return "print('some output the model added')\n" + ref + WRAP.format(
            body="    print('calling task_func')\n    return _mutant_impl(*args, **kwargs)")
    return ref + WRAP.format(body=BODIES[kind])


def make_samples(tasks, mutants: bool, loop_every: int) -> list[dict]:
    rows, i = [], 0
    for t in tasks:
        for lib, ref in t.references:
            rows.append({"task_id": t.task_id, "solution": ref, "kind": "reference", "library": lib})
            if mutants:
                kind = "loop" if loop_every and i % loop_every == loop_every - 1 else KINDS[i % len(KINDS)]
                rows.append({"task_id": t.task_id, "solution": mutate(ref, kind), "kind": kind, "library": lib})
            i += 1
    return rows


def ours(samples_path: str, out: str, tasks_arg: str, extra: list[str], on_slice: bool) -> tuple[list[dict], float]:
    """`harness eval` as a user runs it; on the slice, the same CLI with the slice suite registered first."""
    cmd = ([sys.executable, __file__, "--harness-on-slice"] if on_slice else [os.path.join(BIN, "harness")])
    start = time.perf_counter()
    r = subprocess.run(cmd + ["eval", "--samples", samples_path, "--tasks", tasks_arg, "--k", "1", "--output-dir", out,
                              *extra], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"harness eval failed:\n{(r.stderr or r.stdout)[-2000:]}")
    with open(os.path.join(out, "results.jsonl")) as f:
        return [json.loads(line) for line in f], wall


def plain(samples: list[dict], by_id: dict, image: str, workers: int, timeout: float) -> tuple[list[dict], float]:
    jobs = [{"key": i, "program": dfb.package_program(s["solution"], by_id[s["task_id"]].test)}
            for i, s in enumerate(samples)]
    rows, wall = run_plain(image, jobs, workers, timeout, PACKAGE_VARIABLES)
    return [rows[i] for i in range(len(samples))], wall


def harness_on_slice(argv: list[str]) -> int:
    from harness import cli
    from tasks.registry import names, suite

    names()  # the shipped suites first
    suite("dataframebench-slice")(lambda: dfb.slice_suite(SMOKE_TASKS))
    return cli.main(argv)


def main():
    if sys.argv[1:2] == ["--harness-on-slice"]:
        sys.exit(harness_on_slice(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="the first N tasks")
    ap.add_argument("--no-mutants", action="store_true", help="the references only (the speed comparison)")
    ap.add_argument("--loop-every", type=int, default=50, help="one endless-loop mutant per this many references")
    ap.add_argument("--plain-timeout", type=float, default=30.0,
                    help="wall-clock seconds per plain sample (the package's default; an endless loop costs this)")
    ap.add_argument("--timeout", type=float, default=None, help="ours: harness eval --timeout (default its own)")
    ap.add_argument("--workers", type=int, default=None, help="plain workers (default: our samples at once)")
    ap.add_argument("--smoke", action="store_true", help="seconds: 3 tasks on the environment slice (for CI)")
    args = ap.parse_args()
    if args.smoke:
        # a wall-clock limit under CI's load must not decide a verdict of the plain run: no endless loop here
        suite, args.loop_every, args.plain_timeout = dfb.slice_suite(SMOKE_TASKS), 0, max(args.plain_timeout, 300.0)
    else:
        suite = load_suite("dataframebench").limit(args.limit)
    tasks = list(suite.tasks)
    by_id = {t.task_id: t for t in tasks}
    samples = make_samples(tasks, not args.no_mutants, args.loop_every)
    if args.workers is None:
        from sandbox.limits import DEFAULT_SLOTS
        from sandbox.pool import plan_workers

        args.workers = sum(plan_workers([os.cpu_count() or 1], None)) * DEFAULT_SLOTS
    env = tasks[0].env
    from sandbox.envimage import env_tag
    from sandbox.image import image_tag

    print(f"{len(samples)} samples over {len(tasks)} tasks (environment {env.name}); plain: {args.workers} workers, "
          f"{args.plain_timeout:g} s per sample; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    extra = (["--timeout", str(args.timeout)] if args.timeout else []) + (["--limit", str(args.limit)] if args.limit
                                                                           and not args.smoke else [])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "samples.jsonl")
        with open(path, "w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
        mine, our_wall = ours(path, os.path.join(tmp, "out"), "dataframebench-slice" if args.smoke
                              else "dataframebench", extra, args.smoke)
        theirs, plain_wall = plain(samples, by_id, env_tag(env, image_tag()), args.workers, args.plain_timeout)
    diffs = [(s, m, p) for s, m, p in zip(samples, mine, theirs) if m["passed"] != p["passed"]]
    for lib in dfb.LIBRARIES:
        refs = [(s, m, p) for s, m, p in zip(samples, mine, theirs) if s["kind"] == "reference" and s["library"] == lib]
        print(f"{lib} references passing: ours {sum(m['passed'] for _, m, _ in refs)}/{len(refs)}, "
              f"plain {sum(p['passed'] for _, _, p in refs)}/{len(refs)}")
        for s, m, p in refs:
            if not (m["passed"] and p["passed"]):
                print(f"  {s['task_id']} {lib}: ours {m['result'][:160]!r} | plain {p['result'][:160]!r}")
    kinds: dict = {}
    for s, m in zip(samples, mine):
        n, c = kinds.get(s["kind"], (0, 0))
        kinds[s["kind"]] = (n + 1, c + m["passed"])
    print("passing by kind (ours): " + ", ".join(f"{k} {c}/{n}" for k, (n, c) in kinds.items()))
    print(f"differences: {len(diffs)}")
    for s, m, p in diffs:
        print(f"  {s['task_id']} {s['library']} ({s['kind']}): ours {m['result'][:160]!r} | "
              f"plain {p['result'][:160]!r}")
    print(f"ours: {len(samples)} samples in {our_wall:.1f}s ({len(samples) / our_wall:.1f}/s); "
          f"plain: {plain_wall:.1f}s ({len(samples) / plain_wall:.1f}/s)")
    print(f"agreement: {1 - len(diffs) / len(samples):.4f} ({len(samples) - len(diffs)}/{len(samples)})")
    print(f"speedup_vs_plain: {plain_wall / our_wall:.2f}")


if __name__ == "__main__":
    main()
