"""A local bare git repository as a checkpoint hub: the embedded default."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from checkpoint_hub.base import MAIN, Commit, Hub
from common.errors import UserError
from common.paths import cache_root

MARKER_KEY = "codeparrot-harness.hub"
GIT_ENV = {"GIT_AUTHOR_NAME": "codeparrot-harness", "GIT_AUTHOR_EMAIL": "harness@localhost",
           "GIT_COMMITTER_NAME": "codeparrot-harness", "GIT_COMMITTER_EMAIL": "harness@localhost",
           "GIT_TERMINAL_PROMPT": "0"}


def check_repo(spec: str) -> None:
    """Raises the user error for a local path that exists but is not a hub repository; creates nothing."""
    if spec.startswith("hf://"):
        return
    path = Path(spec)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not LocalHub.is_hub_path(path):
        raise UserError(f"--repo {path.resolve()} exists but is not a hub repository: pass a new path "
                        "(it is created on the first push) or an existing hub repo")


class LocalHub(Hub):
    """A bare git repository. Each push writes objects first and moves the branch ref last, atomically
    (compare-and-swap with `git update-ref`), so a crash mid-push leaves only unreferenced objects."""

    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path).resolve()
        self.url = str(self.path)
        if self._is_hub():
            return
        check_repo(str(self.path))
        if not create:
            raise UserError(f"no hub repository at {self.path}: train a run first (`pretrain train --repo {path}`) "
                            "or pass --repo with an existing hub")
        self._create()

    # ---- git plumbing -------------------------------------------------------------------------
    def _git(self, *args: str, input: bytes | None = None, env: dict | None = None, check: bool = True) -> str:
        r = subprocess.run(["git", "--git-dir", str(self.path), *args], input=input, capture_output=True,
                           env={**os.environ, **GIT_ENV, **(env or {})})
        if check and r.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout.decode(errors="replace").strip()

    @staticmethod
    def is_hub_path(path: Path) -> bool:
        """Ours (the config marker), or any bare git repository with a main branch (a clone of a hub)."""
        if not ((path / "HEAD").exists() and (path / "objects").is_dir()):
            return False
        r = subprocess.run(["git", "--git-dir", str(path), "config", "--get", MARKER_KEY], capture_output=True, text=True)
        if r.stdout.strip() == "true":
            return True
        r = subprocess.run(["git", "--git-dir", str(path), "rev-parse", "--verify", "-q", f"refs/heads/{MAIN}"],
                           capture_output=True)
        return r.returncode == 0

    def _is_hub(self) -> bool:
        return self.is_hub_path(self.path)

    def _create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--bare", "-q", "-b", MAIN, str(self.path)], check=True, capture_output=True)
        self._git("config", MARKER_KEY, "true")
        readme = self._git("hash-object", "-w", "--stdin", input=b"# Checkpoint hub\n\nBranch = training run, "
                           b"commit = checkpoint, main = what passed `harness gate`.\n")
        tree = self._git("mktree", input=f"100644 blob {readme}\tREADME.md\n".encode())
        commit = self._git("commit-tree", tree, "-m", "initial commit")
        self._git("update-ref", f"refs/heads/{MAIN}", commit, "0" * 40)

    def _check_branch_name(self, branch: str) -> None:
        r = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True)
        if r.returncode != 0:
            raise UserError(f"{branch!r} is not a valid branch name: use letters, digits, '-', '_', '/' and '.'")

    # ---- interface ----------------------------------------------------------------------------
    def branches(self) -> list[str]:
        out = self._git("for-each-ref", "--format=%(refname:short)", "refs/heads/")
        return sorted(b for b in out.splitlines() if b)

    def head(self, branch: str) -> str | None:
        sha = self._git("rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}", check=False)
        return sha or None

    def _history(self, branch: str) -> list[Commit]:
        out = self._git("log", "--format=%H%x00%s%x00%cI", f"refs/heads/{branch}")
        return [Commit(*line.split("\0")) for line in out.splitlines() if line]

    def push(self, branch: str, folder: str | Path, message: str) -> str:
        """One new commit on `branch` (created from main) whose tree is exactly `folder`."""
        self._check_branch_name(branch)
        old = self.head(branch)
        parent = old or self.head(MAIN)
        with tempfile.TemporaryDirectory(prefix="hub-index-") as tmp:
            env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            # stored uncompressed: weights barely compress (7% for fp32) and zlib made pushing a 124M-parameter
            # checkpoint take 21.6 s instead of 3.5 s (GPT-2 XL's 6 GB: minutes per checkpoint)
            self._git("-c", "core.looseCompression=0", "--work-tree", str(folder), "add", "-A", "--force", ".",
                      env=env)
            tree = self._git("write-tree", env=env)
        commit = self._git("commit-tree", tree, "-p", parent, "-m", message)
        self._git("update-ref", f"refs/heads/{branch}", commit, old or "0" * 40)  # the only visible step
        return commit

    def merge_into_main(self, branch: str, commit: str, message: str) -> str:
        """Makes main hold `commit`'s checkpoint: a fast-forward when possible, else a merge commit whose tree
        is the checkpoint's (a checkpoint replaces the previous one, it is not combined with it)."""
        old = self.head(MAIN)
        is_ancestor = subprocess.run(["git", "--git-dir", str(self.path), "merge-base", "--is-ancestor", old, commit],
                                     capture_output=True).returncode == 0
        new = commit if is_ancestor else self._git("commit-tree", f"{commit}^{{tree}}", "-p", old, "-p", commit,
                                                   "-m", message)
        self._git("update-ref", f"refs/heads/{MAIN}", new, old)
        return new

    def read_file(self, commit: str, path: str) -> bytes | None:
        r = subprocess.run(["git", "--git-dir", str(self.path), "show", f"{commit}:{path}"], capture_output=True)
        return r.stdout if r.returncode == 0 else None

    def materialize(self, commit: str) -> Path:
        """A read-only local folder with the commit's files (cached by sha), for from_pretrained."""
        dest = cache_root() / "checkouts" / commit
        if dest.exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=dest.parent))
        try:
            # streamed from git into tar: a GPT-2 XL checkpoint is 6 GB, which must not pass through this process
            git = subprocess.Popen(["git", "--git-dir", str(self.path), "archive", "--format=tar", commit],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            untar = subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=git.stdout, capture_output=True)
            git.stdout.close()
            err = git.stderr.read().decode(errors="replace").strip()
            if git.wait() != 0 or untar.returncode != 0:
                raise subprocess.CalledProcessError(git.returncode or untar.returncode, "git archive | tar -x",
                                                    stderr=err or untar.stderr.decode(errors="replace"))
            try:
                os.replace(tmp, dest)
            except OSError:
                if not dest.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process (a sharded eval) got there first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest
