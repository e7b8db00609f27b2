"""Batched sampling for code completion: prompts batched across tasks, left padding, one prefill per prompt shared by
its n samples, KV cache, per-sequence stop sequences, and finished sequences dropped from the batch.

Why not `model.generate()`: it runs every sequence until the longest one in the batch stops, and batches only the
n samples of one prompt (`num_return_sequences`). Here a sequence that hit a stop sequence leaves the batch at once,
and each sample draws from its own seeded generator, so a completion does not depend on what it was batched with.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field

import torch

# HumanEval's stop sequences (Codex paper; bigcode-evaluation-harness uses the same list).
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```")


@dataclass(frozen=True)
class GenParams:
    n: int = 10
    temperature: float = 0.2
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0
    stop: tuple[str, ...] = STOP_SEQUENCES

    def key(self) -> str:
        return hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:12]


@dataclass
class Generation:
    task_id: str
    index: int
    completion: str
    new_tokens: int
    prompt_truncated: bool = False


@dataclass
class GenStats:
    sequences: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    truncated_prompts: list = field(default_factory=list)


def truncate_at_stop(text: str, stops) -> str:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def sample_seed(seed: int, task_id: str, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{task_id}\0{index}".encode()).digest()[:8], "little")


def prepare_prompt(tokenizer, prompt: str, context: int, max_new_tokens: int) -> tuple[list[int], bool]:
    """Token ids of the prompt, cut from the left when prompt + new tokens would not fit the context."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    room = context - max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in a context of {context}")
    if len(ids) > room:
        return ids[-room:], True
    return ids, False


TOP_P_CANDIDATES = 256  # nucleus sampling looks at this many most likely tokens first (all of them when needed)


def choose_next(logits: torch.Tensor, params: GenParams, uniforms: torch.Tensor) -> torch.Tensor:
    """(B, V) logits -> (B,) next tokens: greedy at temperature 0, else nucleus sampling by inverse CDF.

    `uniforms` (B,) come from each sample's own seeded stream, so a sample's tokens do not depend on which other
    samples share its batch, and the whole batch is sampled in a few vectorised ops.
    """
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)  # (B, V)
    k = min(TOP_P_CANDIDATES, probs.size(-1)) if params.top_p < 1.0 else probs.size(-1)
    top_p, top_i = probs.topk(k, dim=-1)  # (B, k), most likely first
    if params.top_p < 1.0:
        if k < probs.size(-1) and bool((top_p.sum(dim=-1) < params.top_p).any()):
            top_p, top_i = probs.sort(dim=-1, descending=True)  # a flat distribution: use the whole vocabulary
        outside = top_p.cumsum(dim=-1) - top_p > params.top_p  # keep the smallest set reaching top_p
        top_p = top_p.masked_fill(outside, 0.0)
    cdf = top_p.cumsum(dim=-1)  # (B, k)
    pos = torch.searchsorted(cdf, (uniforms.to(cdf) * cdf[:, -1]).unsqueeze(-1)).clamp(max=cdf.size(-1) - 1)
    return top_i.gather(-1, pos).squeeze(-1)


