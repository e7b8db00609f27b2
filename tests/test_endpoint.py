"""`harness eval --endpoint` against a real `transformers serve` on loopback, serving a tiny checkpoint of a local hub:
greedy completions and verdicts equal to `--ckpt`, a repeated run sends nothing, a killed run resumes, a server that
stops mid-run or answers 500 is retried and then one line, and each bad input is one line with nothing written.

A stdlib HTTP stub stands in for a server only where a real one cannot be made to misbehave on cue (500s then
answers, stop sequences ignored, `n` honoured)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from checkpoint_hub import open_hub
from conftest import require_docker
from harness.cli import main as harness_main
from harness.summary import Summary
from pretrain.cli import main as pretrain_main

BIN = Path(sys.executable).parent
# A chat template for the tiny model (its tokenizer has only <|endoftext|>): what makes `--chat` exercise both the
# local apply_chat_template path and the server's.
TEMPLATE = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}")
GREEDY = ["--limit", "3", "--n", "1", "--k", "1", "--temperature", "0", "--max-new-tokens", "24"]


def run(*argv):
    return harness_main([str(a) for a in argv])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`transformers serve FOLDER` on a loopback port, its access log in a file (how tests count requests)."""

    def __init__(self, folder: Path, log: Path):
        self.folder, self.log = str(folder), log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.start()

    def start(self):
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([str(BIN / "transformers"), "serve", self.folder, "--host", "127.0.0.1",
                                          "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"transformers serve did not start: {self.log.read_text()[-3000:]}")

    def posts(self, route: str = "/v1/completions") -> int:
        return self.log.read_text().count(f'"POST {route} HTTP')

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture(scope="module")
def served(small_corpus, small_tokenizer, tmp_path_factory):
    """A tiny checkpoint (one training step: these tests compare two generators, not a model's skill) whose tokenizer
    carries a chat template, on branch `tiny-served` of a local hub, and `transformers serve` serving that commit."""
    root = tmp_path_factory.mktemp("served")
    tok = root / "tokenizer"
    shutil.copytree(small_tokenizer, tok)
    (tok / "chat_template.jinja").write_text(TEMPLATE)
    repo = root / "hub"
    assert pretrain_main(["train", "--model", "tiny", "--tokenizer", str(tok), "--corpus", str(small_corpus),
                          "--repo", str(repo), "--run", "tiny-served", "--max-steps", "1", "--save-every", "1",
                          "--batch-size", "2", "--seq-length", "512", "--mixed-precision", "no",
                          "--output-dir", str(root / "state")]) == 0
    hub = open_hub(str(repo))
    # transformers serve samples only where the checkpoint's generation config says do_sample (else every
    # temperature decodes greedily): the same weights again, as the branch's next commit, with it set.
    folder = root / "sampling"
    shutil.copytree(hub.materialize(hub.resolve("tiny-served")), folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}))
    hub.push("tiny-served", folder, "step 1, sampling on")
    folder = hub.materialize(hub.resolve("tiny-served"))
    server = Server(folder, root / "serve.log")
    yield {"repo": repo, "folder": folder, "server": server, "root": root}
    server.kill()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_endpoint_greedy_equals_the_checkpoint_then_a_repeat_sends_nothing(served, tmp_path, capsys):
    require_docker()
    server = served["server"]
    board = tmp_path / "board.csv"
    assert run("eval", "--repo", served["repo"], "--ckpt", "tiny-served", *GREEDY, "--no-ppl",
               "--output-dir", tmp_path / "local", "--leaderboard", board) == 0
    local = Summary.load(tmp_path / "local" / "summary.json")
    assert local.generation_timing["truncated_prompts"] == []  # both sides saw the whole prompt
    before = server.posts()
    argv = ["eval", "--endpoint", server.url, "--served-model", served["folder"], *GREEDY, "--concurrency", "3",
            "--output-dir", tmp_path / "served", "--leaderboard", board, "--name", "tiny-on-serve"]
    assert run(*argv) == 0
    assert server.posts() - before == 3  # one request per prompt: greedy n=1
    out = capsys.readouterr().out
    assert out.count("note: perplexity: not measured through an endpoint") == 1
    ours, theirs = rows(tmp_path / "local" / "results.jsonl"), rows(tmp_path / "served" / "results.jsonl")
    assert [r["completion"] for r in theirs] == [r["completion"] for r in ours]
    assert [(r["passed"], r["result"]) for r in theirs] == [(r["passed"], r["result"]) for r in ours]
    assert any(r["completion"].strip() for r in theirs)  # not a vacuous equality of empty answers
    summary = Summary.load(tmp_path / "served" / "summary.json")
    assert summary.pass_at_k[1] == local.pass_at_k[1]
    assert summary.endpoint == server.url and summary.endpoint_model["id"] == str(served["folder"])
    assert summary.perplexity is None and summary.prompting == "completion" and summary.sandbox == "docker"
    import csv

    board_rows = {r["repo"]: r for r in csv.DictReader(open(board))}
    assert board_rows["tiny-on-serve"]["branch"] == Path(served["folder"]).name  # no machine's path published
    assert board_rows["tiny-on-serve"]["pass@1"] == board_rows[str(os.path.relpath(served["repo"], tmp_path))]["pass@1"]
    first = (tmp_path / "served" / "results.jsonl").read_text()
    # Again: everything is cached, so not one request goes out (not even GET /v1/models), and the results are equal.
    log_size = server.log.stat().st_size
    assert run(*argv) == 0
    assert server.log.stat().st_size == log_size
    assert (tmp_path / "served" / "results.jsonl").read_text() == first
    again = Summary.load(tmp_path / "served" / "summary.json")
    assert again.generation_timing["generated_now"] == 0 and again.timings["executed"] == 0


