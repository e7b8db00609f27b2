"""`harness eval --ckpt`: perplexity, generation and sandboxed scoring of checkpoints, every stage cached.

Caches live under $HARNESS_CACHE (default ~/.cache/codeparrot-harness), keyed by commit + data/suite hash +
parameters, so scoring a checkpoint twice never loads the model, generates or executes twice.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from checkpoint_hub import Hub, TrainingState
from common import atomic
from common.errors import UserError
from common.paths import cache_root
from common.progress import progress
from harness import leaderboard, scoring
from harness.checkpoints import CheckpointRef, load_checkpoint, training_state
from harness.config import EvalConfig
from harness.distributed import Ranks
from harness.gen_cache import GenerationCache
from harness.perplexity import data_key, load_texts, perplexity
from harness.samples import Sample
from harness.summary import SUMMARY, Summary
from tasks import Suite

PERPLEXITY = "perplexity.json"


class LazyModel:
    """Loads the checkpoint only when a stage actually needs it (a fully cached evaluation never does), onto this
    rank's accelerator when there is one."""

    def __init__(self, hub: Hub, ref: CheckpointRef, ranks: Ranks):
        self.hub, self.ref, self.ranks, self.loaded = hub, ref, ranks, None

    def get(self):
        if self.loaded is None:
            model, tokenizer = load_checkpoint(self.hub, self.ref)
            self.loaded = (model.to(self.ranks.device), tokenizer)
        return self.loaded


def cached_perplexity(lazy: LazyModel, cfg: EvalConfig, state: TrainingState | None) -> dict:
    source = cfg.ppl_data or (state.corpus if state else None)
    if not source:
        raise UserError("no perplexity data: the checkpoint does not name its corpus; pass --ppl-data DIR|FILE "
                        "or --no-ppl")
    if not Path(source).exists():
        raise UserError(f"perplexity data {source} does not exist (the checkpoint's corpus moved?): pass --ppl-data")
    texts, where = load_texts(source)
    path = cache_root() / "perplexity" / f"{lazy.ref.commit}-{data_key(texts, cfg.ppl_max_tokens)}.json"
    if path.exists():
        return json.loads(path.read_text())
    model, tokenizer = lazy.get()
    t0 = time.perf_counter()
    bar = progress(desc="perplexity", unit="window")
    result = perplexity(model, tokenizer, texts, max_tokens=cfg.ppl_max_tokens, progress=bar,
                        context=state.seq_length if state else None)
    bar.close()
    result.update({"data": where, "seconds": round(time.perf_counter() - t0, 2)})
    atomic.write_json(path, result)
    return result


def generate_missing(lazy: LazyModel, cache: GenerationCache, suite: Suite, cfg: EvalConfig,
                     context: int | None, ranks: Ranks) -> dict:
    """Generates what the cache lacks. Collective under `accelerate launch`: every rank takes its share of the
    prompts into its own shard, then the main rank gathers the shards into the cache."""
    from harness.generate import generate

    params = cfg.gen
    have = cache.load()
    todo = [t for t in suite.tasks if any((t.task_id, k) not in have for k in range(params.n))]
    todo = ranks.shard(todo)
    info = {"generated_now": 0, "seconds": 0.0, "new_tokens": 0, "tokens_per_s": None}
    if todo:
        model, tokenizer = lazy.get()
        bar = progress(total=len(todo) * params.n, desc="generating", unit="sample")
        with cache.appender(rank=ranks.index if ranks.count > 1 else None) as append:
            stats = generate(model, tokenizer, [(t.task_id, t.prompt) for t in todo], params, cfg.gen_batch_size,
                             on_batch=append, progress=bar, context=context)
        bar.close()
        info = {"generated_now": stats.sequences, "seconds": round(stats.seconds, 2), "new_tokens": stats.new_tokens,
                "tokens_per_s": round(stats.new_tokens / max(stats.seconds, 1e-9), 1)}
    if ranks.count > 1:
        ranks.wait()
        if ranks.is_main:
            cache.gather(ranks.count)
    return info


