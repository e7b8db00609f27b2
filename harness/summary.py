"""`summary.json`, the record of one evaluation: its declared shape, and the one parser that reads it back.

pass@k is a mapping from k to an estimate with its standard error (`tasks.passk.PassK`); in JSON its keys are the
k as strings: `"pass_at_k": {"1": {"value": 0.31, "stderr": 0.03, "problems": 164}}`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from common import atomic
from common.errors import UserError
from tasks.passk import PassK

SUMMARY = "summary.json"


def parse_pass_at_k(table: dict) -> dict[int, PassK]:
    return {int(k): PassK(float(v["value"]), float(v["stderr"]), int(v["problems"])) for k, v in table.items()}


@dataclass
class Summary:
    suite: str
    suite_hash: str
    samples: int
    timeout_s: float  # the base timeout (--timeout)
    sandbox: str
    harness_version: str
    oracle: str = "inline"  # "isolated": the tests ran in another process than the program
    suite_label: str | None = None  # what the suite is called where people read it, if not `suite` (a rebuilt release)
    pass_at_k: dict[int, PassK] = field(default_factory=dict)
    pass_at_k_by_group: dict[str, dict[int, PassK]] = field(default_factory=dict)  # DS-1000: per library
    environments: dict[str, dict] = field(default_factory=dict)  # suite environment -> its image, pins and tasks
    tasks_scored: list[str] = field(default_factory=list)
    tasks_missing: list[str] = field(default_factory=list)
    samples_per_task: int | dict | None = None
    result_counts: dict[str, int] = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timeout_factor: float = 0.0  # > 0: calibrated timeouts (factor x the reference's time, at least timeout_s)
    raised_timeouts: dict[str, float] = field(default_factory=dict)  # task_id -> timeout, where above timeout_s
    # --samples: where the completions came from
    samples_file: str | None = None
    # --ckpt: which checkpoint, how it was trained, how it was sampled
    repo: str | None = None
    branch: str | None = None
    commit: str | None = None
    step: int | None = None
    tokens_seen: int | None = None
    parameters: int | None = None
    objective: str = "clm"  # "clm" (causal LM: pass@k and perplexity) or "mlm" (masked LM: perplexity only)
    decontaminated: bool | None = None  # was the checkpoint's corpus decontaminated against this suite? None: unknown
    prompting: str = "completion"  # or "chat": an instruction asked as a chat, the program drawn from the answer
    # --endpoint: the server generated, not a loaded checkpoint
    endpoint: str | None = None  # its API base URL
    served_model: str | None = None  # the name it was asked for (--served-model)
    endpoint_model: dict | None = None  # the server's own entry for that model (GET /v1/models: id, owner, root...)
    perplexity: float | None = None
    bits_per_byte: float | None = None
    perplexity_data: dict | None = None
    generation: dict | None = None
    generation_timing: dict | None = None
    output_dir: str | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        out["pass_at_k"] = {str(k): asdict(v) for k, v in sorted(self.pass_at_k.items())}
        out["pass_at_k_by_group"] = {g: {str(k): asdict(v) for k, v in sorted(t.items())}
                                     for g, t in self.pass_at_k_by_group.items()}
        return out

    @classmethod
    def from_json(cls, data: dict, where: str = SUMMARY) -> "Summary":
        try:
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in data.items() if k in known}
            values["pass_at_k"] = parse_pass_at_k(data.get("pass_at_k", {}))
            values["pass_at_k_by_group"] = {g: parse_pass_at_k(t) for g, t in data.get("pass_at_k_by_group", {}).items()}
            return cls(**values)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise UserError(f"{where} is not a harness summary ({type(exc).__name__}: {exc}): remove it and evaluate "
                            "again")

    def write(self, path: str | Path) -> None:
        atomic.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Summary":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path} is unreadable ({exc}): remove it and evaluate again")
        if not isinstance(data, dict):
            raise UserError(f"{path} is not a harness summary: remove it and evaluate again")
        return cls.from_json(data, str(path))
