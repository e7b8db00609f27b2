"""What an evaluation is asked to do, declared once: `EvalConfig` (suite, k, generation, perplexity, where results go)
and `SandboxConfig` (backend and limits). The CLI builds them from its arguments; library callers build them directly.
Validation lives here, so every entry point rejects the same bad input with the same one line."""
from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.errors import UserError
from harness.calibrate import TIMEOUT_FACTOR
from harness.chat import read_template
from sandbox.jobs import ORACLES
from sandbox.limits import DEFAULT_MEMORY_MB, DEFAULT_SLOTS, DEFAULT_TIMEOUT_S, MAX_SLOTS, MIN_MEMORY_MB
from tasks.passk import parse_ks

from tasks.suite import HUMANEVAL_STOP as STOP_SEQUENCES


@dataclass(frozen=True)
class GenParams:
    n: int = 10
    temperature: float = 0.2
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0
    stop: tuple[str, ...] = STOP_SEQUENCES

    def __post_init__(self):
        if self.n < 1 or self.max_new_tokens < 1 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise UserError("generation needs --n >= 1, --max-new-tokens >= 1, --temperature >= 0 and "
                            "0 < --top-p <= 1")

    def key(self) -> str:
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SandboxConfig:
    backend: str = "docker"  # or "process": NO isolation, for machines without Docker only
    workers: int | None = None  # containers; default: CPU count
    slots: int = DEFAULT_SLOTS
    timeout: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_factor: float = TIMEOUT_FACTOR  # a task gets max(timeout, factor x its reference's time); 0: off
    oracle: str = "inline"  # or "isolated": the tests run in another process than the program they judge
    engines: tuple[str, ...] = ()  # Docker engine URLs; default: HARNESS_DOCKER_HOSTS, DOCKER_HOST or the local one

    def __post_init__(self):
        if self.oracle not in ORACLES:
            raise UserError(f"--oracle must be one of {', '.join(ORACLES)}, got {self.oracle!r}")
        if not 1 <= self.slots <= MAX_SLOTS:
            raise UserError(f"--slots must be between 1 and {MAX_SLOTS}, got {self.slots}")
        if self.timeout_factor < 0:
            raise UserError(f"--timeout-factor must be 0 (off) or positive, got {self.timeout_factor}")
        if self.timeout <= 0:
            raise UserError(f"--timeout must be positive, got {self.timeout}")
        if self.workers is not None and self.workers < 1:
            raise UserError(f"--workers must be at least 1, got {self.workers}")
        if self.memory_mb < MIN_MEMORY_MB:
            raise UserError(f"--memory-mb must be at least {MIN_MEMORY_MB}, got {self.memory_mb}")

    @classmethod
    def from_args(cls, args) -> "SandboxConfig":
        return cls(backend=args.sandbox, workers=args.workers, slots=args.slots, timeout=args.timeout,
                   memory_mb=args.memory_mb, timeout_factor=args.timeout_factor, oracle=args.oracle,
                   engines=tuple(getattr(args, "docker_host", None) or ()))

    def make_pool(self):
        """The pools of this run, one per suite environment (sandbox/envpools.py): the base image's starts now."""
        from sandbox.envpools import EnvPools
        from sandbox.limits import Limits
        from sandbox.pool import SandboxPool

        return EnvPools(lambda env: SandboxPool(backend=self.backend, workers=self.workers,
                                                limits=Limits(slots=self.slots, memory_mb=self.memory_mb),
                                                engines=list(self.engines), env=env))

    def preflight(self, envs=()) -> dict[str, str]:
        """Fail in one line before hours of generation, not after: no engine, no image. Each suite environment in
        `envs` is built where missing; one that cannot be is returned ({env hash: its one line}), not raised, so
        that the suites which do not need it still run."""
        failed: dict[str, str] = {}
        if self.backend == "docker":
            from sandbox.engine import engine_urls
            from sandbox.pool import connect_engines, ensure_images

            engines = connect_engines(engine_urls(list(self.engines)))
            ensure_images(engines)
            for env in dict.fromkeys(e for e in envs if e is not None):
                try:
                    ensure_images(engines, env)
                except UserError as exc:
                    failed[env.hash] = str(exc)
        return failed

    def usable(self, suites: list) -> tuple[list, list[str]]:
        """preflight() over these suites: (the suites whose images are ready, one line per suite that cannot run)."""
        failed = self.preflight([e for s in suites for e in s.envs()])
        keep, errors = [], []
        for s in suites:
            why = next((failed[e.hash] for e in s.envs() if e.hash in failed), None)
            if why is None:
                keep.append(s)
            else:
                errors.append(f"{s.name} not evaluated: {why}")
                print(f"error: {errors[-1]}", file=sys.stderr)
        return keep, errors


