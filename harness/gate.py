"""`harness gate`: merge a run into main only if its metric does not regress, judged with a paired bootstrap."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness import atomic
from harness.passk import estimate_pass_at_k
from harness.types import UserError

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


def compare(metric: str, main_dir: Path, branch_dir: Path) -> dict:
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
        return {"metric": metric, "main": float(main_v.mean()), "branch": float(branch_v.mean()), "delta": point,
                "ci95": [lo, hi], "higher_is_better": True, "paired_over": f"{len(tasks)} problems"}
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
        return {"metric": metric, "main": pa["perplexity"], "branch": pb["perplexity"], "delta": point,
                "ci95": [lo, hi], "higher_is_better": False, "paired_over": over}
    raise UserError(f"unknown gate metric {metric!r}: use pass@1, pass@10 (any pass@k) or perplexity")


def decide(cmp: dict, margin: float) -> bool:
    """Merge unless the point estimate is worse than main by more than the margin."""
    if cmp["higher_is_better"]:
        return cmp["delta"] >= -margin
    return cmp["delta"] <= margin


def write_report(path: Path, branch: str, branch_commit: str, main_commit: str | None, cmp: dict | None,
                 margin: float, merged: bool, reason: str) -> None:
    lines = [f"# Gate: `{branch}` into `main`", "",
             f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"- branch head: `{branch_commit}`",
             f"- main head: `{main_commit or '(no checkpoint yet)'}`",
             f"- decision: **{'merged' if merged else 'blocked'}** ({reason})", ""]
    if cmp:
        scale = 100 if cmp["metric"].startswith("pass@") else 1
        unit = " (%)" if scale == 100 else ""
        lines += [f"| metric | main | branch | delta (branch - main) | 95% CI (paired bootstrap, {cmp['paired_over']}) | margin |",
                  "|---|---|---|---|---|---|",
                  f"| {cmp['metric']}{unit} | {scale * cmp['main']:.3f} | {scale * cmp['branch']:.3f} | "
                  f"{scale * cmp['delta']:+.3f} | [{scale * cmp['ci95'][0]:+.3f}, {scale * cmp['ci95'][1]:+.3f}] | "
                  f"{scale * margin:.3f} |", ""]
    atomic.write_text(path, "\n".join(lines))
