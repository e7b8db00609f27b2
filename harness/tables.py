"""The tables people read on the terminal: one evaluation's pass@k, and a row per checkpoint."""
from __future__ import annotations

from harness.summary import Summary


def pct(est) -> str:
    return f"{100 * est.value:.2f} ± {100 * est.stderr:.2f}"


def format_summary(summary: Summary) -> str:
    from tabulate import tabulate

    rows = [[f"pass@{k}", f"{100 * est.value:.2f}%", f"± {100 * est.stderr:.2f}"]
            for k, est in sorted(summary.pass_at_k.items())]
    head = (f"{summary.suite} (hash {summary.suite_hash}): {len(summary.tasks_scored)} tasks, "
            f"{summary.samples} samples, sandbox {summary.sandbox}")
    counts = ", ".join(f"{k}: {v}" for k, v in summary.result_counts.items())
    text = head + "\n" + tabulate(rows, headers=["metric", "value", "std. error"], tablefmt="github")
    text += f"\nresults: {counts}"
    for note in summary.notes:
        text += f"\nnote: {note}"
    return text


def format_checkpoint_table(summaries: list[Summary]) -> str:
    from tabulate import tabulate

    ks = sorted({k for s in summaries for k in s.pass_at_k})
    rows = []
    for s in summaries:
        row = [s.branch, (s.commit or "")[:10], s.step, s.suite,
               f"{s.perplexity:.2f}" if s.perplexity is not None else "-",
               f"{s.bits_per_byte:.3f}" if s.bits_per_byte is not None else "-"]
        row += [pct(s.pass_at_k[k]) if k in s.pass_at_k else "-" for k in ks]
        rows.append(row)
    head = ["branch", "commit", "step", "suite", "perplexity", "bits/byte"] + [f"pass@{k} (%)" for k in ks]
    return tabulate(rows, headers=head, tablefmt="github")
