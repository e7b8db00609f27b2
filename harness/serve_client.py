"""A client for `harness serve`, and rewards in the shapes RL trainers call: verl's custom reward
(`compute_score(data_source, solution_str, ground_truth, extra_info)`) and TRL's reward function (open-r1's
GRPO). Standard library and httpx only, so that verl can load this file by path.

An item the server could not judge (an infrastructure error, a full queue, a lost connection) is retried until the
client's patience runs out, then raises `JudgeUnavailable`: a reward is never 0 because the sandbox was busy.

    HARNESS_SERVE_URL         the server (default http://127.0.0.1:8080)
    HARNESS_SERVE_TOKEN_FILE  a file holding its bearer token (or HARNESS_SERVE_TOKEN, the token itself)
"""
from __future__ import annotations

import os
import random
import time

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
PATIENCE_S = 900.0  # how long an item may keep failing with retryable errors before JudgeUnavailable
REQUEST_TIMEOUT_S = 330.0  # one HTTP request (the server's default deadline is 300 s)
RETRYABLE = (429, 502, 503, 504)


class JudgeUnavailable(RuntimeError):
    """The server did not judge an item within the client's patience (it is down, or kept failing)."""


class JudgeRequestError(ValueError):
    """The server refused the request (4xx): unknown suite or task, a malformed item, a missing token."""


def read_token(token: str | None = None) -> str | None:
    if token is not None:
        return token
    path = os.environ.get("HARNESS_SERVE_TOKEN_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return os.environ.get("HARNESS_SERVE_TOKEN") or None


class JudgeClient:
    """`judge(items)` -> one result per item: {"passed", "status", "result", "cpu_s", "wall_s", "oracle"}."""

    def __init__(self, url: str | None = None, token: str | None = None, patience_s: float = PATIENCE_S,
                 request_timeout_s: float = REQUEST_TIMEOUT_S):
        token = read_token(token)
        self.url = (url or os.environ.get("HARNESS_SERVE_URL") or DEFAULT_URL).rstrip("/")
        self.patience_s = patience_s
        self._http = httpx.Client(base_url=self.url, timeout=request_timeout_s,
                                  headers={"Authorization": f"Bearer {token}"} if token else {})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._http.close()

    def ping(self) -> dict:
        return self._http.get("/v1/ping").json()

    def judge(self, items: list[dict], timeout: float | None = None, memory_mb: int | None = None) -> list[dict]:
        """Judges the items in one request; items answered `error` (and whole requests refused with 429 or 5xx, or
        lost) are sent again, with backoff, until they are judged or the patience runs out."""
        results: list[dict | None] = [None] * len(items)
        todo = list(range(len(items)))
        give_up = time.monotonic() + self.patience_s
        delay, why = 0.5, ""
        while todo:
            body = {"items": [items[i] for i in todo]}
            if timeout is not None:
                body["timeout"] = timeout
            if memory_mb is not None:
                body["memory_mb"] = memory_mb
            wait = delay
            try:
                r = self._http.post("/v1/judge", json=body)
            except httpx.TransportError as exc:  # a dropped connection, a server restarting
                r, why = None, f"{type(exc).__name__}: {exc}"
            if r is not None:
                data = _json(r)
                if r.status_code in (200, 503, 504) and isinstance(data.get("results"), list):
                    for i, res in zip(todo, data["results"]):
                        if res.get("status") != "error":
                            results[i] = res
                        else:
                            why = res.get("result", "error")
                    todo = [i for i in todo if results[i] is None]
                    if not todo:
                        break
                elif r.status_code in RETRYABLE:
                    why = f"HTTP {r.status_code}: {data.get('detail', '')}"
                    wait = max(delay, _retry_after(r))
                else:
                    raise JudgeRequestError(f"HTTP {r.status_code}: {data.get('detail', r.text[:300])}")
            if time.monotonic() + wait > give_up:
                raise JudgeUnavailable(f"{len(todo)} item(s) not judged within {self.patience_s:g} s by {self.url} "
                                       f"(last: {why})")
            time.sleep(wait * (0.5 + random.random()))  # jittered, so that many clients do not retry in step
            delay = min(2 * delay, 30.0)
        return results  # type: ignore[return-value]


def _json(r: httpx.Response) -> dict:
    try:
        data = r.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(r: httpx.Response) -> float:
    try:
        return float(r.headers.get("retry-after", 1))
    except ValueError:
        return 1.0


def answer_item(suite: str, task_id: str, text: str) -> dict:
    """A model's output as an item: a chat answer with a fenced block is drawn into a program by the server (as
    `harness eval --chat` does); plain text is the completion after the task's prompt."""
    return {"suite": suite, "task_id": task_id, ("answer" if "```" in text else "completion"): text}


_CLIENT: JudgeClient | None = None


def _client() -> JudgeClient:
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = JudgeClient()
    return _CLIENT


def compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float:
    """verl's custom reward function: 1.0 when the server's verdict is `passed`, else 0.0.

    The suite is `extra_info["suite"]`, else `data_source` (its last path part: "codeparrot/humaneval" works); the
    task is `extra_info["task_id"]`, else `ground_truth`."""
    extra = extra_info if isinstance(extra_info, dict) else {}
    suite = extra.get("suite") or str(data_source).rstrip("/").rpartition("/")[2]
    task_id = extra.get("task_id") or ground_truth
    result, = _client().judge([answer_item(suite, task_id, solution_str)])
    return 1.0 if result["passed"] else 0.0


def code_reward(completions, task_id, suite=None, **kwargs) -> list[float]:
    """A TRL / open-r1 GRPO reward function: the dataset's `task_id` (and `suite`) columns name each prompt's task;
    completions are strings or chat turns. One request for the whole batch."""
    suites = suite if isinstance(suite, list) else [suite or "humaneval"] * len(completions)
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    results = _client().judge([answer_item(s, t, x) for s, t, x in zip(suites, task_id, texts)])
    return [1.0 if r["passed"] else 0.0 for r in results]
