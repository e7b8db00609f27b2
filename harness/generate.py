"""Batched sampling for code completion: prompts batched across tasks, left padding, one prefill per prompt shared by
its n samples, KV cache, per-sequence stop sequences, and finished sequences dropped from the batch.

Why not `model.generate()`: it runs every sequence until the longest one in the batch stops, and batches only the
n samples of one prompt (`num_return_sequences`). Here a sequence that hit a stop sequence leaves the batch at once,
and each sample draws from its own seeded generator, so a completion does not depend on what it was batched with.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import torch

from harness.bytelevel import byte_decoder, piece_text
from harness.config import GenParams  # noqa: F401  (re-exported: callers build GenParams here)


@dataclass
class Generation:
    key: str  # the prompt's key (the harness uses a hash of the prompt: equal prompts share their samples)
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

        kbuf = None  # our own state: the parent's initialisation flags differ across transformers releases

        def update(self, key_states, value_states, *args, **kwargs):
            if self.kbuf is None:
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


def context_length(config, trained: int | None = None) -> int:
    """Positions the model can attend over: the config's limit (GPT-2's n_positions, most others'
    max_position_embeddings, older n_ctx), capped by the run's trained context when it is known."""
    limit = next((getattr(config, a) for a in ("n_positions", "max_position_embeddings", "n_ctx")
                  if isinstance(getattr(config, a, None), int)), None)
    if limit is None and trained is None:
        raise ValueError(f"{type(config).__name__} declares no context length")
    return min(x for x in (limit, trained) if x is not None)


class StopScanner:
    """Spots a stop sequence in each row's newest text as tokens arrive.

    Byte-level BPE vocabularies (GPT-2, GPTBigCode, GPT-NeoX, Qwen2...) map each token to its text directly; any
    other tokenizer (SentencePiece, say) decodes a short window of the row's newest tokens instead."""

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.tokenizer, self.stops = tokenizer, stops
        self.longest = max((len(s) for s in stops), default=0)  # none: a chat answer runs to the end of its turn
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        decoder = byte_decoder()
        special = set(tokenizer.all_special_ids)
        self.byte_level = all(p is None or i in special or all(ch in decoder for ch in p)
                              for i, p in enumerate(pieces))
        self.texts = [piece_text(p, decoder) for p in pieces] if self.byte_level else None

    def hit(self, tail: str, ids: list[int]) -> tuple[str, bool]:
        """`ids`: the row's new tokens so far (the newest last); `tail`: what this returned last time for the row."""
        if not self.stops:
            return tail, False
        if self.byte_level:
            tail = (tail + self.texts[ids[-1]])[-(self.longest + 64):]
        else:
            tail = self.tokenizer.decode(ids[-(self.longest + 8):], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)
        return tail, any(s in tail for s in self.stops)


@dataclass
class Prefill:
    """The prompts of one batch run once, left-padded, their cache repeated for their n samples."""
    cache: object
    logits: torch.Tensor  # (B*n, V) next-token logits
    mask: torch.Tensor  # (B*n, T) attention mask so far
    last_pos: torch.Tensor  # (B*n,) position of the last token


def prefill(model, group: list[tuple[str, list[int], bool]], n: int, max_new_tokens: int, pad: int, device) -> Prefill:
    width = max(len(ids) for _, ids, _ in group)
    input_ids = torch.full((len(group), width), pad, dtype=torch.long)
    mask = torch.zeros((len(group), width), dtype=torch.long)
    for i, (_, ids, _) in enumerate(group):
        input_ids[i, width - len(ids):] = torch.tensor(ids)
        mask[i, width - len(ids):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = _kv_cache(model.config.num_hidden_layers, width + max_new_tokens)
    out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                position_ids=positions.to(device), past_key_values=cache, use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n)
    return Prefill(cache, out.logits[:, -1].repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0).to(device),
                   positions[:, -1].repeat_interleave(n, dim=0).to(device))


