"""Do our verdicts agree with the reference evaluators, sample by sample?

- HumanEval+: `harness eval --samples --tasks humanevalplus` against EvalPlus's own evaluator (`evalplus.evaluate`,
  installed from PyPI into a scratch venv, pointed at the shipped data with HUMANEVAL_OVERRIDE_PATH). EvalPlus's
  verdict for a sample is base_status == plus_status == "pass".
- MBPP+: `harness eval --samples --tasks mbppplus` against `evalplus.evaluate mbpp` pointed at the shipped file
  with MBPP_OVERRIDE_PATH. The mutants add an endless loop. With --limit N, EvalPlus (both datasets) is pointed at
  a file of the first N tasks: it wants a sample for every task of its dataset.
- MBPP: `harness eval --samples --tasks mbpp` against the same programs run in plain subprocesses
  (`python3 -c PROGRAM`, pass = exit code 0, with the same per-task timeout).

All on a mutant set generated here from the canonical solutions: the canonical itself, a flipped operator, an
off-by-one constant, an exception, slow but correct, and a wrong return type. Prints the agreement counts and every
disagreement with both verdicts.
    python bench/evalplus_agreement.py [--suite humanevalplus|mbppplus|mbpp|both|all] [--limit N]
                                       [--evalplus-python PATH]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks import load_suite  # noqa: E402

BIN = Path(sys.executable).parent
FLIPS = [(" < ", " >= "), (" > ", " <= "), (" <= ", " > "), (" >= ", " < "), (" == ", " != "), (" != ", " == "),
         (" + ", " - "), (" - ", " + "), (" * ", " + ")]
WRONG_TYPE = ("def _wrong_type(x):\n"
              "    if isinstance(x, list): return tuple(x)\n"
              "    if isinstance(x, bool): return int(x) + 2\n"
              "    if isinstance(x, (int, float)): return str(x)\n"
              "    if isinstance(x, str): return list(x)\n"
              "    return x\n")


def body_indent(code: str) -> str:
    for line in code.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", '"""', "'''")):
            return line[: len(line) - len(line.lstrip())]
    return "    "


def mutants(code: str, whole_function: bool) -> dict[str, str]:
    """name -> mutated code (only those that still compile). `whole_function`: code starts with `def` (MBPP)."""
    out = {"canonical": code}
    for a, b in FLIPS:
        if a in code:
            out["flipped_operator"] = code.replace(a, b, 1)
            break
    m = re.search(r"(?<![\w.])(\d+)(?![\w.])", code)
    if m:
        out["off_by_one"] = code[: m.start()] + str(int(m.group(1)) + 1) + code[m.end():]
    if whole_function:
        head, _, rest = code.partition(":\n")
        ind = body_indent(rest)
        out["exception"] = f"{head}:\n{ind}raise ValueError('mutant')\n{rest}"
        out["slow_but_correct"] = f"{head}:\n{ind}__import__('time').sleep(0.001)\n{rest}"
    else:
        ind = body_indent(code)
        out["exception"] = f"{ind}raise ValueError('mutant')\n{code}"
        out["slow_but_correct"] = f"{ind}__import__('time').sleep(0.001)\n{code}"
    wrong = re.sub(r"^(\s*)return (.+)$", r"\1return _wrong_type(\2)", code, flags=re.M)
    if wrong != code:
        out["wrong_type"] = wrong
    return out


def compiles(program: str) -> bool:
    try:
        compile(program, "<mutant>", "exec")
        return True
    except SyntaxError:
        return False


def ensure_evalplus(python: str | None) -> str:
    if python:
        return python
    venv = ROOT / ".cache" / "evalplus-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        print("installing evalplus==0.3.1 into .cache/evalplus-venv (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "evalplus==0.3.1"], check=True)
    return str(py)


def run_ours(samples: Path, suite: str, out: Path, limit: int | None = None) -> tuple[list[dict], float]:
    start = time.perf_counter()
    r = subprocess.run([str(BIN / "harness"), "eval", "--samples", str(samples), "--tasks", suite, "--k", "1",
                        "--output-dir", str(out)] + (["--limit", str(limit)] if limit else []),
                       capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"harness failed:\n{r.stderr[-2000:]}")
    return [json.loads(line) for line in open(out / "results.jsonl")], wall


HUMANEVALPLUS_DATA = ROOT / "tasks" / "data" / "humanevalplus" / "HumanEvalPlus.jsonl.gz"


