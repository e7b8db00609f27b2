"""Generation through an OpenAI-compatible server (vLLM, TGI, `transformers serve`) with the official `openai` client:
up to --concurrency requests in flight, each retried with backoff on 429, 5xx, time-outs and dropped connections,
every answer cut at the stop sequences here (servers differ in whether they keep or honour them) and appended to the
generation cache the moment it arrives, so a killed run loses only the requests in flight.

n samples per prompt: one request with `n` when the server honours it; when it returns fewer choices (transformers
serve ignores `n`, TGI caps it) or rejects n > 1, one request per sample, each with its own seed. At temperature 0
the n samples are one greedy answer: it is asked for once.
"""
from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from common.errors import UserError
from harness.config import EndpointConfig, GenParams
from harness.generate import Generation, sample_seed, truncate_at_stop

MAX_STOP = 4  # stop sequences sent: the OpenAI API's limit and TGI's default; all of them are cut here anyway
BACKOFF_S, BACKOFF_CAP_S = 1.0, 30.0  # 1, 2, 4, ... seconds between tries, at most 30 (or the server's Retry-After)
RETRY_STATUS = (408, 409, 429)  # and every 5xx


@dataclass
class Request:
    key: str  # the prompt id
    prompt: str | list  # the text to complete, or the chat messages
    indices: list[int]  # the sample indices this request answers
    seed: int


@dataclass
class EndpointStats:
    requests: int = 0
    retries: int = 0
    sequences: int = 0
    new_tokens: int = 0  # as the server counts them (tokens it generated past a stop sequence it ignored included)
    seconds: float = 0.0
    n_per_request: str = "not needed"  # "honoured", or "capped: one request per sample"


def request(key: str, prompt: str | list, indices: list[int], params: GenParams) -> Request:
    """The request for these samples, seeded as its first sample is: a server that gives one choice only answers
    that sample as it would alone, so a resumed run's first request does not repeat sample 0's seed."""
    return Request(key, prompt, indices, sample_seed(params.seed, key, indices[0]) % 2 ** 31)


