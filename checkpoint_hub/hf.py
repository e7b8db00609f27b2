"""`hf://org/name`: a model repository on the Hugging Face Hub as a checkpoint hub (needs network)."""
from __future__ import annotations

from pathlib import Path

from checkpoint_hub.base import MAIN, Commit, Hub


class HFHub(Hub):
    """`hf://org/name` on the Hugging Face Hub (needs network and a token with write access to push)."""

    def __init__(self, repo_id: str, create: bool = False):
        from huggingface_hub import HfApi

        self.repo_id = repo_id
        self.url = f"hf://{repo_id}"
        self.api = HfApi()
        if create:
            self.api.create_repo(repo_id, exist_ok=True)

    def branches(self) -> list[str]:
        return sorted(b.name for b in self.api.list_repo_refs(self.repo_id).branches)

    def head(self, branch: str) -> str | None:
        for b in self.api.list_repo_refs(self.repo_id).branches:
            if b.name == branch:
                return b.target_commit
        return None

    def _history(self, branch: str) -> list[Commit]:
        return [Commit(c.commit_id, c.title, c.created_at.isoformat())
                for c in self.api.list_repo_commits(self.repo_id, revision=branch)]

    def push(self, branch: str, folder: str | Path, message: str) -> str:
        self.api.create_branch(self.repo_id, branch=branch, revision=MAIN, exist_ok=True)
        info = self.api.upload_folder(repo_id=self.repo_id, folder_path=str(folder), revision=branch,
                                      commit_message=message, delete_patterns="*")
        return info.oid

    def merge_into_main(self, branch: str, commit: str, message: str) -> str:
        folder = self.materialize(commit)
        info = self.api.upload_folder(repo_id=self.repo_id, folder_path=str(folder), revision=MAIN,
                                      commit_message=message, delete_patterns="*")
        return info.oid

    def read_file(self, commit: str, path: str) -> bytes | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError

        try:
            return Path(hf_hub_download(self.repo_id, path, revision=commit)).read_bytes()
        except EntryNotFoundError:
            return None

    def materialize(self, commit: str) -> Path:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(self.repo_id, revision=commit))
