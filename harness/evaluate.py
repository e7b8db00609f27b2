"""`harness eval --ckpt`: perplexity, generation and sandboxed scoring of checkpoints, every stage cached.

Caches live under $HARNESS_CACHE (default ~/.cache/codeparrot-harness), keyed by commit + data/suite hash +
parameters, so scoring a checkpoint twice never loads the model, generates or executes twice.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from checkpoint_hub import Hub, TrainingState
from common import atomic
from common.errors import UserError
from common.paths import cache_root
from common.progress import progress
from harness import leaderboard, scoring
from harness.checkpoints import MASKED, CheckpointRef, checkpoint_objective, load_checkpoint, training_state
from harness.config import EvalConfig, GenParams
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
    texts, where = perplexity_source(cfg, state)
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


def perplexity_source(cfg: EvalConfig, state: TrainingState | None) -> tuple[list[str], str]:
    source = cfg.ppl_data or (state.corpus if state else None)
    if not source:
        raise UserError("no perplexity data: the checkpoint does not name its corpus; pass --ppl-data DIR|FILE "
                        "or --no-ppl")
    if not Path(source).exists():
        raise UserError(f"perplexity data {source} does not exist (the checkpoint's corpus moved?): pass --ppl-data")
    return load_texts(source)


MLM_BATCH = 8


def masked_lm_perplexity(hub: Hub, ref: CheckpointRef, cfg: EvalConfig, state: TrainingState | None) -> dict:
    """Masked-LM perplexity on the fixed-mask validation set (pretrain.mlm: the masks training validated on), cached
    per commit and data; per-batch sums kept so the gate can bootstrap over them."""
    from harness.checkpoints import load_masked_lm
    from pretrain.mlm import fixed_mask_batches, masked_lm_nll, perplexity_of

    texts, where = perplexity_source(cfg, state)
    path = cache_root() / "perplexity" / f"{ref.commit}-mlm-{data_key(texts, cfg.ppl_max_tokens)}.json"
    if path.exists():
        return json.loads(path.read_text())
    model, tokenizer = load_masked_lm(hub, ref)
    if tokenizer.mask_token is None:
        raise UserError(f"{ref.short} is a masked LM but its tokenizer has no mask token: masked-LM perplexity needs "
                        "one (train with `pretrain train --objective mlm`, which adds [MASK], or save the tokenizer "
                        "the model was trained with)")
    limit = getattr(model.config, "max_position_embeddings", None) or 512
    context = min(state.seq_length, limit) if state and state.seq_length else min(limit, 512)
    t0 = time.perf_counter()
    batches = fixed_mask_batches(tokenizer, texts, context, MLM_BATCH, max(1, cfg.ppl_max_tokens // (context * MLM_BATCH)))
    if not batches:
        raise UserError(f"perplexity data {where} is shorter than one sequence of {context} tokens: pass a larger "
                        "--ppl-data")
    nll, counts = masked_lm_nll(model, batches)
    loss, ppl = perplexity_of(nll, counts)
    result = {"objective": MASKED, "perplexity": ppl, "loss": loss, "masked_tokens": sum(counts),
              "tokens": sum(b["input_ids"].numel() for b in batches), "windows": len(batches), "context": context,
              "window_nll": nll, "window_tokens": counts, "data": where,
              "seconds": round(time.perf_counter() - t0, 2)}
    atomic.write_json(path, result)
    return result


def evaluate_masked_lm(hub: Hub, ref: CheckpointRef, cfg: EvalConfig, state: TrainingState | None,
                       many: bool) -> Summary:
    """An encoder checkpoint: masked-LM perplexity only. No pass@k (an encoder does not write code), and the summary
    says so rather than reporting 0."""
    if not cfg.ppl:
        raise UserError(f"{ref.short} is a masked-LM checkpoint: perplexity is all it is scored on; drop --no-ppl")
    ppl = masked_lm_perplexity(hub, ref, cfg, state)
    out_dir = cfg.evaluation_dir(ref, MASKED, many)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out_dir / PERPLEXITY, ppl)
    from harness import __version__

    summary = Summary(
        suite="-", suite_hash="-", samples=0, timeout_s=0.0, sandbox="-", harness_version=__version__,
        objective=MASKED, notes=["masked-LM checkpoint: no pass@k (an encoder does not generate code); perplexity "
                                 "is masked-LM perplexity on the fixed-mask validation set"],
        repo=ref.repo, branch=ref.branch, commit=ref.commit, step=state.step if state else None,
        tokens_seen=state.tokens if state else None, parameters=state.n_params if state else None,
        perplexity=ppl["perplexity"],
        perplexity_data={k: ppl[k] for k in ("data", "tokens", "masked_tokens", "windows", "context")},
        output_dir=str(out_dir))
    summary.write(out_dir / SUMMARY)
    if cfg.leaderboard is not None:
        leaderboard.upsert(cfg.leaderboard, leaderboard.row_from_summary(summary, cfg.leaderboard, cfg.board_name))
    return summary


def decontamination(state: TrainingState | None, suite: Suite) -> bool | None:
    """Was the checkpoint's corpus decontaminated against this suite? None: the checkpoint does not say."""
    if state is None or state.decontaminated is None:
        return None
    return suite.name.partition("[")[0] in state.decontaminated


