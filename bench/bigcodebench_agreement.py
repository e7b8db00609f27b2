"""Our BigCodeBench verdicts against bigcodebench 0.2.5's own evaluator, sample by sample, and how long each takes.

The samples: every reference solution (bigcodebench's ground truth: complete prompt, a newline, the canonical
solution, given as a whole `solution`), plus per task one mutant cycling through kinds a model produces: an
exception raised first, `return None` first, an off-by-one in the first integer literal, extra printed output, the
prompt's imports left out (calibration puts them back), a slow but correct body, and with --loop-every an endless
loop (it costs each side its 240 s limit).

Ours: `harness eval --samples FILE --tasks bigcodebench --limit N` end to end. Theirs: the `bigcodebench` 0.2.5
wheel from the package index, unmodified, its `evaluate(execution="local", calibrated=True)` run inside a plain
container of our BigCodeBench image (the same pins; network off; a non-root uid as in BigCode's own image), on the
same data file (BIGCODEBENCH_OVERRIDE_PATH); the imports it has for remote execution and generation (gradio_client,
e2b, httpx, datasets, wget, tempdir, its generate module) are stubbed, none is used by a local evaluation. Its
ground-truth pass (which it caches) runs first and gives its own reference pass count; its evaluation is then timed
with that cache warm, at its default parallelism (cpu_count // 2) and at ours. Every difference is listed.

    python bench/bigcodebench_agreement.py [--limit N] [--no-mutants] [--loop-every 0] [--parallel P] [--smoke]
Prints `agreement` and `speedup_vs_bigcodebench` last.
"""
import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks import load_suite  # noqa: E402

BIN = os.path.dirname(sys.executable)
VERSION = "0.2.5"
KINDS = ("exception", "none", "offbyone", "output", "noimports", "slow")
DRIVER = r'''
import json, os, sys, time, types
os.makedirs(os.environ["HOME"], exist_ok=True)
def stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
class _Unused:
    def __init__(self, *a, **k):
        raise RuntimeError("remote execution is not used by a local evaluation")
stub("gradio_client", Client=_Unused, handle_file=_Unused)
stub("e2b", Sandbox=_Unused)
stub("httpx", ReadTimeout=type("ReadTimeout", (Exception,), {}))
stub("datasets", load_dataset=_Unused)
stub("tempdir", TempDir=_Unused)
stub("wget", download=_Unused)
stub("appdirs", user_cache_dir=lambda name: os.path.join(os.environ["HOME"], ".cache", name))
stub("bigcodebench.generate", run_codegen=_Unused)
sys.path.insert(0, "/bcb/lib")
from bigcodebench import evaluate as ev
from bigcodebench.data import get_bigcodebench, get_bigcodebench_hash
cfg = json.load(open("/bcb/config.json"))
ids = cfg["ids"]
problems = {k: v for k, v in get_bigcodebench().items() if k in set(ids)}
t0 = time.time()
gt = ev.get_groundtruth(cfg["parallels"][0], problems, get_bigcodebench_hash(), False, 30 * 1024, 30 * 1024, 10, 1) \
    if cfg["groundtruth"] else {}
print(json.dumps({"groundtruth_s": time.time() - t0, "gt_failed": [k for k in gt if gt[k] is None]}), flush=True)
for parallel in cfg["parallels"]:
    samples = f"/tmp/run-{parallel}/samples.jsonl"
    os.makedirs(os.path.dirname(samples))
    with open(samples, "w") as f:
        f.write(open("/bcb/samples.jsonl").read())
    t0 = time.time()
    ev.evaluate(split="complete", subset="full", samples=samples, execution="local", parallel=parallel,
                selective_evaluate=",".join(ids), save_pass_rate=False, pass_k="1", calibrated=True,
                no_gt=not cfg["groundtruth"])
    wall = time.time() - t0
    res = json.load(open(samples.replace(".jsonl", "_eval_results.json")))["eval"]
    print(json.dumps({"parallel": parallel, "wall_s": wall,
                      "status": {tid: [r["status"] for r in rows] for tid, rows in res.items()},
                      "details": {tid: [str(r["details"])[:300] for r in rows] for tid, rows in res.items()}}),
          flush=True)
'''


def ensure_bigcodebench() -> Path:
    """bigcodebench 0.2.5's wheel from the package index (pure Python), unpacked once under the cache."""
    from common.paths import cache_root

    lib = cache_root() / f"bigcodebench-{VERSION}"
    if not (lib / "bigcodebench" / "evaluate.py").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", f"bigcodebench=={VERSION}", "-d", tmp,
                            "-q", "--disable-pip-version-check"], check=True)
            with zipfile.ZipFile(next(Path(tmp).glob("bigcodebench-*.whl"))) as whl:
                whl.extractall(lib)
    return lib