def test_a_killed_run_resumes_with_only_the_missing_requests(served, tmp_path):
    server = served["server"]
    env = dict(os.environ, HARNESS_CACHE=str(tmp_path / "cache"))
    args = [str(BIN / "harness"), "eval", "--endpoint", server.url, "--served-model", str(served["folder"]),
            "--limit", "3", "--n", "3", "--k", "1,3", "--temperature", "0.8", "--max-new-tokens", "12",
            "--concurrency", "2", "--sandbox", "process", "--no-leaderboard", "--output-dir", str(tmp_path / "out")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caches = tmp_path / "cache" / "generations"
    deadline = time.time() + 300

    def cached() -> int:
        return sum(len(p.read_text().splitlines()) for p in caches.rglob("*.jsonl")) if caches.exists() else 0

    while time.time() < deadline and cached() < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = cached()
    assert 3 <= kept < 9, "the run finished before it was killed"
    before = server.posts()
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert server.posts() - before == 9 - kept  # transformers serve ignores `n`: one request per missing sample
    results = rows(tmp_path / "out" / "results.jsonl")
    assert len(results) == 9 and len({(x["task_id"], x["sample_index"]) for x in results}) == 9
    summary = Summary.load(tmp_path / "out" / "summary.json")
    assert summary.generation_timing["generated_now"] == 9 - kept
    assert summary.generation_timing["n_per_request"] == "capped: one request per sample"
    assert summary.samples_per_task == 3 and set(summary.pass_at_k) == {1, 3}
    assert len({x["completion"] for x in results}) > 3  # sampled, each request with its own seed
    assert not any("identical samples" in n for n in summary.notes)


def test_a_server_that_stops_mid_run_is_retried_then_one_line_and_the_rerun_finishes(served, tmp_path):
    server = Server(served["folder"], tmp_path / "own-serve.log")  # our own: this test kills it
    env = dict(os.environ, HARNESS_CACHE=str(tmp_path / "cache"))
    args = [str(BIN / "harness"), "eval", "--endpoint", server.url, "--served-model", str(served["folder"]),
            "--limit", "4", "--n", "1", "--k", "1", "--temperature", "0", "--max-new-tokens", "24",
            "--concurrency", "1", "--retries", "1", "--sandbox", "process", "--no-leaderboard",
            "--output-dir", str(tmp_path / "out")]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and server.posts() < 2:
            time.sleep(0.1)
        server.kill()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err[-2000:]
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0]
        assert "did not answer" in errors[0] and "on 2 tries" in errors[0] and "rerun the same command" in errors[0]
        assert err.count("retrying in") == 1
        assert not (tmp_path / "out" / "results.jsonl").exists()  # nothing half-written
        kept = sum(len(p.read_text().splitlines()) for p in (tmp_path / "cache" / "generations").rglob("*.jsonl"))
        assert 1 <= kept < 4
        server.start()
        before = server.posts()
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        assert len(rows(tmp_path / "out" / "results.jsonl")) == 4
        assert server.posts() - before == 4 - kept  # the answers the first run got were not asked for again
    finally:
        if proc.poll() is None:
            proc.kill()
        server.kill()


