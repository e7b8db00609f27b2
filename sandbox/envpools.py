"""EnvPools: one SandboxPool per suite environment behind one `run`, so a run over several suites (or one suite whose
tasks need different libraries, DS-1000's) sends each job to the containers of its own image.

The base image's pool starts at once (in the background, as before); an environment's pool starts when its first job
comes, building or copying its image where an engine lacks it (one progress line). Verdicts come back as they
finish; the pools run one environment's jobs after another, so they never compete for the same cores.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

from common.envspec import EnvSpec
from sandbox.jobs import Job, Verdict


class EnvPools:
    def __init__(self, make: Callable[[EnvSpec | None], object]):
        self._make = make
        self.pools: dict[str | None, object] = {None: make(None)}

    @property
    def base(self):
        return self.pools[None]

    def pool(self, env: EnvSpec | None):
        key = env.hash if env is not None else None
        if key not in self.pools:
            self.pools[key] = self._make(env)
        return self.pools[key]

    def prepare(self, envs: Iterable[EnvSpec | None]) -> None:
        """Starts (builds where missing) the pools of these environments now: fail before the work, not during it."""
        for env in envs:
            self.pool(env)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Verdict]]:
        groups: dict[str | None, list[Job]] = {}
        envs: dict[str | None, EnvSpec | None] = {}
        for job in jobs:
            key = job.env.hash if job.env is not None else None
            groups.setdefault(key, []).append(job)
            envs[key] = job.env
        for key, group in groups.items():
            yield from self.pool(envs[key]).run(group)

    def judge(self, jobs: Iterable[Job]) -> list[Verdict]:
        from sandbox.pool import judge_in_order

        return judge_in_order(self.run, jobs)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):  # n_workers, limits, replaced, engines...: the base pool's
        if name.startswith("_") or name == "pools":
            raise AttributeError(name)
        return getattr(self.pools[None], name)
