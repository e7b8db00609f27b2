"""Computes MBPP+'s expected outputs, once, offline, as EvalPlus does: each task's reference solution (prompt +
canonical_solution) run on every base and plus input (a deep copy of it), its outputs kept (for the tasks whose
output EvalPlus checks only for None, whether it is None). Writes expected_outputs.jsonl.gz beside this file: a
header line (the data file's SHA-256), then per task its outputs as Python source (tasks.suites.mbppplus.literal).

Each task runs in its own interpreter, twice, under two hash seeds. Outputs that a file cannot hold are marked
`recompute` instead, with the reason, and the task's test computes them with the reference in the sandbox (as
EvalPlus does in a run without its cache, in the process the candidate's is forked from): outputs whose order
follows the hash seed (a list made from a set of strings), and outputs too large to ship (more than SHIP_AT_MOST
characters). A reference that raises or runs past --timeout is recorded as broken, with the reason. The reference
solutions are the dataset's trusted code; run this only on the shipped data.
    python tasks/data/mbppplus/build_expected.py [--timeout 900]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tasks.suites.mbppplus import EXPECTED, SPECIAL, data_sha256, read_rows  # noqa: E402

CHILD = r'''
import collections, contextlib, copy, io, json, sys, time
from tasks.suites.mbppplus import NOT_NONE, SHIP_AT_MOST, convert_inputs, literal

row = json.loads(sys.stdin.read())
namespace = {}
exec(row["prompt"] + row["canonical_solution"], namespace)
fn = namespace[row["entry_point"]]
texts, size, cpu = [], 0, time.process_time()
for inp in convert_inputs(row["task_id"], row["base_input"]) + convert_inputs(row["task_id"], row["plus_input"]):
    with contextlib.redirect_stdout(io.StringIO()):
        out = fn(*copy.deepcopy(inp))
    texts.append(literal(out is not None if row["entry_point"] in NOT_NONE else out))
    size += len(texts[-1])
    if size > SHIP_AT_MOST:
        print(json.dumps({"recompute": f"its expected outputs are more than {SHIP_AT_MOST // 10**6} MB as source"}))
        sys.exit()
text = "[" + ", ".join(texts) + "]"
assert literal(eval(text, {"_collections": collections})) == text, "the outputs do not survive being written as source"
print(json.dumps({"results": text, "cpu_s": round(time.process_time() - cpu, 3)}))
'''


def run(row: dict, seed: int, timeout: float) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=str(ROOT))
    try:
        p = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(row), capture_output=True, text=True,
                           env=env, timeout=timeout, cwd="/tmp")
    except subprocess.TimeoutExpired:
        return {"broken": f"the reference ran past {timeout:g} s"}
    if p.returncode != 0:
        return {"broken": "the reference raised " + (p.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(p.stdout.splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per task and run")
    ap.add_argument("--only", help="comma-separated task ids to compute again; the others are kept from the file")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    kept = {}
    if only:
        with gzip.open(EXPECTED, "rt", encoding="utf-8") as f:
            kept = {r["task_id"]: r for r in map(json.loads, f) if "task_id" in r}
    records = []
    for row in read_rows():
        if only is not None and row["task_id"] not in only:
            records.append(kept[row["task_id"]])
            continue
        t0 = time.perf_counter()
        rec = {"task_id": row["task_id"], **run(row, 0, args.timeout)}
        # an order that follows the hash seed matters only where the outputs are compared in order
        if "results" in rec and SPECIAL.get(row["entry_point"]) not in ("set", "any"):
            if run(row, 1, args.timeout).get("results") != rec["results"]:
                rec = {"task_id": row["task_id"], "recompute": "the order of its outputs follows the hash seed"}
        records.append(rec)
        print(f"{row['task_id']}: {rec.get('broken') or rec.get('recompute') or 'ok'} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    head = {"data_sha256": data_sha256(), "built_with": f"python {sys.version.split()[0]}",
            "tasks": len(records), "broken": sum("broken" in r for r in records),
            "recompute": sum("recompute" in r for r in records)}
    text = "".join(json.dumps(rec) + "\n" for rec in [head] + records)
    with open(EXPECTED, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(text.encode())  # mtime 0: the same outputs make the same bytes
    print(f"wrote {EXPECTED}: {head}")


if __name__ == "__main__":
    main()