def test_chat_local_and_served_give_the_same_answers_and_both_are_kept(served, tmp_path, capsys):
    server = served["server"]
    common = [*GREEDY, "--chat", "--sandbox", "process", "--no-leaderboard"]
    assert run("eval", "--repo", served["repo"], "--ckpt", "tiny-served", *common, "--no-ppl",
               "--output-dir", tmp_path / "local") == 0
    before = server.posts("/v1/chat/completions")
    assert run("eval", "--endpoint", server.url, "--served-model", served["folder"], *common,
               "--output-dir", tmp_path / "served") == 0
    assert server.posts("/v1/chat/completions") - before == 3
    ours, theirs = rows(tmp_path / "local" / "results.jsonl"), rows(tmp_path / "served" / "results.jsonl")
    assert {"raw_answer", "solution", "passed", "result"} <= set(theirs[0]) and "completion" not in theirs[0]
    assert [r["raw_answer"] for r in theirs] == [r["raw_answer"] for r in ours]
    assert [r["solution"] for r in theirs] == [r["solution"] for r in ours]
    summary = Summary.load(tmp_path / "served" / "summary.json")
    assert summary.prompting == "chat" and summary.generation["stop"] == []
    # a checkpoint without a chat template: one line, nothing written
    bare = tmp_path / "bare"
    shutil.copytree(served["folder"], bare)
    (bare / "chat_template.jinja").unlink()
    capsys.readouterr()
    assert run("eval", "--model", bare, *common, "--no-ppl", "--output-dir", tmp_path / "bare-out") == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("[1/1] ")]
    assert len(err) == 1 and "has no chat template" in err[0] and "--chat-template FILE" in err[0]
    assert not (tmp_path / "bare-out").exists()
    # --chat-template renders it instead: same answers as the tokenizer's own template
    (tmp_path / "t.jinja").write_text(TEMPLATE)
    assert run("eval", "--model", bare, *common, "--no-ppl", "--chat-template", tmp_path / "t.jinja",
               "--output-dir", tmp_path / "bare-out") == 0
    assert [r["raw_answer"] for r in rows(tmp_path / "bare-out" / "results.jsonl")] == [r["raw_answer"] for r in ours]


def test_bad_input_is_one_line_and_nothing_is_written(served, tmp_path, capsys, monkeypatch):
    server = served["server"]
    out, board = tmp_path / "out", tmp_path / "board.csv"
    base = [*GREEDY, "--sandbox", "process", "--output-dir", out, "--leaderboard", board]
    cases = [
        (["--endpoint", f"http://127.0.0.1:{free_port()}/v1", "--served-model", "m"], "did not answer"),
        (["--endpoint", server.url, "--served-model", "no-such-model"], "does not serve 'no-such-model'"),
        (["--endpoint", server.url, "--served-model", served["folder"], "--api-key-env", "NO_SUCH_KEY_VAR"],
         "$NO_SUCH_KEY_VAR"),
        (["--endpoint", server.url], "needs --served-model"),
        (["--endpoint", "localhost:8000/v1", "--served-model", "m"], "http:// or https:// URL"),
        (["--endpoint", server.url, "--served-model", "m", "--chat-template", tmp_path / "t.jinja", "--chat"],
         "does not exist"),
        (["--served-model", "m", "--ckpt", "x"], "add --endpoint URL"),
    ]
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    for extra, words in cases:
        capsys.readouterr()
        t0 = time.perf_counter()
        assert run("eval", *extra, *base) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], (extra, err)
        assert time.perf_counter() - t0 < 30  # an unreachable server is said at once, not after minutes of retries
        assert not out.exists() and not board.exists()


class Stub(BaseHTTPRequestHandler):
    """An OpenAI-compatible fake: answers 500 to the first `fail` completions, ignores stop sequences (returns a
    completion that runs into the next function) and honours `n`."""
    fail = 0
    calls: list = []

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model", "created": 0,
                                                     "owned_by": "test", "root": "/weights/stub"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).calls.append(body)
        if type(self).fail > 0:
            type(self).fail -= 1
            return self._send(500, {"error": {"message": "stub overloaded", "type": "server_error"}})
        text = "    return 1\n\ndef unrelated():\n    return 2\n"
        n = body.get("n", 1)
        self._send(200, {"id": "x", "object": "text_completion", "created": 0, "model": "stub",
                         "choices": [{"index": i, "text": text, "finish_reason": "length"} for i in range(n)],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 9 * n, "total_tokens": 5 + 9 * n}})


