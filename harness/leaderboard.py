"""results/leaderboard.csv: one row per (repo, branch, commit, suite, generation parameters), upserted atomically;
plus a markdown table and a PNG of perplexity and pass@k against training step, one line per branch."""
from __future__ import annotations

import csv
import fcntl
import io
import os
from datetime import datetime, timezone
from pathlib import Path

from common import atomic
from common.errors import UserError
from harness.summary import Summary

KEY = ("repo", "branch", "commit", "suite_hash", "n", "temperature", "top_p", "max_new_tokens", "seed", "oracle")
BASE_COLUMNS = ["repo", "branch", "commit", "step", "tokens", "parameters", "suite", "suite_hash", "perplexity",
                "bits_per_byte"]
TAIL_COLUMNS = ["n", "temperature", "top_p", "max_new_tokens", "seed", "sandbox", "oracle", "date"]
DEFAULT_PATH = Path("results") / "leaderboard.csv"


def portable_repo(repo: str, board: Path) -> str:
    """A local hub by its path relative to the leaderboard file (no machine's absolute path gets published);
    hf:// ids and model folders as they are."""
    if repo and os.path.isabs(repo):
        return os.path.relpath(repo, Path(board).resolve().parent)
    return repo


def row_from_summary(s: Summary, board: Path) -> dict:
    g = s.generation
    row = {"repo": portable_repo(s.repo, board), "branch": s.branch, "commit": s.commit, "step": s.step,
           "tokens": s.tokens_seen, "parameters": s.parameters, "suite": s.suite,
           "suite_hash": s.suite_hash, "perplexity": s.perplexity, "bits_per_byte": s.bits_per_byte,
           "n": g["n"], "temperature": g["temperature"], "top_p": g["top_p"], "max_new_tokens": g["max_new_tokens"],
           "seed": g["seed"], "sandbox": s.sandbox, "oracle": s.oracle,
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for k, est in sorted(s.pass_at_k.items()):
        row[f"pass@{k}"] = est.value
        row[f"pass@{k}_stderr"] = est.stderr
    return row


def column_k(name: str) -> int | None:
    """`pass@10` -> 10; any other column (`pass@10_stderr` included) -> None. The one parser of pass@k columns."""
    head, at, k = name.partition("@")
    return int(k) if head == "pass" and at and k.isdigit() else None


def reported_ks(rows: list[dict]) -> list[int]:
    """The k of every pass@k that at least one row reports."""
    return sorted({k for r in rows for c, v in r.items() if (k := column_k(c)) is not None and v not in ("", None)})


def _columns(rows: list[dict]) -> list[str]:
    ks = reported_ks(rows)
    pass_cols = [c for k in ks for c in (f"pass@{k}", f"pass@{k}_stderr")]
    return BASE_COLUMNS + pass_cols + TAIL_COLUMNS


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.setdefault("oracle", "inline")  # leaderboards written before the isolated oracle existed
    if rows and not set(KEY) <= set(rows[0]):
        raise UserError(f"{path} is not a harness leaderboard (missing columns {sorted(set(KEY) - set(rows[0]))})")
    return rows


def _key(row: dict) -> tuple:
    return tuple(str(row.get(k, "")) for k in KEY)


def _write(path: Path, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: (r["repo"], r["branch"], float(r.get("step") or 0), r["commit"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    atomic.write_text(path, buf.getvalue())


def upsert(path: Path, row: dict) -> None:
    """Replaces the row with the same key, or adds it; concurrent evaluations serialise on a lock file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = [r for r in read(path) if _key(r) != _key(row)]
        rows.append({k: str(v) if v is not None else "" for k, v in row.items()})
        _write(path, rows)


def publish(source: Path, out: Path) -> dict:
    """Re-writes the CSV at `out` (sorted), and writes `out`.md and `out`.png beside it."""
    rows = read(Path(source))
    if not rows:
        raise UserError(f"{source} holds no results yet: run `harness eval --ckpt BRANCH` first")
    out = Path(out)
    _write(out, rows)
    md_path, png_path = out.with_suffix(".md"), out.with_suffix(".png")
    atomic.write_text(md_path, markdown(rows) + "\n")
    plot(rows, png_path)
    return {"csv": str(out), "markdown": str(md_path), "plot": str(png_path), "rows": len(rows)}


def _fmt(v, pct=False):
    if v in ("", None):
        return "-"
    x = float(v)
    return f"{100 * x:.2f}" if pct else f"{x:.3f}"


def markdown(rows: list[dict]) -> str:
    from tabulate import tabulate

    ks = reported_ks(rows)
    table = []
    for r in rows:
        line = [r["branch"], r["commit"][:10], r.get("step") or "-", r["suite"], _fmt(r.get("perplexity")),
                _fmt(r.get("bits_per_byte"))]
        for k in ks:
            v, se = r.get(f"pass@{k}"), r.get(f"pass@{k}_stderr")
            line.append("-" if v in ("", None) else f"{_fmt(v, True)} ± {_fmt(se, True)}")
        line += [r["n"], r["temperature"]]
        table.append(line)
    head = ["branch", "commit", "step", "suite", "perplexity", "bits/byte"] + [f"pass@{k} (%)" for k in ks] + ["n", "T"]
    return tabulate(table, headers=head, tablefmt="github")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = reported_ks(rows)
    fig, axes = plt.subplots(1, 1 + len(ks), figsize=(5 * (1 + len(ks)), 4), squeeze=False)
    axes = axes[0]
    branches = sorted({(r["repo"], r["branch"]) for r in rows})
    suites = sorted({r["suite"] for r in rows})
    for repo, branch in branches:
        mine = [r for r in rows if r["repo"] == repo and r["branch"] == branch and r.get("step") not in ("", None)]
        mine.sort(key=lambda r: float(r["step"]))
        label = branch if len({b for _, b in branches}) == len(branches) else f"{branch} ({repo})"
        # perplexity does not depend on the suite: one point per step even when several suites were scored
        ppl = {float(r["step"]): float(r["perplexity"]) for r in mine if r.get("perplexity") not in ("", None)}
        if ppl:
            axes[0].plot(list(ppl), list(ppl.values()), marker="o", label=label)
        for suite in suites:
            of_suite = [r for r in mine if r["suite"] == suite]
            for ax, k in zip(axes[1:], ks):
                pts = [(float(r["step"]), 100 * float(r[f"pass@{k}"]), 100 * float(r[f"pass@{k}_stderr"] or 0))
                       for r in of_suite if r.get(f"pass@{k}") not in ("", None)]
                if pts:
                    xs, ys, es = zip(*pts)
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3,
                                label=label if len(suites) == 1 else f"{label} · {suite}")
    axes[0].set(title="validation perplexity", xlabel="training step", ylabel="perplexity")
    axes[0].set_yscale("log")
    for ax, k in zip(axes[1:], ks):
        what = suites[0] if len(suites) == 1 else "each suite"
        ax.set(title=f"pass@{k} on {what} (± s.e.)", xlabel="training step", ylabel="%")
        ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))  # a flat 0 reads as 0, not as noise around an axis
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