def evalplus_env(dataset: str, limit: int | None = None, tmp: Path | None = None) -> dict:
    """The environment that points `evalplus.evaluate` at our shipped data (`humaneval` or `mbpp`); with `limit`, at
    a file of the first N tasks written into `tmp` (EvalPlus evaluates every task of its dataset or none)."""
    from tasks.suites.mbppplus import DATA

    var, path = ("HUMANEVAL_OVERRIDE_PATH", HUMANEVALPLUS_DATA) if dataset == "humaneval" else \
        ("MBPP_OVERRIDE_PATH", DATA)
    if limit:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = [line for line in f if line.strip()][:limit]
        path = tmp / f"{dataset}-first{limit}.jsonl"
        path.write_text("".join(lines), encoding="utf-8")
    return dict(os.environ, **{var: str(path)})


def run_evalplus(python: str, samples: Path, dataset: str = "humaneval", env: dict | None = None,
                 extra: tuple = ()) -> tuple[dict, float]:
    result = samples.with_name(samples.stem + "_eval_results.json")
    result.unlink(missing_ok=True)
    env = env or evalplus_env(dataset)
    evaluate = str(Path(python).parent / "evalplus.evaluate")
    start = time.perf_counter()
    r = subprocess.run([evaluate, dataset, "--samples", str(samples), *extra], capture_output=True, text=True,
                       env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if r.returncode != 0 or not result.exists():
        sys.exit(f"evalplus.evaluate failed:\n{(r.stderr or r.stdout)[-2000:]}")
    return json.loads(result.read_text()), wall


def report(name: str, rows: list[dict], ours: list[bool], theirs: list[bool], details: list[str]) -> None:
    agree = sum(a == b for a, b in zip(ours, theirs))
    print(f"\n{name}: {agree}/{len(rows)} samples agree "
          f"(both pass {sum(a and b for a, b in zip(ours, theirs))}, both fail "
          f"{sum(not a and not b for a, b in zip(ours, theirs))})")
    by_kind: dict[str, list[int]] = {}
    for r, a, b in zip(rows, ours, theirs):
        k = by_kind.setdefault(r["mutant"], [0, 0])
        k[0] += a == b
        k[1] += 1
    print("  " + ", ".join(f"{k}: {a}/{n}" for k, (a, n) in sorted(by_kind.items())))
    for r, a, b, d in zip(rows, ours, theirs, details):
        if a != b:
            print(f"  DISAGREE {r['task_id']} {r['mutant']}: ours {'pass' if a else 'fail'}, "
                  f"reference {'pass' if b else 'fail'} ({d})")


def mutant_rows(suite) -> list[dict]:
    """EvalPlus-format samples (task_id, solution) of a HumanEval-style suite: each canonical and its mutants."""
    rows = []
    for t in suite.tasks:
        for kind, code in mutants(t.canonical_solution, whole_function=False).items():
            # the wrong-type helper goes before the prompt: the solution stays one program
            program = (WRONG_TYPE if kind == "wrong_type" else "") + t.prompt + code
            if compiles(program):
                rows.append({"task_id": t.task_id, "mutant": kind, "solution": program})
    return rows


def mbppplus_rows(suite) -> list[dict]:
    """EvalPlus-format samples of MBPP+ (whole functions): each canonical and its mutants, and for every fourth task
    an endless loop (each costs its time limit, on both sides: EvalPlus runs the base and the plus inputs apart)."""
    rows = []
    for n, t in enumerate(suite.tasks):
        kinds = mutants(t.canonical_solution, whole_function=True)
        if n % 4 == 0:
            head, _, rest = t.canonical_solution.partition(":\n")
            ind = body_indent(rest)
            kinds["endless_loop"] = f"{head}:\n{ind}while True:\n{ind}    pass\n{rest}"
        for kind, code in kinds.items():
            solution = (WRONG_TYPE + code) if kind == "wrong_type" else code
            if compiles(t.program_from_solution(solution)):
                rows.append({"task_id": t.task_id, "mutant": kind, "solution": solution})
    return rows


def against_evalplus(tmp: Path, python: str, suite_name: str, limit: int | None = None) -> None:
    """Our verdicts against EvalPlus's on the same samples: HumanEval+ (`humanevalplus`) or MBPP+ (`mbppplus`)."""
    dataset = "humaneval" if suite_name == "humanevalplus" else "mbpp"
    suite = load_suite(suite_name).limit(limit)
    rows = mutant_rows(suite) if dataset == "humaneval" else mbppplus_rows(suite)
    samples = tmp / f"{suite_name}_samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"\n{suite_name}: {len(rows)} samples ({len(suite.tasks)} tasks)")
    theirs_raw, their_wall = run_evalplus(python, samples, dataset, evalplus_env(dataset, limit, tmp))
    ours_rows, our_wall = run_ours(samples, suite_name, tmp / f"ours-{suite_name}", limit)
    seen: dict[str, int] = {}
    theirs, details = [], []
    for r in rows:
        i = seen.get(r["task_id"], 0)
        seen[r["task_id"]] = i + 1
        res = theirs_raw["eval"][r["task_id"]][i]
        theirs.append(res["base_status"] == res["plus_status"] == "pass")
        details.append(f"evalplus base {res['base_status']}, plus {res['plus_status']}")
    ours = [o["passed"] for o in ours_rows]
    details = [f"ours {o['result'][:80]}; {d}" for o, d in zip(ours_rows, details)]
    report(f"{suite_name} vs EvalPlus", rows, ours, theirs, details)
    print(f"  time: harness {our_wall:.1f} s, evalplus.evaluate {their_wall:.1f} s")


def mbpp(tmp: Path, limit: int | None = None) -> None:
    suite = load_suite("mbpp").limit(limit)
    from harness import calibrate

    times = json.loads(calibrate.cache_path(suite, "docker").read_text()) \
        if calibrate.cache_path(suite, "docker").exists() else {}
    timeouts = calibrate.task_timeouts(suite, times, 3.0, calibrate.TIMEOUT_FACTOR)
    rows = []
    for t in suite.tasks:
        for kind, code in mutants(t.canonical_solution, whole_function=True).items():
            solution = (WRONG_TYPE + code) if kind == "wrong_type" else code
            if compiles(t.program_from_solution(solution)):
                rows.append({"task_id": t.task_id, "mutant": kind, "solution": solution})
    samples = tmp / "mbpp_samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"\nmbpp: {len(rows)} samples ({len(suite.tasks)} tasks)")
    ours_rows, our_wall = run_ours(samples, "mbpp", tmp / "ours-mbpp")
    by_id = suite.by_id()

    def plain(r):
        program = by_id[r["task_id"]].program_from_solution(r["solution"])
        try:
            p = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=timeouts[r["task_id"]],
                               cwd=tmp)
            return p.returncode == 0, f"exit {p.returncode}"
        except subprocess.TimeoutExpired:
            return False, "timed out"

    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        ref = list(ex.map(plain, rows))
    ref_wall = time.perf_counter() - start
    details = [f"ours {o['result'][:80]}; subprocess {d}" for o, (_, d) in zip(ours_rows, ref)]
    report("mbpp vs plain subprocesses", rows, [o["passed"] for o in ours_rows], [p for p, _ in ref], details)
    print(f"  time: harness {our_wall:.1f} s, plain subprocesses {ref_wall:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", "--dataset", choices=["humanevalplus", "mbppplus", "mbpp", "both", "all"],
                    default="both", help="both: humanevalplus and mbpp; all: the three")
    ap.add_argument("--evalplus-python", help="python of a venv with evalplus==0.3.1 (default: .cache/evalplus-venv)")
    ap.add_argument("--limit", type=int, help="the first N tasks of each suite")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds: mbpp's first 5 tasks, the same code path but EvalPlus's own run (for CI); also "
                         "mbppplus's first 3 against EvalPlus where an EvalPlus venv is already there")
    args = ap.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            mbpp(Path(tmp), 5)
            python = args.evalplus_python or ROOT / ".cache" / "evalplus-venv" / "bin" / "python"
            if Path(python).exists():
                against_evalplus(Path(tmp), str(python), "mbppplus", 3)
            else:
                print(f"\nmbppplus: no EvalPlus at {python} (installing it takes the network): skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.suite in ("humanevalplus", "both", "all"):
            against_evalplus(Path(tmp), ensure_evalplus(args.evalplus_python), "humanevalplus", args.limit)
        if args.suite in ("mbppplus", "all"):
            against_evalplus(Path(tmp), ensure_evalplus(args.evalplus_python), "mbppplus", args.limit)
        if args.suite in ("mbpp", "both", "all"):
            mbpp(Path(tmp), args.limit)


if __name__ == "__main__":
    main()
