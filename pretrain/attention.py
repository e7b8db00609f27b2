"""Short-context causal attention for bf16 training on a CPU: two batched matmuls around an fp32 softmax.

PyTorch's fused CPU attention (SDPA's flash kernel) is built for long sequences; at a context of 256 and head size 64 its
blocked loops reach a fraction of the matmul rate. Here the scores are one batched bf16 matmul (`baddbmm`, with the
causal mask as its addend and the scale as its alpha), the softmax runs in fp32, and the output is a second bf16
matmul: the Megatron-LM recipe (bf16 scores, fp32 softmax), which is also what eager attention under bf16 autocast
computes, except that autocast does the softmax in bf16. Measured on the tiny preset (context 256): 3% off a training
step; at a context of 1024 it is 2.5x slower than SDPA, so longer sequences, masks (padding), dropout, KV caches, fp32
and GPUs all go to SDPA unchanged.

It is registered with transformers' AttentionInterface (and SDPA's mask function, so padding masks are built exactly
as for SDPA) and chosen for a model with `use_short_attention(model)`; the choice is not saved in config.json, so
checkpoints load with the default attention everywhere.
"""
from __future__ import annotations

import torch

NAME = "cpu_short_causal"
MAX_LENGTH = 256  # measured: faster than SDPA at 128 and 256 tokens; at 512 a tie (12 heads); at 1024 2.5x slower

_masks: dict[tuple[int, torch.dtype], torch.Tensor] = {}


def _causal_mask(length: int, dtype: torch.dtype) -> torch.Tensor:
    mask = _masks.get((length, dtype))
    if mask is None:
        mask = _masks[(length, dtype)] = torch.full((length, length), float("-inf"), dtype=dtype).triu(1)
    return mask


def short_causal_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention signature: (B, H, T, D) query/key/value -> ((B, T, H, D) output, None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, heads, length, dim = query.shape
    if (query.device.type != "cpu" or query.dtype != torch.bfloat16 or attention_mask is not None or dropout > 0
            or key.shape != query.shape or not 1 < length <= MAX_LENGTH or not getattr(module, "is_causal", True)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scale = dim ** -0.5 if scaling is None else scaling
    rows = batch * heads
    scores = torch.baddbmm(_causal_mask(length, query.dtype).expand(rows, length, length),
                           query.reshape(rows, length, dim), key.reshape(rows, length, dim).transpose(1, 2), alpha=scale)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.bmm(weights, value.reshape(rows, length, dim)).view(batch, heads, length, dim)
    return out.transpose(1, 2), None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, short_causal_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def use_short_attention(model) -> bool:
    """Switch a model that uses SDPA to the short-context attention (for this process only). False if it does not use
    SDPA (eager, flash-attention...) or cannot switch at run time."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    register()
    model.set_attn_implementation(NAME)
    return model.config._attn_implementation == NAME