@dataclass(frozen=True)
class EndpointConfig:
    """An OpenAI-compatible server to generate through (`--endpoint`) instead of loading a checkpoint."""
    url: str  # the API base, e.g. http://localhost:8000/v1
    served_model: str  # the model name the server answers to (--served-model)
    api_key_env: str | None = None  # the environment variable holding the key; None: the server needs none
    concurrency: int = 8  # requests in flight at once
    retries: int = 6  # further tries of a request that met a 429, a 5xx, a time-out or a dropped connection
    request_timeout: float = 600.0  # seconds one request may take

    def __post_init__(self):
        if not self.url.startswith(("http://", "https://")):
            raise UserError(f"--endpoint must be an http:// or https:// URL (e.g. http://localhost:8000/v1), "
                            f"got {self.url!r}")
        if not self.served_model:
            raise UserError("--endpoint needs --served-model NAME: the model name the server answers to "
                            "(GET /v1/models lists them)")
        if self.concurrency < 1 or self.retries < 0 or self.request_timeout <= 0:
            raise UserError("--concurrency must be at least 1, --retries at least 0 and --request-timeout positive")

    def key(self) -> str:
        """What generations through this endpoint are cached under: the server's URL and the model it serves."""
        return "endpoint-" + hashlib.sha256(f"{self.url.rstrip('/')}\0{self.served_model}".encode()).hexdigest()[:16]

    @classmethod
    def from_args(cls, args) -> "EndpointConfig | None":
        if args.endpoint is None:
            return None
        return cls(url=args.endpoint, served_model=args.served_model or "", api_key_env=args.api_key_env,
                   concurrency=args.concurrency, retries=args.retries, request_timeout=args.request_timeout)


@dataclass(frozen=True)
class EvalConfig:
    tasks: str = "humaneval"  # registered suites or JSONL files of tasks, comma-separated
    limit: int | None = None  # only the first N tasks
    ks: tuple[int, ...] = (1, 10, 100)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    gen: GenParams = field(default_factory=GenParams)
    gen_batch_size: int = 64
    ppl: bool = True
    ppl_data: str | None = None  # default: the checkpoint's corpus, valid split
    ppl_max_tokens: int = 65536
    output_dir: Path | None = None  # default: eval/<branch>/<commit>-<suite>-<params>
    leaderboard: Path | None = Path("results/leaderboard.csv")  # None: do not upsert
    board_name: str | None = None  # how leaderboard rows name the hub (--name); default: portable path or repo id
    chat: bool = False  # instruct models: prompts asked as a chat, programs extracted from the answers
    chat_template: str | None = None  # a Jinja chat template (--chat-template) in place of the tokenizer's
    endpoint: EndpointConfig | None = None  # generate through this server instead of a checkpoint

    def __post_init__(self):
        if self.chat_template is not None and not self.chat:
            raise UserError("--chat-template applies to --chat only: add --chat")
        if self.chat_template is not None and self.endpoint is not None:
            raise UserError("--chat-template applies to local checkpoints: a server applies its own template (vLLM: "
                            "`vllm serve DIR --chat-template FILE`); drop --chat-template")
        if self.gen_batch_size < 1:
            raise UserError(f"--gen-batch-size must be at least 1, got {self.gen_batch_size}")
        if self.ppl_max_tokens < 2:
            raise UserError(f"--ppl-max-tokens must be at least 2, got {self.ppl_max_tokens}")

    @classmethod
    def from_args(cls, args) -> "EvalConfig":
        return cls(tasks=args.tasks, limit=args.limit, ks=tuple(parse_ks(args.k)), sandbox=SandboxConfig.from_args(args),
                   gen=GenParams(n=args.n, temperature=args.temperature, top_p=args.top_p,
                                 max_new_tokens=args.max_new_tokens, seed=args.seed),
                   gen_batch_size=args.gen_batch_size, ppl=not args.no_ppl, ppl_data=args.ppl_data,
                   ppl_max_tokens=args.ppl_max_tokens,
                   output_dir=Path(args.output_dir) if args.output_dir else None,
                   leaderboard=None if args.no_leaderboard else Path(args.leaderboard),
                   board_name=getattr(args, "name", None), chat=getattr(args, "chat", False),
                   chat_template=read_template(getattr(args, "chat_template", None)),
                   endpoint=EndpointConfig.from_args(args) if hasattr(args, "endpoint") else None)

    def load_suites(self) -> list:
        from tasks import load_suites

        return [s.limit(self.limit) for s in load_suites(self.tasks)]

    def checkpoint_dir(self, ref, suite, many: bool) -> Path:
        """One directory per evaluation; --output-dir is used as is for a single checkpoint, as a root for many."""
        return self.evaluation_dir(ref, f"{suite.hash[:8]}-{self.gen.key()[:8]}{'-chat' if self.chat else ''}", many)

    def endpoint_dir(self, suite, many: bool) -> Path:
        """eval/endpoint/<served model>-<suite>-<params> (or --output-dir itself for a single suite)."""
        if self.output_dir and not many:
            return self.output_dir
        name = Path(self.endpoint.served_model.rstrip("/")).name.replace(":", "_") or "model"
        what = f"{name}-{suite.hash[:8]}-{self.gen.key()[:8]}{'-chat' if self.chat else ''}"
        return (self.output_dir or Path("eval")) / "endpoint" / what

    def evaluation_dir(self, ref, what: str, many: bool) -> Path:
        """eval/<branch>/<commit>-<what> (or --output-dir itself for a single evaluation)."""
        if self.output_dir and not many:
            return self.output_dir
        root = self.output_dir or Path("eval")
        return root / ref.branch.replace("/", "_") / f"{ref.commit[:12]}-{what}"
