"""`harness eval --ckpt`: perplexity, generation and sandboxed scoring of one checkpoint, every stage cached.

Caches live under $HARNESS_CACHE (default ~/.cache/codeparrot-harness), keyed by commit + data/suite hash +
parameters, so scoring a checkpoint twice never loads the model, generates or executes twice.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from harness import atomic, leaderboard, scoring
from harness.checkpoints import load_checkpoint, training_state
from harness.generate import GenParams, Generation, generate
from harness.perplexity import data_key, load_texts, perplexity
from harness.progress import progress
from harness.types import CheckpointRef, Sample, UserError
from pretrain.hub import cache_root
from pretrain.models import count_parameters
from tasks import Suite


def distributed():
    """Accelerate's process state when launched with several processes (`accelerate launch`), else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


class LazyModel:
    """Loads the checkpoint only when a stage actually needs it (a fully cached evaluation never does)."""

    def __init__(self, hub, ref):
        self.hub, self.ref, self._loaded = hub, ref, None

    def get(self):
        if self._loaded is None:
            self._loaded = load_checkpoint(self.hub, self.ref)
        return self._loaded


def cached_perplexity(lazy: LazyModel, commit: str, ppl_data: str | None, state: dict, max_tokens: int) -> dict:
    source = ppl_data or state.get("corpus")
    if not source:
        raise UserError("no perplexity data: the checkpoint does not name its corpus; pass --ppl-data DIR|FILE "
                        "or --no-ppl")
    if not Path(source).exists():
        raise UserError(f"perplexity data {source} does not exist (the checkpoint's corpus moved?): pass --ppl-data")
    texts, where = load_texts(source)
    path = cache_root() / "perplexity" / f"{commit}-{data_key(texts, max_tokens)}.json"
    if path.exists():
        return json.loads(path.read_text())
    model, tokenizer = lazy.get()
    t0 = time.perf_counter()
    bar = progress(desc="perplexity", unit="window")
    result = perplexity(model, tokenizer, texts, max_tokens=max_tokens, progress=bar, context=state.get("seq_length"))
    bar.close()
    result.update({"data": where, "seconds": round(time.perf_counter() - t0, 2)})
    atomic.write_json(path, result)
    return result


def cached_generations(lazy: LazyModel, commit: str, suite: Suite, params: GenParams, batch_size: int,
                       context: int | None) -> tuple[list, dict]:
    """All n completions of every task, generated only for what the cache (append-only, per batch) lacks."""
    path = cache_root() / "generations" / commit / f"{suite.hash}-{params.key()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    have: dict[tuple[str, int], dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                have[(row["task_id"], row["index"])] = row
            except (json.JSONDecodeError, KeyError):
                continue  # torn last line of a killed run
    todo = [t for t in suite.tasks if any((t.task_id, k) not in have for k in range(params.n))]
    info = {"generated_now": 0, "seconds": 0.0, "new_tokens": 0, "tokens_per_s": None}
    dist = distributed()
    log_path = path
    if dist is not None:  # under `accelerate launch`: each process takes every world_size-th prompt
        todo = todo[dist.process_index::dist.num_processes]
        log_path = path.with_name(f"{path.stem}.rank{dist.process_index}.jsonl")
    if todo:
        model, tokenizer = lazy.get()
        model.to(dist.device if dist is not None else "cpu")
        bar = progress(total=len(todo) * params.n, desc="generating", unit="sample")
        with open(log_path, "a", encoding="utf-8") as log:
            def keep(batch: list[Generation]):
                for g in batch:
                    row = asdict(g)
                    log.write(json.dumps(row) + "\n")
                    have[(g.task_id, g.index)] = row
                log.flush()

            stats = generate(model, tokenizer, [(t.task_id, t.prompt) for t in todo], params, batch_size,
                             on_batch=keep, progress=bar, context=context)
        bar.close()
        info = {"generated_now": stats.sequences, "seconds": round(stats.seconds, 2), "new_tokens": stats.new_tokens,
                "tokens_per_s": round(stats.new_tokens / max(stats.seconds, 1e-9), 1)}
    if dist is not None:
        dist.wait_for_everyone()
        if not dist.is_main_process:
            return None, info
        with open(path, "a", encoding="utf-8") as log:  # the main process gathers every shard into the cache
            for rank in range(dist.num_processes):
                shard = path.with_name(f"{path.stem}.rank{rank}.jsonl")
                if shard.exists():
                    for line in shard.read_text(encoding="utf-8").splitlines():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError:
                            continue
                        have[(row["task_id"], row["index"])] = row
                        log.write(line + "\n")
                    shard.unlink()
    rows = [have[(t.task_id, k)] for t in suite.tasks for k in range(params.n)]
    info["truncated_prompts"] = sorted({r["task_id"] for r in rows if r.get("prompt_truncated")})
    return rows, info


