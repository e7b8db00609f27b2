"""The hub interface: what training (push) and evaluation (resolve, read, materialize, merge) need of a store."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

MAIN = "main"


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str
    date: str


class Hub(ABC):
    """Branch = training run, commit = checkpoint, `main` = what passed the gate. Subclasses talk to one store;
    the rules shared by every store (branch listing in errors, short-sha resolution) live here."""

    url: str

    @abstractmethod
    def branches(self) -> list[str]: ...

    @abstractmethod
    def head(self, branch: str) -> str | None: ...

    @abstractmethod
    def _history(self, branch: str) -> list[Commit]:
        """Commits of an existing branch, newest first."""

    @abstractmethod
    def push(self, branch: str, folder: str | Path, message: str) -> str: ...

    @abstractmethod
    def merge_into_main(self, branch: str, commit: str, message: str) -> str: ...

    @abstractmethod
    def read_file(self, commit: str, path: str) -> bytes | None: ...

    @abstractmethod
    def materialize(self, commit: str) -> Path: ...

    def missing_branch(self, branch: str) -> UserError:
        return UserError(f"no branch {branch!r} in {self.url}; branches: {', '.join(self.branches()) or 'none'}")

    def commits(self, branch: str) -> list[Commit]:
        """Newest first; a UserError listing the branches when `branch` does not exist."""
        if self.head(branch) is None:
            raise self.missing_branch(branch)
        return self._history(branch)

    def resolve(self, branch: str, commit: str | None = None) -> str:
        """Full sha of the branch head, or of `commit` (a short sha allowed) on that branch."""
        history = self.commits(branch)
        if commit is None:
            return history[0].sha
        matches = [c.sha for c in history if c.sha.startswith(commit.lower())]
        if len(matches) != 1:
            listing = ", ".join(f"{c.sha[:8]} ({c.message})" for c in history[:10])
            what = "is ambiguous" if matches else "is not"
            raise UserError(f"commit {commit!r} {what} on branch {branch!r}; its commits: {listing}")
        return matches[0]
