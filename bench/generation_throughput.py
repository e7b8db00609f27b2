"""Generation throughput for HumanEval with n samples per task: our batched loop vs one `generate()` per prompt with
`num_return_sequences` (the reference scripts' way) and vs batched `generate()` (left-padded prompts, `--batch-prompts`
at a time, each with num_return_sequences), same model and parameters, in one run. Also checks that greedy outputs
are identical, and times a fully cached re-evaluation with `harness eval --ckpt`.

    python bench/generation_throughput.py [--repo HUB --ckpt BRANCH] [--n 10] [--limit 164] [--device cpu|cuda]
    python bench/generation_throughput.py --smoke     # seconds: toy sizes, the same code path (CI runs it)
Without --repo it first trains a tiny model for a minute on this Python's standard library.

    python bench/generation_throughput.py --endpoint [--repo HUB --ckpt BRANCH] [--concurrency 8] [--limit 8]
Serves the checkpoint with `transformers serve` on loopback (with --continuous-batching by default, the server's
batching that concurrent requests feed; --serve-args= without it) and times `harness eval --endpoint` at --concurrency
1 and N: tokens/s of each and their ratio, whether both gave the same completions, and that a cached re-run sends
no request (the server's access log does not grow).
"""
import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from harness.generate import GenParams, generate, truncate_at_stop  # noqa: E402
from checkpoint_hub import open_hub  # noqa: E402
from tasks import load_suite  # noqa: E402


def quick_tiny_run(tmp, files=800, steps=60, seq_length=512):
    from pretrain.cli import main as pretrain_main
    from pretrain.corpus import FilterConfig, build_corpus
    from pretrain.tokenizer import train_tokenizer

    corpus, tok, repo = os.path.join(tmp, "corpus"), os.path.join(tmp, "tok"), os.path.join(tmp, "hub")
    build_corpus([sysconfig.get_paths()["stdlib"]], corpus, FilterConfig(), max_files=files)
    train_tokenizer(corpus, 8192, tok)
    assert pretrain_main(["train", "--model", "tiny", "--tokenizer", tok, "--corpus", corpus, "--repo", repo,
                          "--run", "bench", "--max-steps", str(steps), "--save-every", str(steps), "--batch-size", "8",
                          "--seq-length", str(seq_length), "--output-dir", os.path.join(tmp, "state")]) == 0
    return repo, "bench"


def hf_generate(model, tok, prompts, params, context, batch_prompts=1):
    """transformers' generate(): `batch_prompts` prompts per call (left-padded), each with its n samples as
    num_return_sequences, stop strings. batch_prompts=1 is the reference scripts' way (one call per prompt)."""
    out = {}
    kwargs = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p) if params.temperature else \
        dict(do_sample=False)
    tok.padding_side, tok.pad_token = "left", tok.pad_token or tok.eos_token
    keep = context - params.max_new_tokens
    for i in range(0, len(prompts), batch_prompts):
        group = prompts[i:i + batch_prompts]
        ids = [tok(p)["input_ids"][-keep:] for _, p in group]
        batch = tok.pad({"input_ids": ids}, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            seqs = model.generate(**batch, max_new_tokens=params.max_new_tokens, num_return_sequences=params.n,
                                  stop_strings=list(params.stop), tokenizer=tok, pad_token_id=tok.pad_token_id,
                                  **kwargs)
        width = batch["input_ids"].shape[1]
        for j, (task_id, _) in enumerate(group):
            out[task_id] = [truncate_at_stop(tok.decode(s[width:], skip_special_tokens=True), params.stop)
                            for s in seqs[j * params.n:(j + 1) * params.n]]
    return out


def start_server(folder: str, serve_args: list[str], log_path: str):
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(log_path, "a")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "transformers"), "serve", folder,
                             "--host", "127.0.0.1", "--port", str(port), *serve_args], stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"transformers serve exited: {open(log_path).read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("transformers serve did not start in 300 s")