@pytest.fixture
def stub():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Stub.calls, Stub.fail = [], 0
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_500s_are_retried_stops_are_cut_here_and_n_is_sent_when_honoured(stub, tmp_path, capsys):
    Stub.fail = 2
    args = ["eval", "--endpoint", stub, "--served-model", "stub", "--limit", "2", "--n", "4", "--k", "1",
            "--temperature", "0.8", "--sandbox", "process", "--no-leaderboard", "--output-dir", tmp_path / "o"]
    assert run(*args) == 0
    assert capsys.readouterr().err.count("retrying in") == 2
    completions = Stub.calls
    assert len(completions) == 2 + 2  # two 500s, then one request per prompt carrying n=4
    assert all(c["n"] == 4 and len(c["stop"]) == 4 and c["max_tokens"] == 128 for c in completions)
    results = rows(tmp_path / "o" / "results.jsonl")
    assert len(results) == 8 and all(r["completion"] == "    return 1\n" for r in results)  # cut at "\ndef"
    summary = Summary.load(tmp_path / "o" / "summary.json")
    assert summary.generation_timing["retries"] == 2 and summary.generation_timing["n_per_request"] == "honoured"
    assert any("4 identical samples at temperature 0.8" in n for n in summary.notes)  # the stub does not sample
    assert summary.endpoint_model == {"id": "stub", "object": "model", "created": 0, "owned_by": "test",
                                      "root": "/weights/stub"}
    # a server that keeps failing: its retries, then one line naming the status and the server's words
    Stub.fail = 100
    capsys.readouterr()
    assert run(*args[:-1], tmp_path / "o2", "--retries", "1", "--limit", "3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: endpoint") and "kept failing: 500 stub overloaded on 2 tries" in err[-1]
    assert sum(line.startswith("error:") for line in err) == 1 and not (tmp_path / "o2").exists()


class CappedClient:
    """A stand-in for the openai client of a server that ignores `n` (as transformers serve does): one choice each."""

    def __init__(self):
        self.calls = []
        self.completions = self

    def create(self, **kw):
        from types import SimpleNamespace

        self.calls.append(kw)
        return SimpleNamespace(choices=[SimpleNamespace(index=0, text=f"s{kw['seed']}\ndef x")], usage=None)


def test_a_resumed_run_whose_first_prompt_lacks_one_sample_still_gets_every_sample_from_a_capped_server():
    from harness.config import EndpointConfig, GenParams
    from harness.endpoint import Endpoint, Request

    endpoint = Endpoint(EndpointConfig(url="http://127.0.0.1:9/v1", served_model="m", concurrency=2))
    endpoint.client = CappedClient()
    params = GenParams(n=3, temperature=0.8)
    got = []
    endpoint.generate([Request("a", "p", [2], 1), Request("b", "q", [0, 1, 2], 1), Request("c", "r", [0, 1, 2], 1)],
                      params, on_done=got.extend)
    assert sorted((g.key, g.index) for g in got) == [("a", 2)] + [(k, i) for k in "bc" for i in range(3)]
    assert all(g.completion.startswith("s") and "def" not in g.completion for g in got)  # cut at the stop
    assert endpoint.stats.n_per_request == "capped: one request per sample"


def test_a_resumed_request_is_seeded_as_its_first_missing_sample_so_it_does_not_repeat_sample_0():
    from harness.config import EndpointConfig, GenParams
    from harness.endpoint import Endpoint, request

    params = GenParams(n=3, temperature=0.8)
    runs = []
    for indices in ([0, 1, 2], [1, 2]):  # a whole run, then a resume that lacks samples 1 and 2
        endpoint = Endpoint(EndpointConfig(url="http://127.0.0.1:9/v1", served_model="m"))
        endpoint.client = CappedClient()
        got = []
        endpoint.generate([request("a", "p", indices, params)], params, on_done=got.extend)
        runs.append({g.index: g.completion for g in got})
    assert len(set(runs[0].values())) == 3  # each sample its own seed
    assert runs[1] == {1: runs[0][1], 2: runs[0][2]}  # the resume gives what the whole run gave, not sample 0 again


class WebPage(BaseHTTPRequestHandler):
    """Not an API: a web page (200, text/html) at every path, as a UI on the port --endpoint names would answer."""

    def log_message(self, *args):
        pass

    def _page(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        data = b"<html><body>welcome</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _page


def test_a_web_page_that_is_no_api_is_one_line_not_a_traceback():
    from common.errors import UserError
    from harness.config import EndpointConfig, GenParams
    from harness.endpoint import Endpoint, request

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), WebPage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        endpoint = Endpoint(EndpointConfig(url=f"http://127.0.0.1:{httpd.server_address[1]}/v1", served_model="m",
                                           retries=0))
        with pytest.raises(UserError, match="text/html that is no OpenAI model list"):
            endpoint.model_card()
        params = GenParams(n=1)
        with pytest.raises(UserError, match="not an OpenAI-compatible completions server"):
            endpoint.generate([request("a", "p", [0], params)], params, on_done=lambda gens: None)
    finally:
        httpd.shutdown()