def prompt_id(prompt: str | list) -> str:
    """Generations are keyed by prompt content: suites that share a prompt (HumanEval and HumanEval+) share them.
    A chat (a list of messages, sent to a server as it is) is keyed by its JSON."""
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class PromptGroup:
    """The distinct prompts of the suites that end completions at the same stop sequences: generated once."""
    params: GenParams
    prompts: dict[str, str | list]  # prompt id -> prompt (or chat messages), in first-seen order

    def cache(self, commit: str) -> GenerationCache:
        return GenerationCache(cache_root(), commit, self.params.key())


def completion_prompt(task) -> str:
    return task.prompt


def prompt_groups(suites: list[Suite], gen: GenParams, ask=completion_prompt, chat: bool = False) -> list[PromptGroup]:
    """`ask(task)`: what the model is given for a task (its prompt; with `chat`, the rendered chat or the messages).
    A chat answer runs to the end of the model's turn: no stop sequence, whatever the suite."""
    groups: dict[tuple[str, ...], PromptGroup] = {}
    for suite in suites:
        stop = () if chat else suite.stop
        group = groups.setdefault(stop, PromptGroup(replace(gen, stop=stop), {}))
        for t in suite.tasks:
            asked = ask(t)
            group.prompts.setdefault(prompt_id(asked), asked)
    return list(groups.values())


def asker(hub: Hub, ref: CheckpointRef, cfg: EvalConfig):
    """What a local checkpoint is given for a task: the prompt, or with --chat the chat rendered by its template."""
    if not cfg.chat:
        return completion_prompt
    from harness.chat import render, task_messages
    from harness.checkpoints import load_tokenizer

    tokenizer = load_tokenizer(Path(hub.materialize(ref.commit)))
    rendered = {}

    def ask(task) -> str:
        key = (task.prompt, task.instruct)
        if key not in rendered:
            rendered[key] = render(tokenizer, task_messages(task), cfg.chat_template, f"checkpoint {ref.short}")
        return rendered[key]

    return ask


def suite_samples(suite: Suite, have: dict, ask, n: int, chat: bool) -> list[Sample]:
    """The cached generations of a suite's tasks as samples; a chat answer is judged on the program drawn from it
    (kept beside the raw answer in results.jsonl)."""
    from harness.chat import program_of

    samples = []
    for t in suite.tasks:
        pid = prompt_id(ask(t))
        for k in range(n):
            r = have[(pid, k)]
            if chat and t.instruct:  # the whole answer is the completion: the suite draws its code from it
                samples.append(Sample(t.task_id, r["completion"], {"task_id": t.task_id, "sample_index": r["index"],
                                                                   "completion": r["completion"]}))
            elif chat:
                program = program_of(r["completion"], t.entry_point, t.prompt)
                samples.append(Sample(t.task_id, program, {"task_id": t.task_id, "sample_index": r["index"],
                                                           "solution": program, "raw_answer": r["completion"]},
                                      solution=program))
            else:
                samples.append(Sample(t.task_id, r["completion"], {"task_id": t.task_id, "sample_index": r["index"],
                                                                   "completion": r["completion"]}))
    return samples


