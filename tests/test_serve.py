"""`harness serve`: the real server (uvicorn on 127.0.0.1, a free port) over a real Docker pool, driven by the
official `sandbox-fusion` client unchanged and by ours; bad input gets one-line 4xx answers."""
import base64
import json
import socket
import threading
import time

import httpx
import pytest

from conftest import require_docker

TOKEN = "s3cret-token"
LOOP = "    while True:\n        pass\n"
FORGE = ("    class Liar:\n        def __eq__(self, other): return True\n        def __bool__(self): return True\n"
         "    return Liar()\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{server.config.port}"


@pytest.fixture(scope="module")
def served():
    """One pool and one service; two servers in front of it: without a token (what SandboxFusion's client, which
    sends none, talks to) and with one."""
    require_docker()
    from harness.config import SandboxConfig
    from harness.judge_service import JudgeService, SuiteCatalog
    from harness.serve import create_app
    from tasks import load_suite

    sandbox = SandboxConfig(workers=1, slots=2, oracle="isolated", timeout_factor=0)
    with sandbox.make_pool() as pools:
        service = JudgeService(pools.base, SuiteCatalog([load_suite("humaneval")], sandbox, pools.base))
        servers = [start(create_app(service)), start(create_app(service, TOKEN))]
        yield {"service": service, "open": servers[0][2], "locked": servers[1][2]}
        for server, thread, _ in servers:
            server.should_exit = True
            thread.join(10)
        service.close()


def test_the_official_sandbox_fusion_client_runs_code(served):
    from sandbox_fusion import RunCodeRequest, RunStatus, run_code

    url = served["open"]
    code = ("import sys\nname = input()\ndata = open('data.txt').read()\nopen('out.txt', 'w').write(data.upper())\n"
            "print('hello', name)\nprint('to stderr', file=sys.stderr)\n")
    r = run_code(RunCodeRequest(code=code, language="python", stdin="world\n", run_timeout=5,
                                files={"data.txt": base64.b64encode(b"abc").decode()}, fetch_files=["out.txt"]),
                 endpoint=url)
    assert r.status == RunStatus.Success and r.run_result.return_code == 0, r
    assert r.run_result.stdout == "hello world\n" and r.run_result.stderr == "to stderr\n"
    assert base64.b64decode(r.files["out.txt"]) == b"ABC"
    failed = run_code(RunCodeRequest(code="import sys\nsys.exit(3)", language="python"), endpoint=url)
    assert failed.status == RunStatus.Failed and failed.run_result.return_code == 3
    crashed = run_code(RunCodeRequest(code="raise ValueError('boom')", language="python"), endpoint=url)
    assert crashed.run_result.return_code == 1 and "ValueError: boom" in crashed.run_result.stderr
    slow = run_code(RunCodeRequest(code="while True: pass", language="python", run_timeout=0.5), endpoint=url)
    assert slow.status == RunStatus.Failed and slow.run_result.status == "TimeLimitExceeded"


def test_the_official_client_submits_to_our_suites(served, humaneval):
    from sandbox_fusion import SubmitRequest, TestConfig, submit

    url, task = served["open"], humaneval.by_id()["HumanEval/0"]
    ok = submit(SubmitRequest(dataset="humaneval", id="HumanEval/0", completion=task.canonical_solution,
                              config=TestConfig()), endpoint=url)
    assert ok.accepted and ok.tests[0].passed and ok.extra["oracle"] == "isolated"
    answer = "Here you go:\n```python\n" + task.prompt + task.canonical_solution + "```\n"
    fenced = submit(SubmitRequest(dataset="humaneval", id="HumanEval/0", completion=answer, config=TestConfig()),
                    endpoint=url)
    assert fenced.accepted and fenced.extracted_type == "fenced"
    forged = submit(SubmitRequest(dataset="humaneval", id="HumanEval/0", completion=FORGE, config=TestConfig()),
                    endpoint=url)
    assert not forged.accepted and forged.tests[0].exec_info.status == "Failed"


def test_our_client_and_the_verl_reward(served, humaneval, monkeypatch):
    from harness import serve_client
    from harness.serve_client import JudgeClient

    he0 = humaneval.by_id()["HumanEval/0"]
    items = [{"suite": "humaneval", "task_id": "HumanEval/0", "completion": he0.canonical_solution},
             {"suite": "humaneval", "task_id": "HumanEval/0", "completion": "    return True\n"},
             {"suite": "humaneval", "task_id": "HumanEval/0", "completion": FORGE},
             {"suite": "humaneval", "task_id": "HumanEval/0", "completion": LOOP},
             {"program": "def f(x):\n    return x + 1\n", "test": "def check(c):\n    assert c(1) == 2\n",
              "entry_point": "f"},
             {"program": "assert 1 + 1 == 3"}]
    with JudgeClient(served["locked"], token=TOKEN) as client:
        results = client.judge(items, timeout=1.0)
        health = client.ping()
    assert [r["status"] for r in results] == ["passed", "failed", "failed", "timeout", "passed", "failed"]
    assert [r["oracle"] for r in results] == ["isolated"] * 5 + ["inline"]
    assert results[0]["cpu_s"] > 0 and health["slots"] == 2 and health["engines"] == 1
    monkeypatch.setattr(serve_client, "_CLIENT", JudgeClient(served["open"]))
    assert serve_client.compute_score("codeparrot/humaneval", he0.canonical_solution, "HumanEval/0") == 1.0
    assert serve_client.compute_score("humaneval", "```python\n" + he0.prompt + "    return False\n```",
                                      "HumanEval/0") == 0.0
    assert serve_client.code_reward([he0.canonical_solution, [{"role": "assistant", "content": "    return 1\n"}]],
                                    task_id=["HumanEval/0", "HumanEval/0"]) == [1.0, 0.0]


@pytest.mark.parametrize("body, code, says", [
    ({"items": [{"suite": "nope", "task_id": "x", "completion": ""}]}, 404, "unknown suite 'nope'"),
    ({"items": [{"suite": "humaneval", "task_id": "HumanEval/999", "completion": ""}]}, 404, "unknown task"),
    ({"items": [{"suite": "humaneval", "task_id": "HumanEval/1"}]}, 422, "needs exactly one of 'completion'"),
    ({"items": [{"suite": "humaneval", "task_id": "HumanEval/1", "completion": "", "bogus": 1}]}, 422,
     "items.0.bogus"),
    ({"items": []}, 422, "items:"),
    ('{"items": [', 422, "malformed JSON body"),
    ({"items": [{"program": "pass"}], "timeout": -1}, 422, "timeout:"),
])
def test_bad_input_gets_a_one_line_4xx(served, body, code, says):
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(served["open"] + "/v1/judge", content=content, headers={"content-type": "application/json"})
    assert r.status_code == code and says in r.json()["detail"], r.text
    assert "\n" not in r.json()["detail"]


def test_a_token_is_required_when_set(served):
    body = {"items": [{"program": "pass"}]}
    missing = httpx.post(served["locked"] + "/v1/judge", json=body)
    wrong = httpx.post(served["locked"] + "/v1/judge", json=body, headers={"Authorization": "Bearer nope"})
    right = httpx.post(served["locked"] + "/v1/judge", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == wrong.status_code == 401 and "bearer token" in missing.json()["detail"]
    assert right.status_code == 200 and right.json()["results"][0]["status"] == "passed"
    assert httpx.get(served["locked"] + "/metrics").status_code == 401
    assert httpx.get(served["locked"] + "/v1/ping").status_code == 200  # health checks need no secret


def test_unsupported_language_and_bad_files_are_4xx(served):
    r = httpx.post(served["open"] + "/run_code", json={"code": "int main(){}", "language": "cpp"})
    assert r.status_code == 400 and "python only" in r.json()["detail"]
    r = httpx.post(served["open"] + "/run_code", json={"code": "", "language": "python", "files": {"../x": ""}})
    assert r.status_code == 400 and "relative path" in r.json()["detail"]


SLEEP = {"program": "import time\ntime.sleep(1.0)\n"}


def test_a_full_queue_answers_429_with_retry_after(served):
    service, url = served["service"], served["open"]
    service.max_queue, before = 4, service.max_queue
    try:
        busy = threading.Thread(target=httpx.post, args=(url + "/v1/judge",), kwargs={
            "json": {"items": [SLEEP] * 4}, "timeout": 30})
        busy.start()
        time.sleep(0.3)
        r = httpx.post(url + "/v1/judge", json={"items": [{"program": "pass"}]})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
        busy.join()
    finally:
        service.max_queue = before


def test_deadline_and_a_disconnected_clients_work_is_dropped(served):
    url = served["open"]
    r = httpx.post(url + "/v1/judge", json={"items": [SLEEP] * 2 + [{"program": "pass"}], "deadline_s": 0.5},
                   timeout=30)
    assert r.status_code == 504 and {x["status"] for x in r.json()["results"][:2]} == {"error"}
    with pytest.raises(httpx.ReadTimeout):  # 12 one-second sleeps on 2 slots: 6 s of work, abandoned at 0.3 s
        httpx.post(url + "/v1/judge", json={"items": [SLEEP] * 12}, timeout=0.3)
    time.sleep(1.0)  # the server notices within DISCONNECT_POLL_S and drops what has not started
    start = time.monotonic()
    r = httpx.post(url + "/v1/judge", json={"items": [{"program": "pass"}]}, timeout=30)
    assert r.status_code == 200 and time.monotonic() - start < 2.5, "the abandoned work still ran before it"
    metrics = httpx.get(url + "/metrics").text
    assert "harness_serve_dropped_total" in metrics and "harness_serve_queue_depth 0.0" in metrics


def test_serve_refuses_a_public_address_without_a_token(capsys):
    from harness.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without --token-file" in err and "Traceback" not in err
