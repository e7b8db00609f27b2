"""A plain model folder (a `save_pretrained` output) seen as a read-only hub with one checkpoint.

Its branch is the folder's name and its commit is a content hash of every file in it, so two different folders of
one name never share cached results or a leaderboard row, and a folder changed in place is a new checkpoint."""
from __future__ import annotations

import hashlib
from pathlib import Path

from checkpoint_hub.base import Commit, Hub
from common.errors import UserError


def content_hash(folder: Path) -> str:
    """sha256 over (relative path, size, bytes) of every file, in path order; 40 hex digits like a git sha."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:40]


class FolderHub(Hub):
    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise UserError(f"--model {folder}: no such folder (pass a save_pretrained folder)")
        if not (self.folder / "config.json").is_file():
            raise UserError(f"--model {folder} has no config.json: pass a folder written by save_pretrained")
        self.name = self.folder.name
        self.url = f"folder:{self.name}"
        self.sha = content_hash(self.folder)

    def branches(self) -> list[str]:
        return [self.name]

    def head(self, branch: str) -> str | None:
        return self.sha if branch == self.name else None

    def _history(self, branch: str) -> list[Commit]:
        return [Commit(self.sha, f"model folder {self.folder}", "")]

    def push(self, branch, folder, message):
        raise UserError("a model folder is read-only: push checkpoints to a hub (--repo) instead")

    def merge_into_main(self, branch, commit, message):
        raise UserError("a model folder has no main to gate into: commit it on a hub branch and run `harness gate`")

    def read_file(self, commit: str, path: str) -> bytes | None:
        target = self.folder / path
        return target.read_bytes() if commit == self.sha and target.is_file() else None

    def materialize(self, commit: str) -> Path:
        return self.folder
