"""Our DS-1000 verdicts against a plain reference run, sample by sample, and how long each takes.

The samples: every reference solution, plus a generated mutant set per task cycling through kinds a model produces
(an off-by-one in the first integer literal, an exception raised first, extra printed output, a wrong final
statement, a slow but correct solution) and, for one task in --loop-every, an endless loop. Ours: `harness eval
--samples FILE --tasks ds1000` end to end (a separate process: interpreter, containers, calibration cache warm or
not as it is, writing). Plain: bench/plain_reference.py, one fresh `python3` per sample in the same image, with as
many workers as our sandbox runs samples at once. Every difference is listed with both results.

    python bench/ds1000_agreement.py [--libraries Pandas,Numpy] [--limit N] [--no-mutants] [--plain-timeout 60]
Prints `agreement` (fraction of equal verdicts) and `speedup_vs_plain` last. `--smoke`: a few Pandas tasks.
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

BIN = os.path.dirname(sys.executable)
KINDS = ("offbyone", "exception", "output", "wrong", "slow")


def mutate(ref: str, kind: str, library: str) -> str:
    if kind == "offbyone":
        m = re.search(r"(?<![\w.])(\d+)(?![\w.])", ref)
        return ref[:m.start()] + str(int(m.group(1)) + 1) + ref[m.end():] if m else ref + "\nraise IndexError(1)\n"
    if kind == "exception":
        return "raise ValueError('mutant')\n" + ref
    if kind == "output":
        return "print('some output the model added')\n" + ref
    if kind == "wrong":
        return ref + ("\nplt.close('all')\n" if library == "Matplotlib" else "\nresult = None\n")
    if kind == "slow":
        return ref + "\nimport time\ntime.sleep(0.3)\n"
    if kind == "loop":
        return "while True:\n    pass\n"
    raise ValueError(kind)


def make_samples(tasks, mutants: bool, loop_every: int) -> list[dict]:
    rows = []
    for i, t in enumerate(tasks):
        rows.append({"task_id": t.task_id, "completion": t.canonical_solution, "kind": "reference"})
        if mutants:
            kind = "loop" if loop_every and i % loop_every == loop_every - 1 else KINDS[i % len(KINDS)]
            rows.append({"task_id": t.task_id, "completion": mutate(t.canonical_solution, kind, t.group),
                         "kind": kind})
    return rows


def ours(samples_path: str, out: str, tasks_arg: str) -> tuple[list[dict], float]:
    start = time.perf_counter()
    r = subprocess.run([os.path.join(BIN, "harness"), "eval", "--samples", samples_path, "--tasks", tasks_arg,
                        "--k", "1", "--output-dir", out], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"harness eval failed:\n{(r.stderr or r.stdout)[-2000:]}")
    with open(os.path.join(out, "results.jsonl")) as f:
        return [json.loads(line) for line in f], wall


def plain(samples: list[dict], by_id: dict, workers: int, timeout: float) -> tuple[list[dict], float]:
    from sandbox.envimage import env_tag
    from sandbox.image import image_tag

    groups: dict = {}
    for i, s in enumerate(samples):
        groups.setdefault(by_id[s["task_id"]].env, []).append(i)
    out: list = [None] * len(samples)
    wall = 0.0
    for env, idx in groups.items():
        jobs = [{"key": i, "program": by_id[samples[i]["task_id"]].program(samples[i]["completion"])} for i in idx]
        rows, w = run_plain(env_tag(env, image_tag()), jobs, workers, timeout, dict(env.env))
        wall += w
        # A wall-clock limit on a busy machine is a verdict about the machine: what timed out is run once more with
        # four times the limit (its time is not counted in the plain run's total), as a patient user would.
        again = [j for j in jobs if rows[j["key"]]["result"] == "timed out"]
        if again:
            rows.update(run_plain(env_tag(env, image_tag()), again, workers, 4 * timeout, dict(env.env))[0])
        for i in idx:
            out[i] = rows[i]
    return out, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--libraries", default=None, help="comma-separated (default: all seven)")
    ap.add_argument("--limit", type=int, default=None, help="first N tasks of each library")
    ap.add_argument("--no-mutants", action="store_true", help="the references only (the speed comparison)")
    ap.add_argument("--loop-every", type=int, default=100, help="one endless-loop mutant per this many tasks")
    ap.add_argument("--plain-timeout", type=float, default=120.0,
                    help="wall-clock seconds per plain sample (the official 120; an endless loop costs this)")
    ap.add_argument("--workers", type=int, default=None, help="plain workers (default: our samples at once)")
    ap.add_argument("--smoke", action="store_true", help="seconds: 4 Pandas tasks (for CI)")
    args = ap.parse_args()
    if args.smoke:
        args.libraries, args.limit, args.loop_every = "Pandas", 4, 0
    suite = load_suite("ds1000")
    libs = args.libraries.split(",") if args.libraries else None
    tasks, seen = [], {}
    for t in suite.tasks:
        if libs is None or t.group in libs:
            seen[t.group] = seen.get(t.group, 0) + 1
            if args.limit is None or seen[t.group] <= args.limit:
                tasks.append(t)
    by_id = {t.task_id: t for t in tasks}
    samples = make_samples(tasks, not args.no_mutants, args.loop_every)
    if args.workers is None:
        from sandbox.limits import DEFAULT_SLOTS
        from sandbox.pool import plan_workers

        args.workers = sum(plan_workers([os.cpu_count() or 1], None)) * DEFAULT_SLOTS
    print(f"{len(samples)} samples over {len(tasks)} tasks ({', '.join(f'{k} {v}' for k, v in seen.items())}); "
          f"plain: {args.workers} workers, {args.plain_timeout:g} s per sample")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "samples.jsonl")
        with open(path, "w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
        tasks_arg = "ds1000"
        mine, our_wall = ours(path, os.path.join(tmp, "out"), tasks_arg)
        theirs, plain_wall = plain(samples, by_id, args.workers, args.plain_timeout)
    diffs = [(s, m, p) for s, m, p in zip(samples, mine, theirs) if m["passed"] != p["passed"]]
    refs_failed = [(s["task_id"], m["result"], p["result"]) for s, m, p in zip(samples, mine, theirs)
                   if s["kind"] == "reference" and not (m["passed"] and p["passed"])]
    n_ref = sum(s["kind"] == "reference" for s in samples)
    per_lib: dict = {}
    for s, m in zip(samples, mine):
        if s["kind"] == "reference":
            lib = by_id[s["task_id"]].group
            n, c = per_lib.get(lib, (0, 0))
            per_lib[lib] = (n + 1, c + m["passed"])
    print("references passing (ours): " + ", ".join(f"{k} {c}/{n}" for k, (n, c) in per_lib.items())
          + f"; total {sum(c for _, c in per_lib.values())}/{n_ref}")
    for tid, mr, pr in refs_failed:
        print(f"  reference {tid}: ours {mr[:100]!r} | plain {pr[:100]!r}")
    print(f"differences: {len(diffs)}")
    for s, m, p in diffs:
        print(f"  {s['task_id']} ({s['kind']}): ours {m['result'][:100]!r} | plain {p['result'][:100]!r}")
    print(f"ours: {len(samples)} samples in {our_wall:.1f}s ({len(samples) / our_wall:.1f}/s); "
          f"plain: {plain_wall:.1f}s ({len(samples) / plain_wall:.1f}/s)")
    print(f"agreement: {1 - len(diffs) / len(samples):.4f} ({len(samples) - len(diffs)}/{len(samples)})")
    print(f"speedup_vs_plain: {plain_wall / our_wall:.2f}")


if __name__ == "__main__":
    main()