class DecodeState:
    """The sequences of one batch while they decode. `rows[r]` is (task_id, sample index, prompt cut); `active` are
    the rows still running, in batch order; `finish` is the one way a row leaves the batch (and stops costing
    compute: its cache rows, mask and positions are dropped)."""

    def __init__(self, rows: list[tuple[str, int, bool]], start: Prefill, params: GenParams):
        self.rows = rows
        self.cache, self.logits, self.mask, self.last_pos = start.cache, start.logits, start.mask, start.last_pos
        self.active = list(range(len(rows)))
        self.new_ids: list[list[int]] = [[] for _ in rows]
        self.tails = [""] * len(rows)
        self.uniforms = torch.stack([torch.rand(params.max_new_tokens, generator=torch.Generator().manual_seed(
            sample_seed(params.seed, t, k)), dtype=torch.float64) for t, k, _ in rows])  # (B, max_new_tokens)

    def finish(self, finished: set[int], next_tok: torch.Tensor) -> torch.Tensor:
        """Drops the batch positions in `finished`; returns `next_tok` for the rows that remain."""
        keep = [j for j in range(len(self.active)) if j not in finished]
        if len(keep) < len(self.active):
            idx = torch.tensor(keep, device=self.mask.device)
            self.cache.batch_select_indices(idx)
            self.mask, self.last_pos, next_tok = self.mask[idx], self.last_pos[idx], next_tok[idx.cpu()]
            self.active = [self.active[j] for j in keep]
        return next_tok

    def step(self, model, next_tok: torch.Tensor) -> None:
        """Feeds one token per active row; the next logits are ready in `self.logits`."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.active), 1))], dim=1)
        self.last_pos = self.last_pos + 1
        out = model(input_ids=next_tok[:, None].to(self.mask.device), attention_mask=self.mask,
                    position_ids=self.last_pos[:, None], past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.logits = out.logits[:, -1]


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[tuple[str, str]], params: GenParams, batch_size: int = 64,
             on_batch=None, progress=None, context: int | None = None) -> GenStats:
    """prompts: (key, prompt). Calls on_batch(list[Generation]) as each batch of prompts finishes.
    `context`: positions the model was trained on (default its configured limit); prompt + new tokens stay within it."""
    model.eval()
    device = next(model.parameters()).device
    context = context_length(model.config, context)
    eos = tokenizer.eos_token_id
    pad = next((t for t in (tokenizer.pad_token_id, eos, 0) if t is not None))  # masked out: any id will do
    scanner = StopScanner(tokenizer, params.stop)
    stats = GenStats()

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
        rows = [(task_id, k, cut) for task_id, _, cut in group for k in range(params.n)]
        state = DecodeState(rows, prefill(model, group, params.n, params.max_new_tokens, pad, device), params)
        for step in range(params.max_new_tokens):
            next_tok = choose_next(state.logits, params, state.uniforms[state.active, step]).cpu()
            finished = set()
            for j, r in enumerate(state.active):
                tok = int(next_tok[j])
                if tok == eos:
                    finished.add(j)
                    continue
                state.new_ids[r].append(tok)
                state.tails[r], stop = scanner.hit(state.tails[r], state.new_ids[r])
                if stop:
                    finished.add(j)
            if len(finished) == len(state.active):
                break
            state.step(model, state.finish(finished, next_tok))
        results = []
        for r, (task_id, k, cut) in enumerate(rows):
            text = tokenizer.decode(state.new_ids[r], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            results.append(Generation(task_id, k, truncate_at_stop(text, params.stop), len(state.new_ids[r]), cut))
            stats.new_tokens += len(state.new_ids[r])
        stats.sequences += len(rows)
        if on_batch:
            on_batch(results)
        if progress is not None:
            progress.update(len(rows))
            progress.set_postfix(tok_s=f"{stats.new_tokens / max(time.perf_counter() - start, 1e-9):,.0f}",
                                 refresh=False)
    stats.seconds = time.perf_counter() - start
    return stats
