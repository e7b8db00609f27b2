"""The `pretrain` command line: corpus, tokenizer, train (run it under `accelerate launch` to scale out)."""
from __future__ import annotations

import argparse
import json
import sys

from common.errors import run_cli


def cmd_corpus(args) -> int:
    from pretrain.corpus import DATA_SCIENCE_KEYWORDS, FilterConfig, build_corpus, default_sources, format_stats

    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    keywords = tuple(k for k in (args.keywords or "").split(",") if k)
    if args.data_science:
        keywords = DATA_SCIENCE_KEYWORDS
    from pretrain.decontaminate import resolve_suites

    cfg = FilterConfig(near_dedup=args.near_dedup, jaccard_threshold=args.jaccard, keywords=keywords,
                       tokenizer=tokenizer, min_chars_per_token=args.min_chars_per_token,
                       decontaminate=tuple(resolve_suites(args.decontaminate)))
    sources = args.source or default_sources()
    report = build_corpus(sources, args.out, cfg, valid_fraction=args.valid_fraction, max_files=args.max_files,
                          seed=args.seed)
    print(format_stats(report))
    print(f"wrote {args.out}/train, {args.out}/valid (JSONL.gz shards) and {args.out}/stats.json")
    return 0


def cmd_tokenizer(args) -> int:
    from pretrain.tokenizer import train_tokenizer

    report = train_tokenizer(args.corpus, args.vocab_size, args.out, max_docs=args.max_docs)
    print(f"tokenizer: vocab {report['vocab_size']}, {report['valid_chars_per_token']:.2f} characters per token on "
          f"the valid split")
    split = report["python_keywords_not_single_tokens"]
    print(f"Python keywords that are not single tokens ({len(split)}): {', '.join(split) or 'none'}")
    print(f"wrote {args.out}")
    return 0


def cmd_train(args) -> int:
    from pretrain.train import TrainConfig, train

    fields = TrainConfig.__dataclass_fields__
    if args.model is None:
        args.model = "mlm-tiny" if args.objective == "mlm" else "tiny"
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    result = train(cfg)
    if result["history"] and result["is_main"]:
        last = result["history"][-1]
        print(json.dumps({"steps": result["steps"], "tokens": result["tokens"], "n_params": result["n_params"],
                          "train_loss": last["train_loss"], "valid_loss": last.get("valid_loss")}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pretrain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="gather, clean and deduplicate Python files into train/valid shards")
    p.add_argument("--source", nargs="+", help="directories of .py files, JSON/JSONL(.gz)/parquet files in the "
                   "codeparrot layout, or a Hub dataset id (needs network); default: this Python's stdlib and "
                   "site-packages")
    p.add_argument("--out", required=True)
    p.add_argument("--valid-fraction", type=float, default=0.05)
    p.add_argument("--max-files", type=int, help="stop after this many input files")
    p.add_argument("--near-dedup", action="store_true", help="MinHash LSH near-deduplication (datasketch)")
    p.add_argument("--jaccard", type=float, default=0.85)
    p.add_argument("--keywords", help="keep only files containing one of these comma-separated words")
    p.add_argument("--data-science", action="store_true", help="the course's subset: pandas, sklearn, matplotlib, seaborn")
    p.add_argument("--tokenizer", help="a trained tokenizer for the characters-per-token floor")
    p.add_argument("--min-chars-per-token", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decontaminate", default="all", metavar="SUITES",
                   help="drop files that share a long n-gram with these suites' canonical solutions or contain their "
                        "docstrings: all (default: every registered suite), none, or a comma list")
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("tokenizer", help="train a byte-level BPE tokenizer on a corpus")
    p.add_argument("--corpus", required=True)
    p.add_argument("--vocab-size", type=int, default=32768)
    p.add_argument("--out", required=True)
    p.add_argument("--max-docs", type=int, help="train on at most this many documents")
    p.set_defaults(func=cmd_tokenizer)

    p = sub.add_parser("train", help="train a GPT-2 (or, --objective mlm, a masked LM) with Accelerate; every "
                                     "checkpoint is a commit on branch --run")
    p.add_argument("--model", default=None, help="tiny, small, large (clm) or mlm-tiny, distilbert (mlm), a "
                                                 "config.json or a save_pretrained folder (default: tiny / mlm-tiny)")
    p.add_argument("--objective", default="clm", choices=["clm", "mlm"],
                   help="clm: next-token prediction (GPT-2); mlm: masked-token prediction (the course's domain "
                        "adaptation of an encoder)")
    p.add_argument("--init", help="start from this save_pretrained folder (e.g. a pretrained encoder): domain "
                                  "adaptation; its tokenizer unless --tokenizer is given")
    p.add_argument("--whole-word-masking", action="store_true", help="mlm: mask whole words (identifiers) at once")
    p.add_argument("--mlm-probability", type=float, default=0.15)
    p.add_argument("--tokenizer", help="a tokenizer folder (required unless --init gives one)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--repo", required=True, help="hub repo: a local path (created on first push) or hf://org/name")
    p.add_argument("--run", required=True, help="the run's branch name")
    p.add_argument("--max-steps", type=int, required=True)
    p.add_argument("--save-every", type=int, required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--batch-size", type=int, default=8, help="per process, per micro-batch")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--schedule", default="cosine", choices=["cosine", "linear", "constant_with_warmup"])
    p.add_argument("--seq-length", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mixed-precision", default="auto", choices=["auto", "no", "bf16", "fp16"])
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--no-master-weights", dest="master_weights", action="store_false",
                   help="bf16: autocast over fp32 weights instead of bf16 weights with fp32 master copies")
    p.add_argument("--no-short-attention", dest="short_attention", action="store_false",
                   help="bf16 on a CPU with --seq-length <= 256: SDPA instead of the batched-matmul attention")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the forward (inductor): a one-off compile (a minute or more on 2 cores), "
                        "then faster steps; for runs longer than a few hundred steps")
    p.add_argument("--keytoken-alpha", type=float, default=0.0, help="> 0: the course's key-token weighted loss")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--eval-batches", type=int, default=16)
    p.add_argument("--shuffle-buffer", type=int, default=256)
    p.add_argument("--num-workers", type=int, default=1,
                   help="DataLoader workers that tokenize and cut the data (0: in the training process)")
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--output-dir", help="accelerator state and TensorBoard logs (default runs/<run>)")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser().parse_args(argv), "the last checkpoint is on the run's branch; continue with --resume")


if __name__ == "__main__":
    sys.exit(main())