def endpoint_bench(args, repo, branch, tmp):
    import json

    hub = open_hub(repo)
    folder = str(hub.materialize(hub.resolve(branch)))
    log_path = os.path.join(tmp, "serve.log")
    proc, url = start_server(folder, args.serve_args.split(), log_path)
    harness = os.path.join(os.path.dirname(sys.executable), "harness")
    sandbox = "docker" if subprocess.run(["docker", "info"], capture_output=True).returncode == 0 else "process"
    try:
        # One request first: continuous batching sets its paged cache up on the first one; neither run pays it.
        warm = [harness, "eval", "--endpoint", url, "--served-model", folder, "--limit", "1", "--n", "1", "--k", "1",
                "--temperature", "0", "--max-new-tokens", "4", "--sandbox", "process", "--no-leaderboard",
                "--output-dir", os.path.join(tmp, "warm")]
        subprocess.run(warm, check=True, capture_output=True, env=dict(os.environ, HARNESS_CACHE=os.path.join(tmp, "w")))
        runs = {}
        for concurrency in (1, args.concurrency):
            env = dict(os.environ, HARNESS_CACHE=os.path.join(tmp, f"cache-{concurrency}"))
            out = os.path.join(tmp, f"eval-{concurrency}")
            cmd = [harness, "eval", "--endpoint", url, "--served-model", folder, "--limit", str(args.limit),
                   "--n", str(args.n), "--k", "1", "--temperature", str(args.temperature),
                   "--max-new-tokens", str(args.max_new_tokens), "--concurrency", str(concurrency),
                   "--sandbox", sandbox, "--no-leaderboard", "--output-dir", out]
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            timing = json.load(open(os.path.join(out, "summary.json")))["generation_timing"]
            runs[concurrency] = (cmd, env, out, timing)
            print(f"--concurrency {concurrency}: {timing['requests']} requests, {timing['new_tokens']} tokens in "
                  f"{timing['seconds']:.1f}s = {timing['tokens_per_s']} tokens/s", flush=True)
        one, many = runs[1][3], runs[args.concurrency][3]
        same = [json.loads(a)["completion"] == json.loads(b)["completion"]
                for a, b in zip(open(os.path.join(runs[1][2], "results.jsonl")),
                                open(os.path.join(runs[args.concurrency][2], "results.jsonl")))]
        print(f"completions identical at --concurrency 1 and {args.concurrency}: {sum(same)}/{len(same)}")
        cmd, env, _, _ = runs[args.concurrency]
        size = os.path.getsize(log_path)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        cached = time.perf_counter() - start
        sent = open(log_path).read()[size:].count("HTTP/1.1")
        print(f"cached re-run: {cached:.2f}s wall, {sent} requests reached the server")
        print(f"speedup_concurrency_{args.concurrency}_vs_1: {many['tokens_per_s'] / one['tokens_per_s']:.2f}")
    finally:
        proc.kill()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo")
    ap.add_argument("--ckpt", default="bench")
    ap.add_argument("--n", type=int, default=None, help="default 10 (1 with --endpoint)")
    ap.add_argument("--limit", type=int, default=None, help="default 164 (8 with --endpoint)")
    ap.add_argument("--greedy-limit", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 128 (32 with --endpoint)")
    ap.add_argument("--batch-prompts", type=int, default=16, help="prompts per batched generate() call")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--smoke", action="store_true", help="seconds: toy sizes, the same code path (for CI)")
    ap.add_argument("--endpoint", action="store_true", help="time `harness eval --endpoint` through transformers serve")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.0, help="with --endpoint (0: the two runs must agree)")
    ap.add_argument("--serve-args", default="--continuous-batching", help="extra `transformers serve` options")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.limit, args.greedy_limit, args.max_new_tokens, args.batch_prompts = 2, 4, 2, 8, 2
    if args.endpoint:
        args.n, args.limit, args.max_new_tokens = args.n or 1, args.limit or 8, args.max_new_tokens or 32
    else:
        args.n, args.limit, args.max_new_tokens = args.n or 10, args.limit or 164, args.max_new_tokens or 128
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible; run on a GPU machine or drop --device")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = dict(files=80, steps=2, seq_length=128) if args.smoke else {}
        repo, branch = (args.repo, args.ckpt) if args.repo else quick_tiny_run(tmp, **tiny)
        if args.endpoint:
            return endpoint_bench(args, repo, branch, tmp)
        hub = open_hub(repo)
        folder = hub.materialize(hub.resolve(branch))
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model, tok = AutoModelForCausalLM.from_pretrained(folder).to(args.device), AutoTokenizer.from_pretrained(folder)
        context = model.config.n_positions
        suite = load_suite("humaneval").limit(args.limit)
        prompts = [(t.task_id, t.prompt) for t in suite.tasks]
        params = GenParams(n=args.n, temperature=0.2, top_p=0.95, max_new_tokens=args.max_new_tokens)
        total = len(prompts) * args.n

        start = time.perf_counter()
        hf_generate(model, tok, prompts, params, context)
        ref_s = time.perf_counter() - start
        print(f"per-prompt generate(num_return_sequences={args.n}): {total} samples in {ref_s:.1f}s = "
              f"{total / ref_s:.2f} samples/s", flush=True)
        start = time.perf_counter()
        hf_generate(model, tok, prompts, params, context, batch_prompts=args.batch_prompts)
        batched_s = time.perf_counter() - start
        print(f"batched generate({args.batch_prompts} prompts x num_return_sequences={args.n}): {total} samples in "
              f"{batched_s:.1f}s = {total / batched_s:.2f} samples/s", flush=True)

        start = time.perf_counter()
        stats = generate(model, tok, prompts, params, batch_size=64)
        ours_s = time.perf_counter() - start
        print(f"batched generation (ours): {total} samples in {ours_s:.1f}s = {total / ours_s:.2f} samples/s, "
              f"{stats.new_tokens / ours_s:,.0f} new tokens/s", flush=True)

        greedy = GenParams(n=1, temperature=0.0, max_new_tokens=args.max_new_tokens)
        few = prompts[: args.greedy_limit]
        got = []
        generate(model, tok, few, greedy, batch_size=64, on_batch=got.extend)
        ours = {g.key: g.completion for g in got}
        ref = hf_generate(model, tok, few, greedy, context)
        same = sum(ours[t] == ref[t][0] for t, _ in few)
        print(f"greedy outputs identical: {same}/{len(few)}", flush=True)

        cached = None
        if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            env = dict(os.environ, HARNESS_CACHE=os.path.join(tmp, "cache"))
            cmd = [os.path.join(os.path.dirname(sys.executable), "harness"), "eval", "--repo", repo, "--ckpt", branch,
                   "--limit", str(args.limit), "--n", str(args.n), "--max-new-tokens", str(args.max_new_tokens),
                   "--output-dir", os.path.join(tmp, "eval"),
                   "--no-leaderboard"]
            first = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if first.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{first.stderr[-2000:]}")
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            cached = time.perf_counter() - start
            print(f"cached re-evaluation (harness eval --ckpt, same checkpoint and parameters): {cached:.2f}s wall")
        else:
            print("cached re-evaluation: skipped, no Docker engine answers")
    print(f"speedup_vs_per_prompt: {ref_s / ours_s:.2f}")
    print(f"speedup_vs_batched_generate: {batched_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
