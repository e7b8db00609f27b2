"""Rank handling, in one place. Under `accelerate launch` every process helps generate (each takes every
world_size-th prompt) and only the main process scores, writes and reports; in a single process this is rank 0 of 1.
Either way the model goes to the accelerator whenever one is present."""
from __future__ import annotations

import os
from functools import cached_property
from typing import Sequence, TypeVar

from common.errors import UserError

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def refuse_multiprocess(command: str, hint: str) -> None:
    """For commands that must run once (they merge, publish): one line instead of N racing copies."""
    if world_size() > 1:
        raise UserError(f"`harness {command}` runs in one process, not under `accelerate launch` "
                        f"(WORLD_SIZE={world_size()}): {hint}")


class Ranks:
    def __init__(self):
        self.count = world_size()

    @cached_property
    def _state(self):
        import torch
        from accelerate import PartialState

        return PartialState(cpu=not torch.cuda.is_available())

    @property
    def index(self) -> int:
        return self._state.process_index if self.count > 1 else 0

    @property
    def is_main(self) -> bool:
        return self.index == 0

    @property
    def device(self):
        """cuda (this rank's GPU) when present, else mps, else cpu."""
        import torch

        if self.count > 1 or torch.cuda.is_available():
            return self._state.device
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    def shard(self, items: Sequence[T]) -> list[T]:
        return list(items[self.index::self.count])

    def wait(self) -> None:
        if self.count > 1:
            self._state.wait_for_everyone()