def evaluate_checkpoint(hub: Hub, ref: CheckpointRef, suite: Suite, cfg: EvalConfig, out_dir: Path,
                        ranks: Ranks) -> Summary:
    """Main rank: perplexity, generation (with the other ranks), scoring, summary and leaderboard row."""
    t0 = time.perf_counter()
    state = training_state(hub, ref)
    lazy = LazyModel(hub, ref, ranks)
    ppl = cached_perplexity(lazy, cfg, state) if cfg.ppl else None
    # The trained context, not the configured one: positions a run never trained on make neither score nor code.
    context = state.seq_length if state else None
    cache = GenerationCache(cache_root(), ref.commit, suite.hash, cfg.gen.key())
    gen_info = generate_missing(lazy, cache, suite, cfg, context, ranks)
    have = cache.load()
    rows = [have[(t.task_id, k)] for t in suite.tasks for k in range(cfg.gen.n)]
    gen_info["truncated_prompts"] = sorted({r["task_id"] for r in rows if r.get("prompt_truncated")})
    notes = []
    if gen_info["truncated_prompts"]:
        notes.append(f"{len(gen_info['truncated_prompts'])} prompt(s) longer than the context were cut from the left "
                     f"(their end kept): {', '.join(gen_info['truncated_prompts'][:10])}")
        print(f"warning: {notes[-1]}", file=sys.stderr)
    samples = [Sample(r["task_id"], r["completion"], {"task_id": r["task_id"], "sample_index": r["index"],
                                                      "completion": r["completion"]}) for r in rows]
    n_params = state.n_params if state else None
    if n_params is None:
        n_params = lazy.get()[0].num_parameters()
    meta = {
        "repo": ref.repo, "branch": ref.branch, "commit": ref.commit,
        "step": state.step if state else None, "tokens_seen": state.tokens if state else None, "parameters": n_params,
        "perplexity": ppl["perplexity"] if ppl else None, "bits_per_byte": ppl["bits_per_byte"] if ppl else None,
        "perplexity_data": {k: ppl[k] for k in ("data", "tokens", "windows", "context")} if ppl else None,
        "generation": {**asdict(cfg.gen), "batch_size": cfg.gen_batch_size},
        "generation_timing": gen_info,
        "output_dir": str(out_dir),
    }
    summary = scoring.score(samples, suite, out_dir, cfg.sandbox.make_pool, cfg.sandbox.timeout, list(cfg.ks),
                            meta=meta, notes=notes, sandbox=cfg.sandbox.backend)
    summary.timings["total_s"] = round(time.perf_counter() - t0, 2)
    if ppl:
        atomic.write_json(out_dir / PERPLEXITY, ppl)
    summary.write(out_dir / SUMMARY)
    if cfg.leaderboard is not None:
        leaderboard.upsert(cfg.leaderboard, leaderboard.row_from_summary(summary))
    return summary


def evaluate_checkpoints(hub: Hub, refs: list[CheckpointRef], cfg: EvalConfig, nested: bool = False) -> list[Summary]:
    """Evaluates each checkpoint (cached stage by stage). Under `accelerate launch` the other ranks only help
    generate and return an empty list: the main rank alone scores, writes and reports."""
    ranks = Ranks()
    suite = cfg.load_suite()
    if not ranks.is_main:
        for ref in refs:
            state = training_state(hub, ref)
            cache = GenerationCache(cache_root(), ref.commit, suite.hash, cfg.gen.key())
            generate_missing(LazyModel(hub, ref, ranks), cache, suite, cfg, state.seq_length if state else None, ranks)
        return []
    cfg.sandbox.preflight()
    many = nested or len(refs) > 1
    summaries = []
    for i, ref in enumerate(refs, 1):
        print(f"[{i}/{len(refs)}] {ref.short}", file=sys.stderr)
        summaries.append(evaluate_checkpoint(hub, ref, suite, cfg, cfg.checkpoint_dir(ref, suite, many), ranks))
    return summaries
