"""Load test of `harness serve` (loopback only; bounded in time and in requests; stops by itself).

Many concurrent clients send HumanEval samples to /v1/judge, one item per request: correct, wrong, endless-loop,
crashing and forging completions. Part-way through, one of the server's worker containers is killed. Every verdict
must equal the offline `harness eval --samples` verdict for the same sample (same oracle and timeout), none lost,
none doubled (the server's verdict count equals the items answered), and no 5xx but for the killed container's
retries. Reports requests/s, p50/p99 latency, and the server's throughput against the offline pool's on the same
samples (the offline run is timed on the same machine just before).

    python bench/serve_load.py [--clients 64] [--duration 60] [--max-requests 50000] [--workers N] [--slots 2]
    python bench/serve_load.py --smoke        # CI: 8 clients for 8 s on 20 tasks
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tasks import load_suite

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 1.0  # CPU seconds per sample, server and offline alike: an endless loop costs this much
KINDS = ("correct", "wrong", "correct", "crash", "correct", "forge", "wrong", "correct", "crash", "correct",
         "forge", "wrong", "correct", "correct", "wrong", "loop")  # one endless loop in 16 samples
FORGE = ("    class Liar:\n        def __eq__(self, other): return True\n"
         "        def __ne__(self, other): return False\n        def __bool__(self): return True\n    return Liar()\n")


def completion(task, kind: str) -> str:
    if kind == "correct":
        return task.canonical_solution
    if kind == "wrong":
        body = task.canonical_solution
        return body.replace("return ", "return not ", 1) if "return " in body else "    return None\n"
    if kind == "loop":
        return "    while True:\n        pass\n"
    if kind == "crash":
        return "    import ctypes\n    ctypes.string_at(0)\n"  # SIGSEGV
    return FORGE


def status_of(result: str, passed: bool) -> str:
    return "passed" if passed else "timeout" if result == "timed out" else "failed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sandbox_args(args) -> list[str]:
    out = ["--tasks", "humaneval", "--oracle", "isolated", "--timeout", str(TIMEOUT_S), "--slots", str(args.slots)]
    return out + (["--workers", str(args.workers)] if args.workers else [])


def offline(samples_path: Path, out_dir: Path, args) -> tuple[list[dict], float]:
    """`harness eval --samples`: the verdicts to match, and the offline pool's samples/s."""
    cmd = [sys.executable, "-m", "harness.cli", "eval", "--samples", str(samples_path), "--k", "1",
           "--output-dir", str(out_dir), *sandbox_args(args)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"offline eval failed: {r.stderr[-2000:]}")
    rows = [json.loads(line) for line in open(out_dir / "results.jsonl")]
    timings = json.loads((out_dir / "summary.json").read_text())["timings"]
    return rows, timings["executed"] / timings["execute_s"]


def kill_one_container(server_pid: int) -> str:
    from sandbox.engine import Engine
    from sandbox.policy import OWNER_LABEL

    api = Engine().client.api
    mine = api.containers(filters={"label": f"{OWNER_LABEL}={socket.gethostname()}:{server_pid}"})
    if not mine:
        return "no container found"
    api.kill(mine[0]["Id"])
    return mine[0]["Names"][0].lstrip("/")


async def load(url: str, items: list[dict], args, server_pid: int) -> dict:
    """`clients` tasks, each sending one item per request until the time or the request budget is spent."""
    stats = {"sent": 0, "answered": 0, "retried_5xx": 0, "error_items": 0, "retried_429": 0, "transport_errors": 0,
             "kill_at": None,
             "killed": None, "latencies": [], "verdicts": []}
    start = time.monotonic()
    stop_at = start + args.duration
    kill_at = start + args.duration / 3
    next_index = 0

    async def client(http: httpx.AsyncClient):
        nonlocal next_index
        while time.monotonic() < stop_at and stats["sent"] < args.max_requests:
            i = next_index % len(items)
            next_index += 1
            stats["sent"] += 1
            t0 = time.monotonic()
            while True:  # an item is sent again after a retryable answer: never lost
                try:
                    r = await http.post("/v1/judge", json={"items": [items[i]]})
                except httpx.TransportError:
                    stats["transport_errors"] += 1
                    await asyncio.sleep(0.5)
                    continue
                if r.status_code == 429:
                    stats["retried_429"] += 1
                    await asyncio.sleep(float(r.headers.get("retry-after", 1)))
                    continue
                if r.status_code >= 500:
                    stats["retried_5xx"] += 1
                    try:  # items answered `error` are counted by the server as verdicts too
                        stats["error_items"] += sum(x["status"] == "error" for x in r.json()["results"])
                    except (ValueError, KeyError, TypeError):
                        pass
                    await asyncio.sleep(0.5)
                    continue
                break
            r.raise_for_status()
            res = r.json()["results"][0]
            stats["latencies"].append(time.monotonic() - t0)
            stats["verdicts"].append((i, res["status"]))
            stats["answered"] += 1

    async def killer():
        await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
        stats["kill_at"] = round(time.monotonic() - start, 1)
        stats["killed"] = await asyncio.to_thread(kill_one_container, server_pid)

    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as http:
        await asyncio.gather(killer(), *(client(http) for _ in range(args.clients)))
    stats["wall_s"] = time.monotonic() - start
    return stats