def evaluate_checkpoint(hub, ref: CheckpointRef, suite: Suite, params: GenParams, out_dir: Path, make_pool,
                        timeout: float, ks: list[int], sandbox: str, ppl_data: str | None, ppl_max_tokens: int,
                        gen_batch_size: int, board_path: Path | None, do_ppl: bool = True) -> dict:
    t0 = time.perf_counter()
    state = training_state(hub, ref.commit)
    lazy = LazyModel(hub, ref)
    ppl = cached_perplexity(lazy, ref.commit, ppl_data, state, ppl_max_tokens) if do_ppl else None
    # The trained context, not n_positions: positions a run never trained on make neither score nor code.
    rows, gen_info = cached_generations(lazy, ref.commit, suite, params, gen_batch_size, state.get("seq_length"))
    if rows is None:
        return None  # a non-main process of a sharded generation: the main one scores and reports
    notes = []
    if gen_info["truncated_prompts"]:
        notes.append(f"{len(gen_info['truncated_prompts'])} prompt(s) longer than the context were cut from the left "
                     f"(their end kept): {', '.join(gen_info['truncated_prompts'][:10])}")
        print(f"warning: {notes[-1]}", file=sys.stderr)
    samples = [Sample(r["task_id"], r["completion"], {"task_id": r["task_id"], "sample_index": r["index"],
                                                      "completion": r["completion"]}) for r in rows]
    n_params = state.get("n_params")
    if n_params is None and lazy._loaded is not None:
        n_params = count_parameters(lazy._loaded[0])
    meta = {
        "repo": ref.repo, "branch": ref.branch, "commit": ref.commit,
        "step": state.get("step"), "tokens_seen": state.get("tokens"), "parameters": n_params,
        "perplexity": ppl["perplexity"] if ppl else None, "bits_per_byte": ppl["bits_per_byte"] if ppl else None,
        "perplexity_data": {k: ppl[k] for k in ("data", "tokens", "windows", "context")} if ppl else None,
        "generation": {**asdict(params), "batch_size": gen_batch_size},
        "generation_timing": gen_info,
    }
    summary = scoring.score(samples, suite, out_dir, make_pool, timeout, ks, meta=meta, notes=notes, sandbox=sandbox)
    summary["timings"]["total_s"] = round(time.perf_counter() - t0, 2)
    if ppl:
        atomic.write_json(out_dir / "perplexity.json", ppl)
    atomic.write_json(out_dir / scoring.SUMMARY, summary)
    if board_path is not None:
        leaderboard.upsert(board_path, leaderboard.row_from_summary(summary))
    return summary


def format_checkpoint_table(summaries: list[dict]) -> str:
    from tabulate import tabulate

    ks = sorted({int(k.split("@")[1]) for s in summaries for k in s if k.startswith("pass@") and "_" not in k})
    rows = []
    for s in summaries:
        row = [s["branch"], s["commit"][:10], s.get("step"),
               f"{s['perplexity']:.2f}" if s.get("perplexity") is not None else "-",
               f"{s['bits_per_byte']:.3f}" if s.get("bits_per_byte") is not None else "-"]
        for k in ks:
            v = s.get(f"pass@{k}")
            row.append(f"{100 * v:.2f} ± {100 * s[f'pass@{k}_stderr']:.2f}" if v is not None else "-")
        rows.append(row)
    head = ["branch", "commit", "step", "perplexity", "bits/byte"] + [f"pass@{k} (%)" for k in ks]
    return tabulate(rows, headers=head, tablefmt="github")
