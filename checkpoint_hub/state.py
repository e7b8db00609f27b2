"""`training_state.json`: what a checkpoint commit says about how it was trained. Written by `pretrain train`,
read by `harness eval`; one declared shape, validated on read with errors that name the file."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from common.errors import UserError

TRAINING_STATE = "training_state.json"


@dataclass(frozen=True)
class TrainingState:
    step: int
    run: str | None = None
    tokens: int | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    valid_perplexity: float | None = None
    n_params: int | None = None
    seq_length: int | None = None  # the trained context: evaluation windows and prompts stay within it
    mixed_precision: str | None = None
    corpus: str | None = None  # the corpus directory: the default perplexity data (its valid split)
    world_size: int | None = None
    objective: str = "clm"  # clm (causal, GPT-2) or mlm (masked, DistilBERT-style)
    whole_word_masking: bool | None = None  # mlm only
    init: str | None = None  # the folder training started from (domain adaptation), if any
    decontaminated: list | None = None  # suites the corpus was decontaminated against; None: not recorded

    _TYPES = {"step": int, "run": str, "tokens": int, "train_loss": float, "valid_loss": float,
              "valid_perplexity": float, "n_params": int, "seq_length": int, "mixed_precision": str, "corpus": str,
              "world_size": int, "objective": str, "whole_word_masking": bool, "init": str, "decontaminated": list}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: bytes | str, where: str) -> "TrainingState":
        """Parses and validates; `where` names the file in every error (e.g. `run@abc1234:training_state.json`)."""
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{where} is corrupt (not valid JSON: {exc}): re-push the checkpoint or pick another commit")
        if not isinstance(data, dict):
            raise UserError(f"{where} is corrupt (not a JSON object): re-push the checkpoint or pick another commit")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}  # fields a newer trainer added are ignored
        if "step" not in values:
            raise UserError(f"{where} has no 'step': it was not written by `pretrain train`: re-push the checkpoint "
                            "or remove the file from the commit")
        for name, value in values.items():
            want = cls._TYPES[name]
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) if want is float
                                   else isinstance(value, want) and (want is bool or not isinstance(value, bool)))
            if name == "objective" and value not in ("clm", "mlm"):
                ok = False
            if not ok or (name == "step" and value is None):
                raise UserError(f"{where}: field {name!r} should be {want.__name__}, got {value!r}: the file is corrupt; "
                                "re-push the checkpoint or pick another commit")
        if values.get("seq_length") is not None and values["seq_length"] < 2:
            raise UserError(f"{where}: seq_length {values['seq_length']} is not a usable context length")
        return cls(**values)
