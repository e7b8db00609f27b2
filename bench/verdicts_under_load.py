"""Do verdicts depend on the machine's load? 4,920 HumanEval+ samples (164 tasks x 30: correct ones, correct but
slower ones, wrong answers, exceptions, endless loops), judged by `harness eval --samples --tasks humanevalplus`
once on an idle machine and once with two CPU-bound processes beside it. Prints both runs' counts, how many of the
correct and slower-but-correct samples did not pass, and every sample whose verdict differs between the runs.
    python bench/verdicts_under_load.py [--per-task 30] [--hogs 2] [--oracle inline|isolated] [--limit N] [--smoke]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evalplus_agreement import FLIPS, WRONG_TYPE, body_indent, compiles  # noqa: E402
from tasks import load_suite  # noqa: E402

BIN = Path(sys.executable).parent
CORRECT = ("canonical", "prints", "slower", "sleeps_per_call")  # every one of these should pass


def variants(prompt: str, code: str, index: int, per_task: int) -> list[tuple[str, str]]:
    """(kind, completion) x per_task for one task: the correct kinds first, then wrong ones, padded with exceptions."""
    ind = body_indent(code)
    out = [("canonical", code), ("prints", f"{ind}print('hello')\n{code}"),
           ("slower", f"{ind}sum(range(20000))  # about a millisecond more per call, every call\n{code}"),
           ("sleeps_per_call", f"{ind}__import__('time').sleep(0.002)\n{code}")]
    for a, b in FLIPS:  # every occurrence of every operator that flips: one wrong answer each
        for m in re.finditer(re.escape(a), code):
            out.append(("flipped_operator", code[:m.start()] + b + code[m.end():]))
    for m in list(re.finditer(r"(?<![\w.])(\d+)(?![\w.])", code))[:6]:
        for d in (1, -1):
            out.append(("off_by_one", code[:m.start()] + str(int(m.group(1)) + d) + code[m.end():]))
    out.append(("returns_none", f"{ind}return None\n"))
    wrong = re.sub(r"^(\s*)return (.+)$", r"\1return _wrong_type(\2)", code, flags=re.M)
    if wrong != code:
        out.append(("wrong_type", wrong))
    out.append(("exception_first", f"{ind}raise ValueError('mutant')\n{code}"))
    if index % 4 == 0:  # endless loops are costly (each burns its limit): one task in four has them
        out.append(("endless_loop", f"{ind}while True:\n{ind}    pass\n"))
        out.append(("endless_loop_late", f"{ind}global _n\n{ind}_n = globals().get('_n', 0) + 1\n"
                                         f"{ind}while _n > 5:\n{ind}    pass\n{code}"))
    keep = [(k, c) for k, c in out if compiles(prompt + (WRONG_TYPE if k == "wrong_type" else "") + c)]
    correct, rest = keep[:len(CORRECT)], keep[len(CORRECT):]
    rest = rest[: per_task - len(correct)]
    k = 1
    while len(correct) + len(rest) < per_task:  # fails after k inputs: some right answers, then an exception
        rest.append(("exception_after_k", f"{ind}global _calls\n{ind}_calls = globals().get('_calls', 0) + 1\n"
                                          f"{ind}if _calls > {k}:\n{ind}    raise ValueError('after {k}')\n{code}"))
        k *= 2
    return correct + rest


def samples(per_task: int, limit: int | None = None) -> list[dict]:
    rows = []
    for i, t in enumerate(load_suite("humanevalplus").limit(limit).tasks):
        for kind, completion in variants(t.prompt, t.canonical_solution, i, per_task):
            if kind == "wrong_type":  # the helper must come before the prompt: a whole solution
                rows.append({"task_id": t.task_id, "mutant": kind, "solution": WRONG_TYPE + t.prompt + completion})
            else:
                rows.append({"task_id": t.task_id, "mutant": kind, "completion": completion})
    return rows


def run(samples_path: Path, out: Path, oracle: str, limit: int | None) -> tuple[list[dict], float]:
    start = time.perf_counter()
    r = subprocess.run([str(BIN / "harness"), "eval", "--samples", str(samples_path), "--tasks", "humanevalplus",
                        "--k", "1", "--oracle", oracle, "--output-dir", str(out)]
                       + (["--limit", str(limit)] if limit else []), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"harness failed:\n{r.stderr[-2000:]}")
    return [json.loads(line) for line in open(out / "results.jsonl")], wall


def describe(name: str, rows: list[dict], wall: float) -> None:
    kinds = Counter(r["result"].split(":")[0] for r in rows)
    bad = [r for r in rows if r["mutant"] in CORRECT and not r["passed"]]
    print(f"{name}: {len(rows)} samples in {wall:.0f}s, {dict(kinds)}; correct or slower-but-correct samples that "
          f"did not pass: {len(bad)}" + "".join(f"\n  {r['task_id']} {r['mutant']}: {r['result'][:100]}"
                                                 for r in bad[:20]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-task", type=int, default=30)
    ap.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside the second run")
    ap.add_argument("--oracle", choices=["inline", "isolated"], default="inline")
    ap.add_argument("--limit", type=int, help="the first N tasks only")
    ap.add_argument("--smoke", action="store_true", help="seconds: 2 tasks x 6 samples, one hog (for CI)")
    args = ap.parse_args()
    if args.smoke:
        args.limit, args.per_task, args.hogs = 2, 6, 1
    rows = samples(args.per_task, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "samples.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{len(rows)} samples: {dict(Counter(r['mutant'] for r in rows))}")
        idle, idle_wall = run(path, tmp / "idle", args.oracle, args.limit)
        describe("idle", idle, idle_wall)
        hogs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(args.hogs)]
        try:
            loaded, loaded_wall = run(path, tmp / "loaded", args.oracle, args.limit)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        describe(f"with {args.hogs} CPU-bound processes beside it", loaded, loaded_wall)
    differ = [(a, b) for a, b in zip(idle, loaded) if a["passed"] != b["passed"]]
    print(f"same verdict idle and loaded: {len(rows) - len(differ)}/{len(rows)}")
    for a, b in differ[:30]:
        print(f"  DIFFER {a['task_id']} {a['mutant']}: idle {a['result'][:80]!r}, loaded {b['result'][:80]!r}")


if __name__ == "__main__":
    main()
