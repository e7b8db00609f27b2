"""The gate, as a library: `run_gate(...) -> GateResult` merges a run into main only if its metric does not
regress, judged with a paired bootstrap over problems (pass@k) or windows (perplexity). The CLI only prints it."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from common import atomic
from common.errors import UserError
from tasks.passk import estimate_pass_at_k

N_BOOT = 10000


def per_problem_pass_at_k(results_path: Path, k: int) -> dict[str, float]:
    counts: dict[str, list[int]] = {}
    with open(results_path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            n_c = counts.setdefault(r["task_id"], [0, 0])
            n_c[0] += 1
            n_c[1] += int(r["passed"])
    if any(n < k for n, _ in counts.values()):
        raise UserError(f"pass@{k} needs at least {k} samples per problem: evaluate with --n {k} or more")
    return {t: estimate_pass_at_k(n, c, k) for t, (n, c) in counts.items()}


def paired_bootstrap(main: np.ndarray, branch: np.ndarray, stat, seed: int = 0) -> tuple[float, float, float]:
    """stat(values, index) of branch minus the same for main, over resamples of the same index for both."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(main), size=(N_BOOT, len(main)))
    deltas = np.array([stat(branch, i) - stat(main, i) for i in idx])
    point = stat(branch, np.arange(len(branch))) - stat(main, np.arange(len(main)))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return float(point), float(lo), float(hi)


@dataclass(frozen=True)
class Comparison:
    metric: str
    main: float
    branch: float
    delta: float  # branch - main
    ci95: tuple[float, float]
    higher_is_better: bool
    paired_over: str

    @property
    def scale(self) -> int:
        """pass@k is shown in percent."""
        return 100 if "pass@" in self.metric else 1