def _kv_cache(n_layer: int, capacity: int):
    from transformers.cache_utils import Cache, DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """Writes each step's keys/values into a buffer sized for the whole generation: the default layer
        concatenates, copying the entire cache of every layer at every step."""

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.dtype, self.device = key_states.dtype, key_states.device
                b, h, _, d = key_states.shape
                self.kbuf = key_states.new_empty((b, h, capacity, d))
                self.vbuf = value_states.new_empty((b, h, capacity, d))
                self.length = 0
                self.is_initialized = True
            t = key_states.shape[-2]
            self.kbuf[:, :, self.length:self.length + t] = key_states
            self.vbuf[:, :, self.length:self.length + t] = value_states
            self.length += t
            self._views()
            return self.keys, self.values

        def _views(self):
            self.keys, self.values = self.kbuf[:, :, :self.length], self.vbuf[:, :, :self.length]

        def batch_repeat_interleave(self, repeats):
            self.kbuf = self.kbuf.repeat_interleave(repeats, dim=0)
            self.vbuf = self.vbuf.repeat_interleave(repeats, dim=0)
            self._views()

        def batch_select_indices(self, indices):
            self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
            self._views()

    return Cache(layers=[PreallocatedLayer() for _ in range(n_layer)])


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[tuple[str, str]], params: GenParams, batch_size: int = 64,
             on_batch=None, progress=None, context: int | None = None) -> GenStats:
    """prompts: (task_id, prompt). Calls on_batch(list[Generation]) as each batch of prompts finishes.
    `context`: positions the model was trained on (default its n_positions); prompt + new tokens stay within it."""
    model.eval()
    device = next(model.parameters()).device
    context = min(context or model.config.n_positions, model.config.n_positions)
    eos = tokenizer.eos_token_id
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    byte_decoder = _byte_decoder()
    stats = GenStats()
    longest_stop = max(len(s) for s in params.stop)

    encoded = []
    for task_id, prompt in prompts:
        ids, cut = prepare_prompt(tokenizer, prompt, context, params.max_new_tokens)
        if cut:
            stats.truncated_prompts.append(task_id)
        encoded.append((task_id, ids, cut))
    encoded.sort(key=lambda e: len(e[1]))  # similar lengths together: less padding
    per_batch = max(1, batch_size // params.n)
    start = time.perf_counter()
    for b in range(0, len(encoded), per_batch):
        group = encoded[b:b + per_batch]
        # ---- prefill: each prompt once, left-padded; its cache is then repeated for its n samples ----
        width = max(len(ids) for _, ids, _ in group)
        input_ids = torch.full((len(group), width), eos, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for i, (_, ids, _) in enumerate(group):
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            mask[i, width - len(ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = _kv_cache(model.config.n_layer, width + params.max_new_tokens)
        out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        n = params.n
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].repeat_interleave(n, dim=0)  # (B, V)
        mask = mask.repeat_interleave(n, dim=0).to(device)
        last_pos = positions[:, -1].repeat_interleave(n, dim=0).to(device)
        rows = [(task_id, k, cut) for task_id, _, cut in group for k in range(n)]
        uniforms = torch.stack([torch.rand(params.max_new_tokens, generator=torch.Generator().manual_seed(
            sample_seed(params.seed, t, k)), dtype=torch.float64) for t, k, _ in rows])  # (B, max_new_tokens)
        new_ids: list[list[int]] = [[] for _ in rows]
        tails = [""] * len(rows)
        active = list(range(len(rows)))  # row numbers still generating, in batch order
        done = []
        # ---- decode: one token per step for the sequences still running ----
        for step in range(params.max_new_tokens):
            next_tok = choose_next(logits, params, uniforms[active, step]).cpu()
            keep = []
            for j, r in enumerate(active):
                tok = int(next_tok[j])
                if tok == eos:
                    done.append(r)
                    continue
                new_ids[r].append(tok)
                tails[r] = (tails[r] + _piece_text(pieces[tok], byte_decoder))[-(longest_stop + 64):]
                if any(s in tails[r] for s in params.stop):
                    done.append(r)
                else:
                    keep.append(j)
            if not keep:
                active = []
                break
            if len(keep) < len(active):  # finished sequences stop costing compute
                idx = torch.tensor(keep, device=device)
                cache.batch_select_indices(idx)
                mask, last_pos, next_tok = mask[idx], last_pos[idx], next_tok[idx.cpu()]
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            last_pos = last_pos + 1
            out = model(input_ids=next_tok[:, None].to(device), attention_mask=mask, position_ids=last_pos[:, None],
                        past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1]
        results = []
        for r, (task_id, k, cut) in enumerate(rows):
            text = tokenizer.decode(new_ids[r], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            results.append(Generation(task_id, k, truncate_at_stop(text, params.stop), len(new_ids[r]), cut))
            stats.new_tokens += len(new_ids[r])
        stats.sequences += len(rows)
        if on_batch:
            on_batch(results)
        if progress is not None:
            progress.update(len(rows))
            progress.set_postfix(tok_s=f"{stats.new_tokens / max(time.perf_counter() - start, 1e-9):,.0f}",
                                 refresh=False)
    stats.seconds = time.perf_counter() - start
    return stats


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: token characters -> bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _piece_text(piece: str, byte_decoder: dict[str, int]) -> str:
    """Text of one byte-level token (partial UTF-8 shows as U+FFFD; only used to spot ASCII stop sequences)."""
    if piece is None:
        return ""
    if all(ch in byte_decoder for ch in piece):
        return bytes(byte_decoder[ch] for ch in piece).decode("utf-8", errors="replace")
    return piece  # special tokens


def token_byte_lengths(tokenizer) -> list[int]:
    """Bytes each token stands for (0 for special tokens): the denominator of bits per byte."""
    byte_decoder = _byte_decoder()
    special = set(tokenizer.all_special_ids)
    out = []
    for i, piece in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if i in special or piece is None:
            out.append(0)
        else:
            out.append(sum(1 for ch in piece if ch in byte_decoder) or len(piece.encode()))
    return out
