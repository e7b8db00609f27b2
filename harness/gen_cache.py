"""The generation cache: an append-only JSONL per (commit, generation parameters including the stop sequences),
rows keyed by (prompt id, sample index), written batch by batch, so a killed generation resumes where it stopped,
a finished one is never generated again, and suites that share prompts share generations.

Under `accelerate launch` each rank appends to a shard file of its own; the main rank gathers the shards into the
cache once every rank is done."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from common.jsonl import read_log

REQUIRED = ("key", "index", "completion")


class GenerationCache:
    def __init__(self, root: Path, commit: str, params_key: str):
        self.path = Path(root) / "generations" / commit / f"{params_key}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def shard_path(self, rank: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.rank{rank}.jsonl")

    def load(self) -> dict[tuple[str, int], dict]:
        """(prompt id, index) -> row; a torn last line of a killed run is skipped and generated again."""
        return {(r["key"], r["index"]): r for r in read_log(self.path, REQUIRED)}

    @contextmanager
    def appender(self, rank: int | None = None):
        """A function that appends a batch of generations (dataclasses) and flushes: a kill loses at most the batch
        being written. `rank`: write to that rank's shard instead of the cache."""
        path = self.path if rank is None else self.shard_path(rank)
        with open(path, "a", encoding="utf-8") as log:
            def append(batch) -> None:
                for g in batch:
                    log.write(json.dumps(asdict(g)) + "\n")
                log.flush()

            yield append

    def gather(self, ranks: int) -> None:
        """Moves every rank's shard into the cache (main rank only, after all ranks finished)."""
        with open(self.path, "a", encoding="utf-8") as log:
            for rank in range(ranks):
                shard = self.shard_path(rank)
                for row in read_log(shard, REQUIRED):
                    log.write(json.dumps(row) + "\n")
                shard.unlink(missing_ok=True)