def mutate(task, kind: str) -> str:
    body = task.canonical_solution
    if kind == "exception":
        body = "    raise ValueError('mutant')\n" + body
    elif kind == "none":
        body = "    return None\n" + body
    elif kind == "offbyone":
        m = re.search(r"(?<![\w.])(\d+)(?![\w.])", body)
        body = body[:m.start()] + str(int(m.group(1)) + 1) + body[m.end():] if m else \
            "    raise IndexError(1)\n" + body
    elif kind == "output":
        body = "    print('some output the model added')\n" + body
    elif kind == "noimports":
        prompt = "\n".join(line for line in task.complete_prompt.splitlines()
                           if not line.startswith(("import ", "from ")))
        return prompt + "\n" + body
    elif kind == "slow":
        body = "    import time\n    time.sleep(0.2)\n" + body
    elif kind == "loop":
        body = "    while True:\n        pass\n" + body
    else:
        raise ValueError(kind)
    return task.complete_prompt + "\n" + body


def make_samples(tasks, mutants: bool, loop_every: int) -> list[dict]:
    rows = []
    for i, t in enumerate(tasks):
        rows.append({"task_id": t.task_id, "solution": t.reference_solution(), "kind": "reference"})
        if mutants:
            kind = "loop" if loop_every and i % loop_every == loop_every - 1 else KINDS[i % len(KINDS)]
            rows.append({"task_id": t.task_id, "solution": mutate(t, kind), "kind": kind})
    return rows


