"""Perplexity and bits per byte: token-weighted mean NLL over non-overlapping context windows of EOS-joined documents."""
from __future__ import annotations

import gzip
import hashlib
import json
import math
from pathlib import Path

import torch

from common.errors import UserError
from harness.bytelevel import byte_decoder
from harness.generate import context_length


def load_texts(path: str | Path) -> tuple[list[str], str]:
    """A corpus directory (its valid split), a JSONL(.gz) file with `content`, or a plain text file."""
    path = Path(path)
    if path.is_dir():
        from pretrain.corpus import data_files, iter_contents

        files = data_files(path)["valid"]
        if not files:
            raise UserError(f"{path} has no valid split: rebuild it with `pretrain corpus`")
        return list(iter_contents(files)), str(path)
    if not path.is_file():
        raise UserError(f"perplexity data {path} does not exist: pass --ppl-data with a corpus directory or a file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        if ".jsonl" in path.name:
            texts = []
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        texts.append(json.loads(line)["content"])
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise UserError(f"{path}:{lineno}: expected a JSON object with a 'content' field")
            return texts, str(path)
        return [f.read()], str(path)


def data_key(texts: list[str], max_tokens: int) -> str:
    h = hashlib.sha256(str(max_tokens).encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode()).digest())
    return h.hexdigest()[:16]


@torch.inference_mode()
def perplexity(model, tokenizer, texts: list[str], max_tokens: int = 131072, batch_size: int = 8,
               progress=None, context: int | None = None) -> dict:
    """`context`: the window length, the model's trained context (default its configured limit). Per-window NLL sums are
    returned too, so a gate can bootstrap over windows."""
    model.eval()
    device = next(model.parameters()).device
    context = context_length(model.config, context)
    ids: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(tokenizer.eos_token_id)
        if len(ids) >= max_tokens:
            break
    ids = ids[:max_tokens]
    n_windows = len(ids) // context
    if n_windows == 0:
        raise UserError(f"perplexity data has {len(ids)} tokens, fewer than one context window ({context})")
    windows = torch.tensor(ids[: n_windows * context]).view(n_windows, context)  # (W, T)
    nbytes = torch.tensor(token_byte_lengths(tokenizer), dtype=torch.float64)
    window_nll, window_tokens, window_bytes = [], [], []
    for start in range(0, n_windows, batch_size):
        batch = windows[start:start + batch_size].to(device)  # (B, T)
        logits = model(input_ids=batch).logits.float()  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1),
                                                reduction="none").view(batch.size(0), -1)  # (B, T-1)
        window_nll += nll.double().sum(dim=1).tolist()
        window_tokens += [batch.size(1) - 1] * batch.size(0)
        window_bytes += nbytes[batch[:, 1:].cpu()].sum(dim=1).tolist()
        if progress is not None:
            progress.update(batch.size(0))
    total_nll, total_tokens, total_bytes = sum(window_nll), sum(window_tokens), sum(window_bytes)
    mean = total_nll / total_tokens
    try:
        ppl = math.exp(mean)
    except OverflowError:
        ppl = float("inf")
    return {"perplexity": ppl, "nll": mean, "bits_per_byte": total_nll / math.log(2) / max(total_bytes, 1),
            "tokens": total_tokens, "windows": n_windows, "context": context,
            "window_nll": window_nll, "window_tokens": window_tokens}


def token_byte_lengths(tokenizer) -> list[int]:
    """Bytes each token stands for (0 for special tokens): the denominator of bits per byte."""
    decoder = byte_decoder()
    special = set(tokenizer.all_special_ids)
    out = []
    for i, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if i in special or piece is None:
            out.append(0)
        else:
            out.append(sum(1 for ch in piece if ch in decoder) or len(piece.encode()))
    return out
