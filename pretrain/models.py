"""GPT-2 configs for CodeParrot-style models, defined in code (nothing downloaded): tiny, small (124M), large (1.5B)."""
from __future__ import annotations

import json
from pathlib import Path

from common.errors import UserError

# CodeParrot's stability options: scale attention by 1/layer index and upcast/reorder the attention
# product (the latter applies to the eager attention path, which fp16 training of the large model uses).
STABILITY = {"scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True}
# No dropout. CodeParrot kept GPT-2's 0.1; single-pass pretraining on deduplicated code does not need it (nanoGPT
# and most recent pretraining recipes use 0), and on CPU it is costly twice: the random masks themselves, and
# SDPA falling back from its fused kernel to the math path whenever attention dropout is on.
NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
# GELU itself (x * Phi(x), erf form), the function GPT-2's "gelu_new" approximates with tanh; the two differ by less
# than 5e-4 anywhere. Measured on this CPU: PyTorch's erf kernel is about 4x faster than its tanh-GELU kernel (0.6 vs
# 2.6 ms forward for a 2048 x 1024 bf16 tensor, 1.3 vs 2.6 ms backward): the tiny training step 5.6% faster (median
# of 60 alternating steps in one process). Checkpoints say "gelu" in config.json, which every GPT-2 loader honours.
EXACT_GELU = {"activation_function": "gelu"}
PRESETS = {
    # A few million parameters: trains for real on a 2-core CPU in minutes. 256 wide so that its matmuls are
    # large enough for bf16 (AMX) to pay off; head size 64 as in every GPT-2.
    "tiny": {"n_embd": 256, "n_layer": 4, "n_head": 4, "n_positions": 512},
    # GPT-2 124M class, like codeparrot-small.
    "small": {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024},
    # GPT-2 XL 1.5B class, like codeparrot.
    "large": {"n_embd": 1600, "n_layer": 48, "n_head": 25, "n_positions": 1024},
}


def make_config(model: str, tokenizer, objective: str = "clm"):
    """`model` is a preset name, a config.json, or a save_pretrained folder; vocab = len(tokenizer).
    objective "mlm": the masked-LM presets (mlm-tiny, distilbert), a DistilBERT-style config.json or a folder."""
    from transformers import AutoConfig, DistilBertConfig, GPT2Config

    from pretrain.mlm import MLM_PRESETS

    if objective == "mlm":
        ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
        if model in MLM_PRESETS:
            return DistilBertConfig(**MLM_PRESETS[model], dropout=0.0, attention_dropout=0.0, **ids)
        if model in PRESETS:
            raise UserError(f"--model {model} is a GPT-2 (causal) preset: with --objective mlm use one of "
                            f"{', '.join(MLM_PRESETS)}, a config.json or --init DIR")
    else:
        ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.eos_token_id,
               "eos_token_id": tokenizer.eos_token_id}
        if model in PRESETS:
            return GPT2Config(**PRESETS[model], **STABILITY, **NO_DROPOUT, **EXACT_GELU, **ids)
        if model in MLM_PRESETS:
            raise UserError(f"--model {model} is a masked-LM preset: add --objective mlm")
    path = Path(model)
    if path.is_file() and path.suffix == ".json":
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc.msg})")
        if objective == "mlm":
            return AutoConfig.for_model(raw.pop("model_type", "distilbert"), **{**raw, **ids})
        return GPT2Config(**{**raw, **ids})
    if path.is_dir() and (path / "config.json").exists():
        config = AutoConfig.from_pretrained(path)
        for k, v in ids.items():
            setattr(config, k, v)
        return config
    names = ", ".join(MLM_PRESETS if objective == "mlm" else PRESETS)
    raise UserError(f"unknown model {model!r}: use one of {names}, a config.json or a save_pretrained folder")