def wait_ready(url: str, proc: subprocess.Popen, log: Path, limit_s: float = 900) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited: {log.read_text()[-2000:]}")
        try:
            r = httpx.get(url + "/v1/ping", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit("the server did not answer /v1/ping in time")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--max-requests", type=int, default=50000, help="stop after this many requests at the latest")
    ap.add_argument("--tasks", type=int, default=164, help="HumanEval tasks the samples are drawn from")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="seconds: 8 clients, 8 s, 20 tasks (for CI)")
    args = ap.parse_args()
    if args.smoke:
        args.clients, args.duration, args.tasks = 8, 8.0, 20
    suite = load_suite("humaneval")
    tasks = suite.tasks[:args.tasks]
    samples = [{"task_id": t.task_id, "completion": completion(t, KINDS[(2 * i + j) % len(KINDS)]),
                "kind": KINDS[(2 * i + j) % len(KINDS)]} for i, t in enumerate(tasks) for j in range(2)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with open(tmp / "samples.jsonl", "w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
        rows, offline_rate = offline(tmp / "samples.jsonl", tmp / "offline", args)
        expected = [status_of(r["result"], r["passed"]) for r in rows]
        print(f"offline `harness eval --samples --oracle isolated`: {len(rows)} samples at {offline_rate:.1f} "
              f"samples/s; kinds: " + ", ".join(f"{k} {sum(s['kind'] == k for s in samples)}" for k in
                                                  dict.fromkeys(KINDS)))

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp / "serve.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", "--host", "127.0.0.1", "--port",
                                     str(port), *sandbox_args(args)], stdout=out, stderr=out, cwd=ROOT)
        try:
            health = wait_ready(url, proc, log)
            items = [{"suite": "humaneval", "task_id": s["task_id"], "completion": s["completion"]} for s in samples]
            stats = asyncio.run(load(url, items, args, proc.pid))
            metrics = httpx.get(url + "/metrics").text
        finally:
            proc.send_signal(signal.SIGINT)  # uvicorn shuts down, the pool stops its containers
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    counted = sum(float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("harness_serve_verdicts_total"))
    wrong = [(i, got, expected[i]) for i, got in stats["verdicts"] if got != expected[i]]
    lat = sorted(stats["latencies"])
    rate = stats["answered"] / stats["wall_s"]
    print(f"server: {health['workers']} containers x {health['slots'] // max(1, health['workers'])} slots, "
          f"{health['oracle']} oracle; {args.clients} clients for {stats['wall_s']:.1f}s; killed container "
          f"{stats['killed']} at {stats['kill_at']}s")
    print(f"requests: {stats['sent']} sent, {stats['answered']} answered = {rate:.1f} requests/s; latency p50 "
          f"{1000 * lat[len(lat) // 2]:.0f} ms, p99 {1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]:.0f} ms")
    print(f"retried after 5xx: {stats['retried_5xx']}, after 429: {stats['retried_429']}, transport errors: "
          f"{stats['transport_errors']}")
    doubled = int(counted) - stats["answered"] - stats["error_items"]
    print(f"lost: {stats['sent'] - stats['answered']}; doubled: {doubled} (server verdicts {int(counted)}, of which "
          f"{stats['error_items']} errors answered 5xx and sent again)")
    print(f"verdicts equal to offline: {stats['answered'] - len(wrong)}/{stats['answered']}")
    for i, got, want in wrong[:10]:
        print(f"  {samples[i]['task_id']} ({samples[i]['kind']}): served {got}, offline {want}")
    print(f"serve_requests_per_s: {rate:.1f}")
    print(f"serve_vs_offline_throughput: {rate / offline_rate:.2f}")


if __name__ == "__main__":
    main()