def generate_missing(lazy: LazyModel, group: PromptGroup, cfg: EvalConfig, context: int | None, ranks: Ranks) -> dict:
    """Generates what the cache lacks. Collective under `accelerate launch`: every rank takes its share of the
    prompts into its own shard, then the main rank gathers the shards into the cache."""
    from harness.generate import generate

    params, cache = group.params, group.cache(lazy.ref.commit)
    have = cache.load()
    todo = [(pid, p) for pid, p in group.prompts.items() if any((pid, k) not in have for k in range(params.n))]
    todo = ranks.shard(todo)
    info = {"generated_now": 0, "seconds": 0.0, "new_tokens": 0, "tokens_per_s": None}
    if todo:
        model, tokenizer = lazy.get()
        bar = progress(total=len(todo) * params.n, desc="generating", unit="sample")
        with cache.appender(rank=ranks.index if ranks.count > 1 else None) as append:
            try:
                stats = generate(model, tokenizer, todo, params, cfg.gen_batch_size, on_batch=append, progress=bar,
                                 context=context)
            except (TypeError, AttributeError, NotImplementedError, ValueError) as exc:
                raise UserError(f"{lazy.ref.short}: the harness cannot drive a {model.config.model_type!r} model "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from exc
        bar.close()
        info = {"generated_now": stats.sequences, "seconds": round(stats.seconds, 2), "new_tokens": stats.new_tokens,
                "tokens_per_s": round(stats.new_tokens / max(stats.seconds, 1e-9), 1)}
    if ranks.count > 1:
        ranks.wait()
        if ranks.is_main:
            cache.gather(ranks.count)
    return info


def evaluate_checkpoint(hub: Hub, ref: CheckpointRef, suites: list[Suite], cfg: EvalConfig, ranks: Ranks,
                        many: bool) -> list[Summary]:
    """Main rank: perplexity once, generation once per distinct prompt (with the other ranks), then for each suite
    scoring, summary and leaderboard row."""
    t0 = time.perf_counter()
    state = training_state(hub, ref)
    if checkpoint_objective(hub, ref, state) == MASKED:
        return [evaluate_masked_lm(hub, ref, cfg, state, many)]
    lazy = LazyModel(hub, ref, ranks)
    ppl = cached_perplexity(lazy, cfg, state) if cfg.ppl else None
    # The trained context, not the configured one: positions a run never trained on make neither score nor code.
    context = state.seq_length if state else None
    ask = asker(hub, ref, cfg)
    groups = prompt_groups(suites, cfg.gen, ask, cfg.chat)
    gen_info = {"generated_now": 0, "seconds": 0.0, "new_tokens": 0}
    for group in groups:
        info = generate_missing(lazy, group, cfg, context, ranks)
        for k in gen_info:
            gen_info[k] += info[k]
    gen_info["tokens_per_s"] = round(gen_info["new_tokens"] / gen_info["seconds"], 1) if gen_info["seconds"] else None
    n_params = state.n_params if state else None
    if n_params is None:
        n_params = lazy.get()[0].num_parameters()
    summaries = []
    for suite in suites:
        group = next(g for g in groups if g.params.stop == (() if cfg.chat else suite.stop))
        have = group.cache(ref.commit).load()
        truncated = sorted({t.task_id for t in suite.tasks for k in range(cfg.gen.n)
                            if have[(prompt_id(ask(t)), k)].get("prompt_truncated")})
        notes = []
        if truncated:
            notes.append(f"{len(truncated)} prompt(s) longer than the context were cut from the left "
                         f"(their end kept): {', '.join(truncated[:10])}")
            print(f"warning: {suite.name}: {notes[-1]}", file=sys.stderr)
        samples = suite_samples(suite, have, ask, cfg.gen.n, cfg.chat)
        out_dir = cfg.checkpoint_dir(ref, suite, many)
        clean = decontamination(state, suite)
        if clean is not True:
            why = ("the checkpoint does not record a decontaminated corpus" if clean is None else
                   f"its corpus was decontaminated against {', '.join(state.decontaminated) or 'no suite'} only")
            notes.append(f"not decontaminated against {suite.name}: {why}; pass@k may count memorised solutions")
            print(f"warning: {ref.short}: {suite.name}: {notes[-1]}", file=sys.stderr)
        meta = {
            "objective": "clm", "decontaminated": clean, "prompting": "chat" if cfg.chat else "completion",
            "repo": ref.repo, "branch": ref.branch, "commit": ref.commit,
            "step": state.step if state else None, "tokens_seen": state.tokens if state else None,
            "parameters": n_params,
            "perplexity": ppl["perplexity"] if ppl else None, "bits_per_byte": ppl["bits_per_byte"] if ppl else None,
            "perplexity_data": {k: ppl[k] for k in ("data", "tokens", "windows", "context")} if ppl else None,
            "generation": {**asdict(group.params), "batch_size": cfg.gen_batch_size,
                           **({"chat_template": "--chat-template" if cfg.chat_template else "the tokenizer's"}
                              if cfg.chat else {})},
            "generation_timing": {**gen_info, "truncated_prompts": truncated},
            "output_dir": str(out_dir),
        }
        summaries.append(score_and_publish(samples, suite, out_dir, cfg, meta, notes, t0, ppl))
    return summaries


def score_and_publish(samples, suite, out_dir, cfg: EvalConfig, meta: dict, notes: list, t0: float,
                      ppl: dict | None = None) -> Summary:
    """Verdicts -> pass@k -> (perplexity.json) -> summary.json, written last, then the leaderboard row: the last step
    of every evaluation."""
    summary = scoring.score(samples, suite, out_dir, cfg.sandbox.make_pool, cfg.sandbox.timeout, list(cfg.ks),
                            meta=meta, notes=notes, sandbox=cfg.sandbox.backend,
                            timeout_factor=cfg.sandbox.timeout_factor, oracle=cfg.sandbox.oracle)
    summary.timings["total_s"] = round(time.perf_counter() - t0, 2)
    if ppl:
        atomic.write_json(out_dir / PERPLEXITY, ppl)
    summary.write(out_dir / SUMMARY)
    if cfg.leaderboard is not None:
        leaderboard.upsert(cfg.leaderboard, leaderboard.row_from_summary(summary, cfg.leaderboard, cfg.board_name))
    return summary


def evaluate_checkpoints(hub: Hub, refs: list[CheckpointRef], cfg: EvalConfig, nested: bool = False) -> list[Summary]:
    """Evaluates each checkpoint on each suite (cached stage by stage); one Summary per (checkpoint, suite), in that
    order. Under `accelerate launch` the other ranks only help generate and return an empty list: the main rank
    alone scores, writes and reports."""
    ranks = Ranks()
    suites = cfg.load_suites()
    if not ranks.is_main:
        for ref in refs:
            state = training_state(hub, ref)
            if checkpoint_objective(hub, ref, state) == MASKED:
                continue  # the main rank scores its perplexity alone
            for group in prompt_groups(suites, cfg.gen, asker(hub, ref, cfg), cfg.chat):
                generate_missing(LazyModel(hub, ref, ranks), group, cfg, state.seq_length if state else None, ranks)
        return []
    errors = []
    many = nested or len(refs) > 1 or len(suites) > 1
    if any(checkpoint_objective(hub, ref, training_state(hub, ref)) != MASKED for ref in refs):
        suites, errors = cfg.sandbox.usable(suites)  # masked-LM checkpoints run no sample: they need no engine
    summaries = []
    if suites:
        for i, ref in enumerate(refs, 1):
            print(f"[{i}/{len(refs)}] {ref.short}", file=sys.stderr)
            summaries += evaluate_checkpoint(hub, ref, suites, cfg, ranks, many)
    if errors:  # the other suites are scored and written; the run still says it did not do everything asked
        raise UserError("; ".join(errors))
    return summaries


PERPLEXITY_SKIPPED = ("perplexity: not measured through an endpoint (completions APIs do not give the log-likelihood "
                      "of a text reliably); evaluate the checkpoint with --ckpt for it")


def endpoint_card(endpoint, cfg: EvalConfig, needed: bool) -> dict:
    """The server's entry for the served model: asked when there is work to send (a repeated, fully cached run sends
    no request at all), cached beside the generations for the runs that need none."""
    path = cache_root() / "generations" / cfg.endpoint.key() / "model.json"
    if needed or not path.exists():
        card = endpoint.model_card()
        atomic.write_json(path, card)
        return card
    return json.loads(path.read_text())


def all_samples_equal(group: PromptGroup, commit: str) -> bool:
    """Did every prompt of the group get n equal samples? At a temperature above 0 that is a server not sampling."""
    have = group.cache(commit).load()
    return len(group.prompts) > 1 and all(
        len({have[(pid, k)]["completion"] for k in range(group.params.n)}) == 1 for pid in group.prompts)


def evaluate_endpoint(cfg: EvalConfig) -> list[Summary]:
    """`harness eval --endpoint`: generation through an OpenAI-compatible server into the same generation cache as
    local generation (keyed by the endpoint and its served model), then the same scoring, summary and leaderboard
    row as a checkpoint's; perplexity is not measured."""
    from harness.chat import task_messages
    from harness.endpoint import MAX_STOP, Endpoint, request

    t0 = time.perf_counter()
    ep = cfg.endpoint
    suites = cfg.load_suites()
    endpoint = Endpoint(ep, chat=cfg.chat)  # a missing API key is one line before anything else
    many = len(suites) > 1
    suites, errors = cfg.sandbox.usable(suites)
    ask = task_messages if cfg.chat else completion_prompt
    groups = prompt_groups(suites, cfg.gen, ask, cfg.chat)
    todo = []
    for group in groups:
        have = group.cache(ep.key()).load()
        for pid, prompt in group.prompts.items():
            missing = [k for k in range(group.params.n) if (pid, k) not in have]
            if missing:
                todo.append((group, request(pid, prompt, missing, group.params)))
    card = endpoint_card(endpoint, cfg, needed=bool(todo))
    if todo:
        bar = progress(total=sum(len(r.indices) for _, r in todo), desc=f"generating via {ep.url}", unit="sample")
        try:
            for group in groups:
                mine = [r for g, r in todo if g is group]
                if mine:
                    with group.cache(ep.key()).appender() as append:
                        endpoint.generate(mine, group.params, on_done=append, progress=bar)
        finally:
            bar.close()  # before the error line, if there is one: that line must be the last
    notes = [PERPLEXITY_SKIPPED]
    greedy_like = [g for g in groups if g.params.temperature > 0 and g.params.n > 1 and all_samples_equal(g, ep.key())]
    if greedy_like:
        notes.append(f"every prompt got {cfg.gen.n} identical samples at temperature {cfg.gen.temperature}: the "
                     "server may be decoding greedily (transformers serve samples only when the checkpoint's "
                     "generation_config.json sets do_sample: true), so pass@k>1 means little")
        print(f"warning: {notes[-1]}", file=sys.stderr)
    stats = endpoint.stats
    gen_info = {"generated_now": stats.sequences, "seconds": round(stats.seconds, 2), "new_tokens": stats.new_tokens,
                "tokens_per_s": round(stats.new_tokens / stats.seconds, 1) if stats.seconds else None,
                "requests": stats.requests, "retries": stats.retries, "n_per_request": stats.n_per_request,
                "concurrency": ep.concurrency}
    summaries = []
    for suite in suites:
        group = next(g for g in groups if g.params.stop == (() if cfg.chat else suite.stop))
        samples = suite_samples(suite, group.cache(ep.key()).load(), ask, cfg.gen.n, cfg.chat)
        out_dir = cfg.endpoint_dir(suite, many)
        meta = {
            "objective": "clm", "prompting": "chat" if cfg.chat else "completion",
            "endpoint": ep.url, "served_model": ep.served_model, "endpoint_model": card,
            "generation": {**asdict(group.params), "stop_sent": list(group.params.stop[:MAX_STOP])},
            "generation_timing": gen_info, "output_dir": str(out_dir),
        }
        summaries.append(score_and_publish(samples, suite, out_dir, cfg, meta, notes, t0))
    if errors:
        raise UserError("; ".join(errors))
    return summaries
