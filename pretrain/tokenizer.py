"""Trains a byte-level BPE tokenizer on a corpus (all 256 bytes in the alphabet, <|endoftext|> special)."""
from __future__ import annotations

import keyword
from itertools import islice
from pathlib import Path

from common import atomic
from common.errors import UserError
from pretrain.corpus import data_files, iter_contents

EOS = "<|endoftext|>"
SPECIALS = [EOS]


def train_tokenizer(corpus: str | Path, vocab_size: int, out: str | Path, max_docs: int | None = None) -> dict:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    minimum = 256 + len(SPECIALS)
    if vocab_size < minimum:
        raise UserError(f"--vocab-size {vocab_size} is below {minimum} (256 bytes + {len(SPECIALS)} special token): "
                        "pick a larger vocabulary (CodeParrot uses 32768)")
    files = data_files(corpus)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=True,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    docs = iter_contents(files["train"])
    tok.train_from_iterator(islice(docs, max_docs) if max_docs else docs, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   model_max_length=1024)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    fast.save_pretrained(tmp)
    report = tokenizer_report(fast, files["valid"])
    atomic.write_json(tmp / "tokenizer_report.json", report)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return report


def tokenizer_report(tok, valid_files: list[str], max_docs: int = 500) -> dict:
    chars = tokens = 0
    for text in islice(iter_contents(valid_files), max_docs):
        chars += len(text)
        tokens += len(tok.backend_tokenizer.encode(text, add_special_tokens=False).ids)
    split_keywords = [kw for kw in keyword.kwlist if len(tok(kw)["input_ids"]) > 1]
    return {"vocab_size": len(tok), "valid_chars_per_token": chars / max(1, tokens),
            "python_keywords_not_single_tokens": split_keywords}
