"""Masked-LM domain adaptation, the course's recipe (seed 003): masking, whole-word masking, the fixed-mask validation
set, and masked-LM perplexity. Training (`pretrain train --objective mlm`) and the harness (`harness eval --ckpt` on
an MLM checkpoint) both score with `fixed_mask_batches` + `masked_lm_nll`, so a number from one is the number from
the other.

Masking is transformers' `DataCollatorForLanguageModeling` (15%, of which 80% [MASK], 10% a random token, 10% kept).
Whole-word masking uses its offset-based word grouping and puts [MASK] at every selected token (the library supports
no random replacement there, and the course's whole-word collator does the same); a word here is the run of tokens
of one pre-tokenizer word, joined with its neighbours while they touch on identifier characters, so `max_len`,
`foo_bar` and `x2` are each masked whole.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

MLM_PROBABILITY = 0.15
EVAL_MASK_SEED = 20211  # fixed, whatever the run's seed: every checkpoint is scored on the same masked tokens
MASK_TOKEN, PAD_TOKEN = "[MASK]", "[PAD]"
MLM_PRESETS = {
    # A few million parameters for this CPU; head size 64, as in DistilBERT.
    "mlm-tiny": {"dim": 256, "n_layers": 4, "n_heads": 4, "hidden_dim": 1024, "max_position_embeddings": 512},
    # DistilBERT's shape (66M with its 30k vocabulary).
    "distilbert": {"dim": 768, "n_layers": 6, "n_heads": 12, "hidden_dim": 3072, "max_position_embeddings": 512},
}


def ensure_mlm_tokens(tokenizer) -> list[str]:
    """Adds [MASK] and a pad token where the tokenizer has none (ours has only <|endoftext|>); returns what it added.
    The caller resizes the embeddings and saves the tokenizer with the checkpoint."""
    added = []
    if tokenizer.mask_token is None:
        tokenizer.add_special_tokens({"mask_token": MASK_TOKEN})
        added.append(MASK_TOKEN)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        added.append(PAD_TOKEN)
    return added


def separator_id(tokenizer) -> int:
    """What joins documents in a chunk: EOS for our tokenizers, [SEP] for BERT-style ones."""
    for tid in (tokenizer.eos_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id):
        if tid is not None:
            return tid
    raise ValueError("the tokenizer has no EOS, SEP or pad token to separate documents")


def _ident(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def word_starts(enc, text: str) -> list[bool]:
    """For each token of one encoded document: does it begin a new word? (see the module docstring)"""
    out = []
    prev_word, prev_end = None, None
    for wid, (start, end) in zip(enc.word_ids, enc.offsets):
        joined = (prev_end is not None and start == prev_end and 0 < start < len(text)
                  and _ident(text[start - 1]) and _ident(text[start]))
        out.append(not (wid == prev_word or joined))
        prev_word, prev_end = wid, end
    return out


def word_offsets(starts: torch.Tensor) -> torch.Tensor:
    """(B, T) word-start flags -> (B, T, 2) offsets in which the tokens of a word touch and words do not, which is
    how DataCollatorForLanguageModeling(whole_word_mask=True) groups tokens into words."""
    t = starts.size(1)
    word_index = starts.long().cumsum(dim=1)
    begin = torch.arange(t).unsqueeze(0) + word_index
    return torch.stack([begin, begin + 1], dim=-1)


class Masker:
    """The collate function of MLM training: stacks chunks and masks them with the library collator, seeded so that
    the masks follow the data position (an exact resume sees the same masks)."""

    def __init__(self, tokenizer, whole_word: bool, seed: int, probability: float = MLM_PROBABILITY):
        from transformers import DataCollatorForLanguageModeling

        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=probability,
                                                        whole_word_mask=whole_word, seed=seed,
                                                        mask_replace_prob=1.0 if whole_word else 0.8,
                                                        random_replace_prob=0.0 if whole_word else 0.1)
        self.collator.create_rng()
        self.whole_word = whole_word
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def __call__(self, examples) -> dict:
        if isinstance(examples[0], tuple):
            ids = torch.stack([e[0] for e in examples])
            starts = torch.stack([e[1] for e in examples])
        else:
            ids, starts = torch.stack(examples), None
        special = torch.isin(ids, self.special).long()
        offsets = word_offsets(starts) if self.whole_word else None
        inputs, labels = self.collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special,
                                                         offset_mapping=offsets)
        return {"input_ids": inputs, "labels": labels}


def fixed_mask_batches(tokenizer, texts: Iterable[str], seq_length: int, batch_size: int, max_batches: int) -> list:
    """The validation set, masked once (the course's `insert_random_mask`): documents joined with the separator and
    cut into `seq_length` chunks in order, random 15% masking from a fixed seed. Same data + tokenizer -> same masks."""
    sep = separator_id(tokenizer)
    chunks, buffer = [], []
    want = batch_size * max_batches
    for text in texts:
        buffer.extend(tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids)
        buffer.append(sep)
        while len(buffer) >= seq_length and len(chunks) < want:
            chunks.append(torch.tensor(buffer[:seq_length], dtype=torch.long))
            del buffer[:seq_length]
        if len(chunks) >= want:
            break
    masker = Masker(tokenizer, whole_word=False, seed=EVAL_MASK_SEED)
    return [masker(chunks[i:i + batch_size]) for i in range(0, len(chunks), batch_size)]


@torch.no_grad()
def masked_lm_nll(model, batches: list, device=None) -> tuple[list[float], list[int]]:
    """Summed negative log-likelihood (nats) of the masked tokens, and their count, per batch."""
    was_training = model.training
    model.eval()
    nll, counts = [], []
    for b in batches:
        ids, labels = b["input_ids"].to(device), b["labels"].to(device)
        logits = model(input_ids=ids).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1),
                                                 ignore_index=-100, reduction="sum")
        nll.append(float(loss))
        counts.append(int((labels != -100).sum()))
    if was_training:
        model.train()
    return nll, counts


def perplexity_of(nll: list[float], counts: list[int]) -> tuple[float, float]:
    loss = sum(nll) / max(1, sum(counts))
    return loss, math.exp(min(loss, 700.0))