def _detail(exc) -> str:
    """The server's own words for a failed request, on one line."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        body = body.get("detail") or (err.get("message") if isinstance(err, dict) else err) or body.get("message") or body
    text = str(body if body else getattr(exc, "message", None) or exc)
    return " ".join(text.split())[:200]


def _retryable(exc) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # refused, reset, timed out
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code in RETRY_STATUS or exc.status_code >= 500)


class Endpoint:
    def __init__(self, cfg: EndpointConfig, chat: bool = False):
        import openai

        key = "EMPTY"  # vLLM's and TGI's convention for a server started without a key
        if cfg.api_key_env is not None:
            key = os.environ.get(cfg.api_key_env, "")
            if not key:
                raise UserError(f"--api-key-env {cfg.api_key_env}: the variable is not set or empty: export the "
                                f"endpoint's API key in ${cfg.api_key_env}, or drop --api-key-env for a server "
                                "that needs none")
        self.cfg, self.chat = cfg, chat
        self.client = openai.OpenAI(base_url=cfg.url, api_key=key, max_retries=0, timeout=cfg.request_timeout)
        self.n_capped = False
        self.stats = EndpointStats()
        self._count = threading.Lock()  # the request threads count into `stats`

    def _add(self, **counts) -> None:
        with self._count:
            for name, value in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + value)

    def _fatal(self, exc, tries: int) -> UserError:
        """The one line for a request that cannot succeed: the user's input is wrong or the server gave up."""
        import openai

        url, model = self.cfg.url, self.cfg.served_model
        if isinstance(exc, openai.APIConnectionError):
            what = "timed out" if isinstance(exc, openai.APITimeoutError) else "did not answer"
            return UserError(f"endpoint {url} {what} ({_detail(exc)}) on {tries} tries: start the server (or check "
                             f"--endpoint, which ends in /v1)")
        code = exc.status_code
        if code in (401, 403):
            return UserError(f"endpoint {url} refused the API key ({code}: {_detail(exc)}): put the key in an "
                             "environment variable and pass its name with --api-key-env VAR")
        if code == 404:
            return UserError(f"endpoint {url} answered 404 for model {model!r} ({_detail(exc)}): check "
                             f"--served-model (GET {url.rstrip('/')}/models lists what it serves) and that the URL "
                             "ends in /v1")
        hint = (" (with --chat the server renders the model's chat template: does the model have one?)"
                if self.chat else "")
        if code >= 500 or code in RETRY_STATUS:
            return UserError(f"endpoint {url} kept failing: {code} {_detail(exc)} on {tries} tries{hint}")
        return UserError(f"endpoint {url} rejected the request for {model!r} ({code}: {_detail(exc)}){hint}")

    def _call(self, fn, reconnect: bool = True):
        """fn() with retries on what may pass (429, 5xx, time-outs, and with `reconnect` dropped connections);
        anything else, or the last failure, is one line."""
        import openai

        for attempt in range(self.cfg.retries + 1):
            try:
                return fn()
            except openai.OpenAIError as exc:
                gone = isinstance(exc, openai.APIConnectionError) and not reconnect
                if gone or not _retryable(exc) or attempt == self.cfg.retries:
                    raise self._fatal(exc, attempt + 1) from exc
                wait_s = min(BACKOFF_CAP_S, BACKOFF_S * 2 ** attempt) * (0.75 + random.random() / 2)
                after = getattr(getattr(exc, "response", None), "headers", {}).get("retry-after", "")
                if after.replace(".", "", 1).isdigit():
                    wait_s = min(BACKOFF_CAP_S, float(after))
                self._add(retries=1)
                print(f"warning: endpoint: {_detail(exc)[:120]}; retrying in {wait_s:.1f}s "
                      f"({attempt + 1}/{self.cfg.retries})", file=sys.stderr)
                time.sleep(wait_s)

    def model_card(self) -> dict:
        """GET /v1/models: the server answers, takes the key and serves --served-model; its entry as it lists it."""
        # no server there: say so at once; the raw answer, since a web page that is no API (200, HTML) breaks the
        # client's own parsing with an AttributeError
        answer = self._call(lambda: self.client.models.with_raw_response.list(), reconnect=False)
        try:
            listed = {m["id"]: {k: v for k, v in m.items() if v is not None} for m in json.loads(answer.text)["data"]}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"endpoint {self.cfg.url} answered GET /models with "
                            f"{answer.headers.get('content-type') or 'a body'} that is no OpenAI model list: point "
                            "--endpoint at an OpenAI-compatible server's API base (it ends in /v1)") from None
        if listed and self.cfg.served_model not in listed:
            names = ", ".join(sorted(listed)[:8])
            raise UserError(f"endpoint {self.cfg.url} does not serve {self.cfg.served_model!r}; it serves: {names}: "
                            "pass one of them as --served-model")
        card = listed.get(self.cfg.served_model) or {"id": self.cfg.served_model}
        card.pop("permission", None)  # vLLM's per-model permission list: noise in a summary
        return card

    def _ask(self, req: Request, n: int, params: GenParams) -> tuple[list[str], int]:
        """One request: (the texts of its choices in order, completion tokens as the server counts them)."""
        common = {"model": self.cfg.served_model, "max_tokens": params.max_new_tokens,
                  "temperature": params.temperature, "top_p": params.top_p, "seed": req.seed}
        if n > 1:
            common["n"] = n
        if params.stop:
            common["stop"] = list(params.stop[:MAX_STOP])
        self._add(requests=1)
        if self.chat:
            r = self.client.chat.completions.create(messages=req.prompt, **common)
        else:
            r = self.client.completions.create(prompt=req.prompt, **common)
        choices = sorted(getattr(r, "choices", None) or [], key=lambda c: c.index)  # a web page (200, HTML) has none
        texts = [(c.message.content or "") if self.chat else c.text for c in choices]
        usage = getattr(r, "usage", None)
        tokens = usage.completion_tokens if usage is not None else 0
        return texts, tokens

    def _answer(self, req: Request, params: GenParams) -> list[Generation]:
        """The request's generations, one per index: the greedy answer copied, or n choices."""
        greedy = params.temperature == 0
        want = 1 if greedy else len(req.indices)
        texts, tokens = self._call(lambda: self._ask(req, want, params))
        if not texts:
            raise UserError(f"endpoint {self.cfg.url} answered with no choice for {self.cfg.served_model!r}: "
                            "it is not an OpenAI-compatible completions server")
        self._add(new_tokens=tokens)
        texts = [texts[0]] * len(req.indices) if greedy else texts[:len(req.indices)]
        per = tokens // max(1, len(texts))
        return [Generation(req.key, i, truncate_at_stop(t, params.stop) if params.stop else t, per)
                for i, t in zip(req.indices, texts)]

    def _probe_n(self, req: Request, params: GenParams) -> tuple[list[Generation], list[Request]]:
        """The first request that asks for n > 1 runs alone: does the server give n choices? Returns its generations
        and, when it gave fewer, one request per sample still missing (its own seed each)."""
        import openai

        try:
            got = self._answer(req, params)
        except UserError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, openai.APIStatusError) and cause.status_code in (400, 422)):
                raise
            got = []  # rejects n > 1: ask for one at a time below (a request that fails that way too says why)
        if len(got) == len(req.indices):
            self.stats.n_per_request = "honoured"
            return got, []
        self.n_capped = True
        self.stats.n_per_request = "capped: one request per sample"
        return got, self.split(Request(req.key, req.prompt, req.indices[len(got):], req.seed), params)

    @staticmethod
    def split(req: Request, params: GenParams) -> list[Request]:
        return [request(req.key, req.prompt, [i], params) for i in req.indices]

    def generate(self, requests: list[Request], params: GenParams, on_done, progress=None) -> EndpointStats:
        """Sends the requests, `cfg.concurrency` at a time; on_done(list[Generation]) as each one is answered. On a
        request that fails for good the ones in flight are still collected (and cached), then its line is raised."""
        start = time.perf_counter()
        done = 0

        def collect(gens: list[Generation]) -> None:
            nonlocal done
            on_done(gens)
            done += len(gens)
            self.stats.sequences += len(gens)
            if progress is not None:
                progress.update(len(gens))

        queue, failure = list(requests), None
        # The probe needs a request that asks for n > 1: a resumed run's first prompt may lack one sample only.
        probe = next((r for r in queue if len(r.indices) > 1), None) if params.temperature > 0 else None
        if probe is not None:
            if self.n_capped:
                queue = [r for q in queue for r in self.split(q, params)]
            else:
                queue.remove(probe)
                try:
                    first, rest = self._probe_n(probe, params)
                except UserError as exc:
                    failure = exc
                    queue = []
                else:
                    collect(first)
                    queue = rest + (queue if not self.n_capped else [r for q in queue for r in self.split(q, params)])
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="endpoint") as pool:
            asked = {pool.submit(self._answer, r, params): r for r in queue[:self.cfg.concurrency]}
            pending, queue = set(asked), queue[self.cfg.concurrency:]
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    req = asked.pop(f)
                    try:
                        gens = f.result()
                    except UserError as exc:
                        failure = failure or exc
                        continue
                    collect(gens)
                    if len(gens) < len(req.indices):  # fewer choices than n this time: ask for the rest one by one
                        queue += self.split(Request(req.key, req.prompt, req.indices[len(gens):], req.seed), params)
                if failure is None:
                    while queue and len(pending) < self.cfg.concurrency:
                        req = queue.pop(0)
                        f = pool.submit(self._answer, req, params)
                        asked[f] = req
                        pending.add(f)
        self.stats.seconds += time.perf_counter() - start
        if failure is not None:
            kept = f"; the {done} answer(s) received are cached: rerun the same command to resume" if done else ""
            raise UserError(f"{failure}{kept}") from failure.__cause__
        return self.stats
