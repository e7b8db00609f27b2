"""Checkpoint references (`BRANCH`, `BRANCH@COMMIT`, every branch, every commit) and loading a checkpoint's model."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from checkpoint_hub import MAIN, TRAINING_STATE, Hub, TrainingState, open_hub
from common.errors import UserError

DEFAULT_REPO = "hub"  # a local hub repository in the working directory, as `make demo` creates it
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class CheckpointRef:
    repo: str
    branch: str
    commit: str

    @property
    def short(self) -> str:
        return f"{self.branch}@{self.commit[:10]}"


def repo_spec(arg: str | None) -> str:
    return arg or os.environ.get("HARNESS_REPO") or DEFAULT_REPO


def is_checkpoint(hub, commit: str) -> bool:
    return hub.read_file(commit, "config.json") is not None


def resolve_refs(hub, ckpt: str | None, all_branches: bool = False, every_commit: bool = False) -> list[CheckpointRef]:
    """The checkpoints to evaluate, oldest first within a branch (a learning curve reads left to right)."""
    if ckpt is None and not all_branches:
        raise UserError("name a checkpoint: --ckpt BRANCH, --ckpt BRANCH@COMMIT, or --all-branches")
    if ckpt is not None and all_branches:
        raise UserError("--ckpt and --all-branches exclude each other")
    if all_branches:
        branches = hub.branches()
        commit = None
    else:
        branch, _, commit = ckpt.partition("@")
        if branch not in hub.branches():
            raise hub.missing_branch(branch)
        branches = [branch]
        if commit and every_commit:
            raise UserError("--every-commit evaluates a whole branch: drop the @COMMIT")
    refs = []
    for branch in branches:
        if every_commit:
            shas = [c.sha for c in reversed(hub.commits(branch)) if is_checkpoint(hub, c.sha)]
        else:
            shas = [hub.resolve(branch, commit or None)]
            if not is_checkpoint(hub, shas[0]):
                if all_branches:
                    continue  # e.g. a main that holds no checkpoint yet
                raise UserError(f"{branch}@{shas[0][:10]} holds no checkpoint (no config.json): "
                                "pick a commit written by `pretrain train`")
        refs += [CheckpointRef(hub.url, branch, sha) for sha in shas]
    if not refs:
        raise UserError(f"no checkpoint found in {hub.url} for the branches asked for")
    return refs


def main_checkpoint(hub) -> str | None:
    sha = hub.resolve(MAIN)
    return sha if is_checkpoint(hub, sha) else None


def training_state(hub: Hub, ref: CheckpointRef) -> TrainingState | None:
    """The commit's training_state.json, validated; None for a checkpoint that has none (not written by
    `pretrain train`). A corrupt one is a UserError naming the file, never silently "no state"."""
    raw = hub.read_file(ref.commit, TRAINING_STATE)
    if raw is None:
        return None
    return TrainingState.from_json(raw, f"{ref.short}:{TRAINING_STATE}")


def load_checkpoint(hub, ref: CheckpointRef):
    """(model, tokenizer) from the commit's save_pretrained folder; one clear line when it is not loadable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(hub.materialize(ref.commit))
    where = ref.short
    if not any((folder / f).exists() for f in WEIGHT_FILES):
        raise UserError(f"checkpoint {where} has no weights (no model.safetensors): it cannot be evaluated; "
                        "pick another commit")
    try:
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as exc:  # a truncated or corrupt file surfaces as any of several library errors
        raise UserError(f"checkpoint {where} is corrupt ({type(exc).__name__}: {str(exc)[:120]}): "
                        "re-push it or pick another commit")
    return model, tokenizer


def open_repo(arg: str | None):
    return open_hub(repo_spec(arg))
