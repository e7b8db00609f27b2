"""The tables people read on the terminal: one evaluation's pass@k, and a row per checkpoint (pandas frames).

`format_summary` is the exception: it ends every `harness eval --samples`, and importing pandas (0.7 s here) would
be a sixth of that whole command, so its few lines are formatted directly.
"""
from __future__ import annotations

from harness.summary import Summary


def pct(est) -> str:
    return f"{100 * est.value:.2f} ± {100 * est.stderr:.2f}"


def _markdown(df) -> str:
    return df.to_markdown(index=False, tablefmt="github", disable_numparse=True)


def format_summary(summary: Summary) -> str:
    head = (f"{summary.suite_label or summary.suite} (hash {summary.suite_hash}): {len(summary.tasks_scored)} tasks, "
            f"{summary.samples} samples, sandbox {summary.sandbox}")
    text = head
    if summary.pass_at_k:
        text += "\n| metric   | value   | std. error   |\n|----------|---------|--------------|"
        for k, est in sorted(summary.pass_at_k.items()):
            text += f"\n| {f'pass@{k}':<8} | {f'{100 * est.value:.2f}%':<7} | {f'± {100 * est.stderr:.2f}':<12} |"
    if summary.pass_at_k_by_group:
        ks = sorted({k for t in summary.pass_at_k_by_group.values() for k in t})
        text += "\n| " + " | ".join(["group", "problems"] + [f"pass@{k}" for k in ks]) + " |"
        text += "\n|" + "|".join(["---"] * (2 + len(ks))) + "|"
        for g, t in summary.pass_at_k_by_group.items():
            problems = next(iter(t.values())).problems if t else 0
            text += "\n| " + " | ".join([g, str(problems)] + [f"{100 * t[k].value:.2f}%" if k in t else "-"
                                                                for k in ks]) + " |"
    if summary.result_counts:
        text += "\nresults: " + ", ".join(f"{k}: {v}" for k, v in summary.result_counts.items())
    for note in summary.notes:
        text += f"\nnote: {note}"
    return text


def checkpoint_frame(summaries: list[Summary]):
    import pandas as pd

    ks = sorted({k for s in summaries for k in s.pass_at_k})
    rows = []
    for s in summaries:
        row = {"branch": s.branch, "commit": (s.commit or "")[:10], "step": s.step, "objective": s.objective,
               "suite": s.suite_label or s.suite or "-",
               "perplexity": f"{s.perplexity:.2f}" if s.perplexity is not None else "-",
               "bits/byte": f"{s.bits_per_byte:.3f}" if s.bits_per_byte is not None else "-"}
        for k in ks:
            row[f"pass@{k} (%)"] = pct(s.pass_at_k[k]) if k in s.pass_at_k else "-"
        rows.append(row)
    df = pd.DataFrame(rows)
    if len(df) and (df["objective"] == "clm").all():
        df = df.drop(columns="objective")
    return df


def format_checkpoint_table(summaries: list[Summary]) -> str:
    return _markdown(checkpoint_frame(summaries))