def ours(samples_path: str, out: str, limit: int) -> tuple[list[dict], float]:
    """`--timeout-factor 0`: every task gets bigcodebench's 240 s (no reference of ours is timed first; bigcodebench's
    own limit is max(240 s, its reference's time) + 1, and no reference takes near 240 s)."""
    start = time.perf_counter()
    r = subprocess.run([os.path.join(BIN, "harness"), "eval", "--samples", samples_path, "--tasks", "bigcodebench",
                        "--limit", str(limit), "--k", "1", "--output-dir", out, "--timeout-factor", "0"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"harness eval failed:\n{(r.stderr or r.stdout)[-2000:]}")
    with open(os.path.join(out, "results.jsonl")) as f:
        return [json.loads(line) for line in f], wall


def theirs(samples: list[dict], ids: list[str], parallels: list[int], groundtruth: bool = True
           ) -> tuple[dict, list[dict], float]:
    """bigcodebench's ground truth ({"gt_failed", "groundtruth_s"}; skipped without `groundtruth`: its limits are the
    same then, max(240 s, 20 s) + 1), then one evaluation per parallelism ({"parallel", "wall_s", "status":
    {task_id: [status per sample]}}), and the container's whole wall time."""
    from sandbox.engine import Engine
    from sandbox.envimage import ensure_env_image
    from sandbox.image import ensure_image
    from tasks.suites import bigcodebench as bcb

    engine = Engine()
    image = ensure_env_image(bcb.environment(), ensure_image(engine=engine), engine)
    lib = ensure_bigcodebench()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(lib / "bigcodebench"), arcname="bcb/lib/bigcodebench")
        tar.add(str(bcb.VERSIONS["v0.1.4"]), arcname="bcb/BigCodeBench.jsonl.gz")
        for name, text in (("driver.py", DRIVER), ("config.json", json.dumps({"ids": ids, "parallels": parallels,
                                                                   "groundtruth": groundtruth})),
                           ("samples.jsonl", "".join(json.dumps({"task_id": s["task_id"], "solution": s["solution"]})
                                                     + "\n" for s in samples))):
            data = text.encode()
            info = tarfile.TarInfo(f"bcb/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    api = engine.client.api
    t0 = time.perf_counter()
    variables = {"HOME": "/tmp/home", "BIGCODEBENCH_OVERRIDE_PATH": "/bcb/BigCodeBench.jsonl.gz",
                 "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    cid = api.create_container(image, entrypoint=["python3", "/bcb/driver.py"], command=[], working_dir="/tmp",
                               user="50999:50999", environment=variables, network_disabled=True,
                               host_config=api.create_host_config(network_mode="none", shm_size="1g"))["Id"]
    try:
        api.put_archive(cid, "/", buf.getvalue())
        api.start(cid)
        status = api.wait(cid, timeout=24 * 3600).get("StatusCode", 1)
        out = api.logs(cid, stdout=True, stderr=False).decode(errors="replace")
        err = api.logs(cid, stdout=False, stderr=True).decode(errors="replace")
    finally:
        api.remove_container(cid, force=True)
    wall = time.perf_counter() - t0
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if status != 0 or not lines or "gt_failed" not in lines[0] or len(lines) != 1 + len(parallels):
        sys.exit(f"bigcodebench's evaluator failed (exit {status}):\n{(err or out)[-3000:]}")
    return lines[0], lines[1:], wall


def their_verdicts(run: dict, samples: list[dict]) -> list[tuple[str, str]]:
    """(status, details) per sample, in our samples' order (bigcodebench keeps each task's samples in file order)."""
    seen: dict[str, int] = {}
    out = []
    for s in samples:
        k = seen.get(s["task_id"], 0)
        seen[s["task_id"]] = k + 1
        out.append((run["status"][s["task_id"]][k], run["details"][s["task_id"]][k]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=1140, help="the first N tasks (default: all 1,140)")
    ap.add_argument("--no-mutants", action="store_true", help="the references only (the speed comparison)")
    ap.add_argument("--loop-every", type=int, default=0, help="one endless-loop mutant per this many tasks")
    ap.add_argument("--parallel", default=None, help="bigcodebench's workers, comma-separated for several timed runs "
                    "(default: as many as our sandbox runs samples at once); `default`: its own, cpu_count // 2")
    ap.add_argument("--no-groundtruth", action="store_true", help="skip bigcodebench's ground-truth pass (its own "
                    "reference check, cached by it; the limits it sets are the same without it)")
    ap.add_argument("--smoke", action="store_true", help="minutes: the first 6 tasks")
    args = ap.parse_args()
    if args.smoke:
        args.limit = 6
    suite = load_suite("bigcodebench").limit(args.limit)
    tasks = list(suite.tasks)
    samples = make_samples(tasks, not args.no_mutants, args.loop_every)
    from sandbox.limits import DEFAULT_SLOTS
    from sandbox.pool import plan_workers

    our_slots = sum(plan_workers([os.cpu_count() or 1], None)) * DEFAULT_SLOTS
    named = {"default": max(1, (os.cpu_count() or 2) // 2), "ours": our_slots}
    parallels = list(dict.fromkeys(named[p] if p in named else int(p) for p in (args.parallel or "ours").split(",")))
    print(f"{len(samples)} samples over {len(tasks)} tasks; bigcodebench {VERSION} at --parallel "
          f"{' and '.join(map(str, parallels))}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "samples.jsonl")
        with open(path, "w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
        mine, our_wall = ours(path, os.path.join(tmp, "out"), args.limit)
        gt, runs, container_wall = theirs(samples, [t.task_id for t in tasks], parallels, not args.no_groundtruth)
    if not args.no_groundtruth:
        print(f"bigcodebench ground truth: {len(tasks) - len(gt['gt_failed'])}/{len(tasks)} references pass "
              f"({gt['groundtruth_s']:.1f}s); failed: {gt['gt_failed']}")
    reference = their_verdicts(runs[-1], samples)
    diffs = [(s, m, t) for s, m, t in zip(samples, mine, reference) if m["passed"] != (t[0] == "pass")]
    kinds: dict = {}
    for s, m, t in zip(samples, mine, reference):
        n, a, b = kinds.get(s["kind"], (0, 0, 0))
        kinds[s["kind"]] = (n + 1, a + m["passed"], b + (t[0] == "pass"))
    print("passing, ours | bigcodebench: " + "; ".join(f"{k} {a} | {b} of {n}" for k, (n, a, b) in kinds.items()))
    refs_failed = [(s["task_id"], m["result"], t) for s, m, t in zip(samples, mine, reference)
                   if s["kind"] == "reference" and not m["passed"]]
    for tid, mr, (st, det) in refs_failed:
        print(f"  reference {tid}: ours {mr[:150]!r} | bigcodebench {st} {det[:150]!r}")
    print(f"differences: {len(diffs)}")
    for s, m, (st, det) in diffs:
        print(f"  {s['task_id']} ({s['kind']}): ours {m['result'][:150]!r} | bigcodebench {st} {det[:150]!r}")
    for run in runs:
        print(f"bigcodebench evaluate --parallel {run['parallel']}: {len(samples)} samples in {run['wall_s']:.1f}s "
              f"({len(samples) / run['wall_s']:.2f}/s), ground truth cached")
    print(f"ours: {len(samples)} samples in {our_wall:.1f}s ({len(samples) / our_wall:.2f}/s), end to end; "
          f"their container: {container_wall:.1f}s in all")
    print(f"agreement: {1 - len(diffs) / len(samples):.4f} ({len(samples) - len(diffs)}/{len(samples)})")
    best = min(run["wall_s"] for run in runs)
    print(f"speedup_vs_bigcodebench: {best / our_wall:.2f}")


if __name__ == "__main__":
    main()
