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


MASKED = "mlm"


def checkpoint_objective(hub: Hub, ref: CheckpointRef, state: TrainingState | None) -> str:
    """'mlm' for a masked-LM checkpoint (its training state says so, or its config names a *ForMaskedLM class),
    else 'clm'."""
    if state is not None and state.objective == MASKED:
        return MASKED
    raw = hub.read_file(ref.commit, "config.json")
    if raw is not None:
        import json

        try:
            arch = json.loads(raw).get("architectures") or []
        except (json.JSONDecodeError, AttributeError):
            arch = []
        if arch and all(a.endswith("ForMaskedLM") for a in arch):
            return MASKED
    return "clm"


def load_masked_lm(hub, ref: CheckpointRef):
    """(model, tokenizer) of a masked-LM checkpoint; one clear line when it cannot be loaded."""
    from transformers import AutoModelForMaskedLM

    folder = Path(hub.materialize(ref.commit))
    try:
        return AutoModelForMaskedLM.from_pretrained(folder), load_tokenizer(folder)
    except Exception as exc:  # a truncated or corrupt file surfaces as any of several library errors
        raise UserError(f"checkpoint {ref.short} is not a loadable masked LM ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]}): re-push it or pick another commit")


def load_checkpoint(hub, ref: CheckpointRef):
    """(model, tokenizer) from the commit's save_pretrained folder, for any architecture AutoModelForCausalLM knows;
    one clear line when it is not loadable or not a causal LM."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig, AutoModelForCausalLM

    folder = Path(hub.materialize(ref.commit))
    where = ref.short
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as exc:  # unknown model_type, malformed config.json
        raise UserError(f"checkpoint {where}: its config.json cannot be read ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160]}): re-push it or pick another commit")
    causal = type(config) in MODEL_FOR_CAUSAL_LM_MAPPING
    saved_as = list(getattr(config, "architectures", None) or [])
    if causal and saved_as:  # e.g. a BertForMaskedLM: bert has a causal head class, but this checkpoint is an encoder
        causal_names = {getattr(c, "__name__", "") for c in MODEL_FOR_CAUSAL_LM_MAPPING.values()}
        causal = any(a in causal_names for a in saved_as)
    if not causal:
        kind = f" ({', '.join(saved_as)})" if saved_as else ""
        raise UserError(f"checkpoint {where} is a {config.model_type!r} model{kind}, not a causal language model: "
                        "generation and pass@k need one that AutoModelForCausalLM loads")
    if not any((folder / f).exists() for f in WEIGHT_FILES):
        raise UserError(f"checkpoint {where} has no weights (no model.safetensors): it cannot be evaluated; "
                        "pick another commit")
    try:
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = load_tokenizer(folder)
    except Exception as exc:  # a truncated or corrupt file surfaces as any of several library errors
        raise UserError(f"checkpoint {where} is corrupt ({type(exc).__name__}: {str(exc)[:120]}): "
                        "re-push it or pick another commit")
    return model, tokenizer


def load_tokenizer(folder: Path):
    """The tokenizer exactly as saved: the class its tokenizer_config.json names when transformers has it.
    AutoTokenizer alone may pick the model type's own tokenizer class instead (a qwen2 checkpoint saved with a
    plain `tokenizers` tokenizer gets Qwen2Tokenizer's pre-tokenizer), and then prompts become other token ids."""
    import json

    import transformers

    cfg = folder / "tokenizer_config.json"
    name = None
    if cfg.is_file():
        try:
            name = json.loads(cfg.read_text(encoding="utf-8")).get("tokenizer_class")
        except (json.JSONDecodeError, AttributeError):
            name = None
    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if cls is not None and hasattr(cls, "from_pretrained"):
        return cls.from_pretrained(folder)
    return transformers.AutoTokenizer.from_pretrained(folder)


def open_repo(arg: str | None):
    return open_hub(repo_spec(arg))