@dataclass(frozen=True)
class GateResult:
    branch: str
    commit: str
    main_before: str | None  # main's checkpoint before the gate (None: main held none)
    merged: bool
    reason: str
    comparison: Comparison | None = None  # None when nothing was compared
    main_after: str | None = None  # main's head after a merge
    report: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 merged (or nothing to do), 1 blocked; errors raise and exit 2."""
        return 0 if self.merged or self.main_before == self.commit else 1


def split_metric(metric: str) -> tuple[str | None, str]:
    """`humanevalplus:pass@1` -> ("humanevalplus", "pass@1"); `pass@1` -> (None, "pass@1")."""
    suite, _, name = metric.rpartition(":")
    return (suite or None), name


def check_metric(metric: str) -> None:
    suite, name = split_metric(metric)
    if name == "perplexity" and suite is None:
        return
    if name.startswith("pass@") and name[len("pass@"):].isdigit() and int(name[len("pass@"):]) >= 1:
        return
    raise UserError(f"unknown gate metric {metric!r}: use pass@1, pass@10 (any pass@k), SUITE:pass@k "
                    "(e.g. humanevalplus:pass@1) or perplexity")


def compare(metric: str, main_dir: Path, branch_dir: Path) -> Comparison:
    """Delta (branch - main) with a 95% interval; `worse` says in which direction a delta is a regression."""
    if metric.startswith("pass@"):
        k = int(metric.split("@")[1])
        a = per_problem_pass_at_k(main_dir / "results.jsonl", k)
        b = per_problem_pass_at_k(branch_dir / "results.jsonl", k)
        if set(a) != set(b):
            raise UserError("main and the branch were scored on different task sets: evaluate both with the same "
                            "--tasks and --limit")
        tasks = sorted(a)
        main_v, branch_v = np.array([a[t] for t in tasks]), np.array([b[t] for t in tasks])
        point, lo, hi = paired_bootstrap(main_v, branch_v, lambda v, i: v[i].mean())
        return Comparison(metric, float(main_v.mean()), float(branch_v.mean()), point, (lo, hi), True,
                          f"{len(tasks)} problems")
    if metric == "perplexity":
        pa = json.loads((main_dir / "perplexity.json").read_text())
        pb = json.loads((branch_dir / "perplexity.json").read_text())
        na, nb = np.array(pa["window_nll"]), np.array(pb["window_nll"])
        ta, tb = np.array(pa["window_tokens"]), np.array(pb["window_tokens"])
        ppl = lambda nll, tok, i: math.exp(min(nll[i].sum() / tok[i].sum(), 700.0))  # noqa: E731
        if len(na) == len(nb):
            point, lo, hi = paired_bootstrap(np.stack([na, ta]), np.stack([nb, tb]), lambda v, i: ppl(v[0], v[1], i))
            over = f"{len(na)} windows (paired)"
        else:  # different tokenizers cut the data into different windows: resample each side on its own
            rng = np.random.default_rng(0)
            da = [ppl(na, ta, rng.integers(0, len(na), len(na))) for _ in range(N_BOOT)]
            db = [ppl(nb, tb, rng.integers(0, len(nb), len(nb))) for _ in range(N_BOOT)]
            deltas = np.array(db) - np.array(da)
            point = ppl(nb, tb, np.arange(len(nb))) - ppl(na, ta, np.arange(len(na)))
            lo, hi = (float(x) for x in np.percentile(deltas, [2.5, 97.5]))
            over = f"{len(na)} and {len(nb)} windows (unpaired: different tokenizations)"
        return Comparison(metric, pa["perplexity"], pb["perplexity"], point, (lo, hi), False, over)
    check_metric(metric)
    raise AssertionError(metric)


def decide(cmp: Comparison, margin: float) -> bool:
    """Merge unless the point estimate is worse than main by more than the margin."""
    if cmp.higher_is_better:
        return cmp.delta >= -margin
    return cmp.delta <= margin


def write_report(path: Path, branch: str, branch_commit: str, main_commit: str | None, cmp: Comparison | None,
                 margin: float, merged: bool, reason: str) -> None:
    lines = [f"# Gate: `{branch}` into `main`", "",
             f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"- branch head: `{branch_commit}`",
             f"- main head: `{main_commit or '(no checkpoint yet)'}`",
             f"- decision: **{'merged' if merged else 'blocked'}** ({reason})", ""]
    if cmp:
        scale = cmp.scale
        unit = " (%)" if scale == 100 else ""
        lines += [f"| metric | main | branch | delta (branch - main) | 95% CI (paired bootstrap, {cmp.paired_over}) | margin |",
                  "|---|---|---|---|---|---|",
                  f"| {cmp.metric}{unit} | {scale * cmp.main:.3f} | {scale * cmp.branch:.3f} | "
                  f"{scale * cmp.delta:+.3f} | [{scale * cmp.ci95[0]:+.3f}, {scale * cmp.ci95[1]:+.3f}] | "
                  f"{scale * margin:.3f} |", ""]
    atomic.write_text(path, "\n".join(lines))


def describe(cmp: Comparison, margin: float, branch: str) -> str:
    sc = cmp.scale
    return (f"{cmp.metric}: main {sc * cmp.main:.3f}, {branch} {sc * cmp.branch:.3f}, delta {sc * cmp.delta:+.3f} "
            f"(95% CI [{sc * cmp.ci95[0]:+.3f}, {sc * cmp.ci95[1]:+.3f}], paired bootstrap over {cmp.paired_over}), "
            f"margin {sc * margin:.3f}")


KINDS = {"clm": "causal-LM", "mlm": "masked-LM"}


def objective_of(hub, ref) -> str:
    from harness.checkpoints import checkpoint_objective, training_state

    return checkpoint_objective(hub, ref, training_state(hub, ref))


def run_gate(hub, ckpt: str, cfg, metric: str = "pass@1", margin: float = 0.0,
             report: Path | None = None) -> GateResult:
    """Evaluates the run's checkpoint and main's (cached), compares them and merges the run into main unless it
    regresses by more than `margin`. `cfg` is the EvalConfig both are evaluated with. Writes the markdown report."""
    from harness.checkpoints import CheckpointRef, main_checkpoint, resolve_refs
    from harness.distributed import refuse_multiprocess
    from harness.evaluate import evaluate_checkpoints

    refuse_multiprocess("gate", "generate in parallel with `accelerate launch -m harness.cli eval --ckpt ...` first, "
                        "then run `harness gate` once; it reuses the cached generations")
    check_metric(metric)
    suite_name = split_metric(metric)[0]
    names = [s.name.partition("[")[0] for s in cfg.load_suites()]  # "humaneval[:6]" under --limit is humaneval
    if suite_name is not None and suite_name not in names:
        raise UserError(f"--metric {metric}: suite {suite_name!r} is not among --tasks ({', '.join(names)})")
    if metric == "perplexity" and not cfg.ppl:
        raise UserError("--metric perplexity needs perplexity: drop --no-ppl")
    (ref,) = resolve_refs(hub, ckpt)
    if ref.branch == "main":
        raise UserError("--ckpt names main itself: gate a run branch into main")
    if objective_of(hub, ref) == "mlm" and metric != "perplexity":
        raise UserError(f"--metric {metric}: {ref.short} is a masked-LM checkpoint (objective mlm), which has no "
                        "pass@k: gate it with --metric perplexity (masked-LM perplexity)")
    report = Path(report or (cfg.output_dir or Path("eval")) / f"gate-{ref.branch.replace('/', '_')}.md")
    main_sha = main_checkpoint(hub)
    if main_sha == ref.commit:
        return GateResult(ref.branch, ref.commit, main_sha, False, "main already holds this checkpoint")
    if main_sha is None:
        evaluate_checkpoints(hub, [ref], cfg, nested=True)
        reason = "main holds no checkpoint yet"
        new = hub.merge_into_main(ref.branch, ref.commit, f"gate: merge {ref.short} ({reason})")
        write_report(report, ref.branch, ref.commit, None, None, margin, True, reason)
        return GateResult(ref.branch, ref.commit, None, True, reason, None, new, report)
    main_ref = CheckpointRef(hub.url, "main", main_sha)
    kind_branch, kind_main = objective_of(hub, ref), objective_of(hub, main_ref)
    if kind_branch != kind_main:
        raise UserError(f"main holds a {KINDS[kind_main]} checkpoint and {ref.short} a {KINDS[kind_branch]} one: their "
                        "metrics are not comparable; gate the run into a hub (or main) of its own kind")
    summaries = evaluate_checkpoints(hub, [ref, main_ref], cfg, nested=True)
    name = split_metric(metric)[1]
    pick = names.index(suite_name) if suite_name is not None else 0
    per_ref = 1 if kind_branch == "mlm" else len(names)  # an MLM checkpoint has one summary, not one per suite
    pick = 0 if kind_branch == "mlm" else pick
    branch_s, main_s = summaries[pick], summaries[per_ref + pick]  # (checkpoint, suite) in that order
    cmp = compare(name, Path(main_s.output_dir), Path(branch_s.output_dir))
    if suite_name is not None:
        cmp = replace(cmp, metric=metric)
    merged = decide(cmp, margin)
    new = None
    if merged:
        reason = f"{cmp.metric} does not regress by more than the margin"
        new = hub.merge_into_main(ref.branch, ref.commit, f"gate: merge {ref.short} ({cmp.metric} {cmp.delta:+.4f})")
    else:
        reason = f"{cmp.metric} regresses by more than the margin"
    write_report(report, ref.branch, ref.commit, main_sha, cmp, margin, merged, reason)
    return GateResult(ref.branch, ref.commit, main_sha, merged, reason, cmp, new, report)
