"""The plain reference run a suite environment's verdicts are compared with: the official procedure, one fresh
`python3` process per sample (what bigcode-evaluation-harness and DS-1000's own `check_correctness` amount to), in a
fresh temporary directory, in the same image as ours, with no sandbox worker, no zygote and no preloaded modules.

A sample passes when its program exits 0 (DS-1000: `test_execution` and `test_string` returned). The programs go
into one plain container (network off) with a small driver that runs them `--workers` at a time and prints one JSON
line per sample. Used by bench/ds1000_agreement.py and bench/eval_samples.py.
"""
from __future__ import annotations

import io
import json
import sys
import tarfile
import time

DRIVER = r'''
import concurrent.futures, json, os, subprocess, sys, tempfile
workers, timeout = int(sys.argv[1]), float(sys.argv[2])
jobs = [json.loads(l) for l in open("/plain/jobs.jsonl")]
env = {k: v for k, v in os.environ.items()}
def run(job):
    with tempfile.TemporaryDirectory() as d:
        try:
            r = subprocess.run([sys.executable, "-c", job["program"]], cwd=d, capture_output=True, timeout=timeout,
                               env={**env, "HOME": d, "TMPDIR": d})
            tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            return {"key": job["key"], "passed": r.returncode == 0, "result": "passed" if r.returncode == 0
                    else "failed: " + tail[0][:200]}
        except subprocess.TimeoutExpired:
            return {"key": job["key"], "passed": False, "result": "timed out"}
with concurrent.futures.ThreadPoolExecutor(workers) as ex:
    for out in ex.map(run, jobs):
        print(json.dumps(out), flush=True)
'''


def _archive(jobs: list[dict]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("plain/driver.py", DRIVER.encode()),
                           ("plain/jobs.jsonl", "".join(json.dumps(j) + "\n" for j in jobs).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def run_plain(image: str, jobs: list[dict], workers: int, timeout: float, variables: dict | None = None,
              engine=None) -> tuple[dict, float]:
    """{key: {"passed", "result"}} for jobs [{"key", "program"}], and the wall-clock seconds the run took
    (container start included)."""
    from sandbox.engine import Engine

    engine = engine or Engine()
    api = engine.client.api
    t0 = time.perf_counter()
    cid = api.create_container(image, entrypoint=["python3", "/plain/driver.py", str(workers), str(timeout)],
                               command=[], working_dir="/", environment=variables or {}, network_disabled=True,
                               host_config=api.create_host_config(network_mode="none"))["Id"]
    try:
        api.put_archive(cid, "/", _archive(jobs))
        api.start(cid)
        api.wait(cid, timeout=24 * 3600)
        out = api.logs(cid, stdout=True, stderr=False).decode(errors="replace")
    finally:
        api.remove_container(cid, force=True)
    wall = time.perf_counter() - t0
    rows = {}
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            rows[row["key"]] = row
    missing = [j["key"] for j in jobs if j["key"] not in rows]
    if missing:
        sys.exit(f"the plain reference run lost {len(missing)} sample(s), e.g. {missing[:3]}: {out[-500:]}")
    return rows, wall
