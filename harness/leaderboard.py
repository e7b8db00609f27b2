"""results/leaderboard.csv: one row per (repo, branch, commit, suite, generation parameters), upserted atomically;
plus a markdown table and a PNG of perplexity and pass@k against training step, one line per branch."""
from __future__ import annotations

import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from common import atomic
from common.errors import UserError
from harness.summary import Summary

KEY = ("repo", "branch", "commit", "suite_hash", "n", "temperature", "top_p", "max_new_tokens", "seed", "oracle",
       "prompting")
BASE_COLUMNS = ["repo", "branch", "commit", "step", "tokens", "parameters", "objective", "suite", "suite_label",
                "suite_hash", "decontaminated", "perplexity", "bits_per_byte"]
TAIL_COLUMNS = ["n", "temperature", "top_p", "max_new_tokens", "seed", "sandbox", "oracle", "prompting", "date"]
# columns older leaderboards lack, and what their rows were
DEFAULTS = {"oracle": "inline", "objective": "clm", "decontaminated": "", "prompting": "completion", "suite_label": ""}
DEFAULT_PATH = Path("results") / "leaderboard.csv"


def portable_repo(repo: str, board: Path, name: str | None = None) -> str:
    """How a row names its hub: the name given (--name); else a local hub by its path relative to the leaderboard
    file (no machine's absolute path gets published); hf:// ids and model folder names as they are."""
    if name:
        return name
    if repo and os.path.isabs(repo):
        return os.path.relpath(repo, Path(board).resolve().parent)
    return repo


def served_name(model: str) -> str:
    """A served model as a row names it: its name, or for a model served from a folder the folder's name (no
    machine's absolute path gets published)."""
    return Path(model.rstrip("/")).name if os.path.isabs(model) else model


def row_from_summary(s: Summary, board: Path, name: str | None = None) -> dict:
    g = s.generation or {}
    if s.endpoint:  # a served model: no hub, no commit; the row names the model (and --name, the repo column)
        repo, branch = name or "served", served_name(s.served_model or "")
    else:
        repo, branch = portable_repo(s.repo, board, name), s.branch
    row = {"repo": repo, "branch": branch, "commit": s.commit, "step": s.step,
           "tokens": s.tokens_seen, "parameters": s.parameters, "objective": s.objective, "suite": s.suite,
           "suite_label": s.suite_label, "suite_hash": s.suite_hash,
           "decontaminated": {True: "yes", False: "no"}.get(s.decontaminated, ""),
           "perplexity": s.perplexity, "bits_per_byte": s.bits_per_byte,
           "n": g.get("n"), "temperature": g.get("temperature"), "top_p": g.get("top_p"),
           "max_new_tokens": g.get("max_new_tokens"), "seed": g.get("seed"), "sandbox": s.sandbox, "oracle": s.oracle,
           "prompting": s.prompting, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for k, est in sorted(s.pass_at_k.items()):
        row[f"pass@{k}"] = est.value
        row[f"pass@{k}_stderr"] = est.stderr
    for group, table in s.pass_at_k_by_group.items():  # DS-1000's per-library columns, as its paper reports them
        for k, est in sorted(table.items()):
            row[f"{group} pass@{k}"] = est.value
    return row


def column_k(name: str) -> int | None:
    """`pass@10` -> 10; any other column (`pass@10_stderr` included) -> None. The one parser of pass@k columns."""
    head, at, k = name.partition("@")
    return int(k) if head == "pass" and at and k.isdigit() else None


def reported_ks(df: pd.DataFrame) -> list[int]:
    """The k of every pass@k that at least one row reports."""
    return sorted(k for c in df.columns if (k := column_k(c)) is not None and (df[c] != "").any())


def _columns(df: pd.DataFrame) -> list[str]:
    pass_cols = [c for k in reported_ks(df) for c in (f"pass@{k}", f"pass@{k}_stderr")]
    known = BASE_COLUMNS + pass_cols + TAIL_COLUMNS
    return known + sorted(c for c in df.columns if c not in known and column_k(c.removesuffix("_stderr")) is None)


def read(path: Path) -> pd.DataFrame:
    """The leaderboard as text cells (a commit or a hash must never become a number); '' where empty."""
    if not Path(path).exists():
        return pd.DataFrame(columns=BASE_COLUMNS + TAIL_COLUMNS, dtype=str)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]}): fix or remove it")
    for col, default in DEFAULTS.items():
        if col not in df.columns:
            df[col] = default
    missing = sorted(set(KEY) - set(df.columns))
    if missing:
        raise UserError(f"{path} is not a harness leaderboard (missing columns {missing})")
    return df


def _cells(row: dict) -> dict:
    return {k: "" if v is None else str(v) for k, v in row.items()}


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    step = pd.to_numeric(df["step"], errors="coerce").fillna(0)
    return (df.assign(_step=step).sort_values(["repo", "branch", "_step", "commit", "suite"], kind="stable")
            .drop(columns="_step").reset_index(drop=True))


def _write(path: Path, df: pd.DataFrame) -> None:
    df = _sorted(df.fillna(""))
    atomic.write_text(path, df.reindex(columns=_columns(df), fill_value="").to_csv(index=False, lineterminator="\n"))


def upsert(path: Path, row: dict) -> None:
    """Replaces the row with the same key, or adds it; concurrent evaluations serialise on a lock file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = pd.DataFrame([{**DEFAULTS, **_cells(row)}], dtype=str)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        df = read(path)
        if len(df):
            same = (df[list(KEY)] == new[list(KEY)].reindex(columns=list(KEY), fill_value="").iloc[0]).all(axis=1)
            df = df[~same]
        _write(path, pd.concat([df, new], ignore_index=True) if len(df) else new)


def publish(source: Path, out: Path) -> dict:
    """Re-writes the CSV at `out` (sorted), and writes `out`.md and `out`.png beside it."""
    df = read(Path(source))
    if df.empty:
        raise UserError(f"{source} holds no results yet: run `harness eval --ckpt BRANCH` first")
    out = Path(out)
    _write(out, df)
    md_path, png_path = out.with_suffix(".md"), out.with_suffix(".png")
    atomic.write_text(md_path, markdown(df) + "\n")
    plot(df, png_path)
    return {"csv": str(out), "markdown": str(md_path), "plot": str(png_path), "rows": len(df)}


def _num(col: pd.Series) -> pd.Series:
    return pd.to_numeric(col, errors="coerce")


def shown_suite(df: pd.DataFrame) -> pd.Series:
    """The suite as people read it: its label where the row has one (`mbppplus (rebuilt v0.2.0)`), else its name."""
    return df["suite_label"].where(df["suite_label"] != "", df["suite"])


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The table people read: short commits, rounded numbers, pass@k in % with its standard error."""
    df = _sorted(df)
    view = pd.DataFrame({"repo": df["repo"], "branch": df["branch"], "commit": df["commit"].str[:10],
                         "step": df["step"].replace("", "-"), "objective": df["objective"],
                         "suite": shown_suite(df),
                         "decontaminated": df["decontaminated"].replace("", "-"),
                         "perplexity": _num(df["perplexity"]).map(lambda x: "-" if pd.isna(x) else f"{x:.3f}"),
                         "bits/byte": _num(df["bits_per_byte"]).map(lambda x: "-" if pd.isna(x) else f"{x:.3f}")})
    for k in reported_ks(df):
        v, se = _num(df[f"pass@{k}"]), _num(df[f"pass@{k}_stderr"]).fillna(0)
        view[f"pass@{k} (%)"] = [("-" if pd.isna(a) else f"{100 * a:.2f} ± {100 * b:.2f}") for a, b in zip(v, se)]
    view["n"], view["T"], view["oracle"] = df["n"], df["temperature"], df["oracle"]
    if view["repo"].nunique() == 1:
        view = view.drop(columns="repo")
    return view


def markdown(df: pd.DataFrame) -> str:
    return display_frame(df).to_markdown(index=False, tablefmt="github", disable_numparse=True)


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = reported_ks(df)
    fig, axes = plt.subplots(1, 1 + len(ks), figsize=(5 * (1 + len(ks)), 4), squeeze=False)
    axes = axes[0]
    num = df.assign(step=_num(df["step"]), perplexity=_num(df["perplexity"]), suite=shown_suite(df),
                    **{c: _num(df[c]) for k in ks for c in (f"pass@{k}", f"pass@{k}_stderr")}).dropna(subset=["step"])
    suites = sorted(num["suite"].unique())
    several_repos = df.groupby("branch")["repo"].nunique().max() > 1 if len(df) else False
    for (repo, branch), mine in num.sort_values("step").groupby(["repo", "branch"], sort=True):
        label = f"{branch} ({repo})" if several_repos else branch
        # perplexity does not depend on the suite: one point per step even when several suites were scored
        ppl = mine.dropna(subset=["perplexity"]).drop_duplicates("step")
        if len(ppl):
            axes[0].plot(ppl["step"], ppl["perplexity"], marker="o", label=label)
        for suite, of_suite in mine.groupby("suite", sort=True):
            for ax, k in zip(axes[1:], ks):
                pts = of_suite.dropna(subset=[f"pass@{k}"])
                if len(pts):
                    ax.errorbar(pts["step"], 100 * pts[f"pass@{k}"], yerr=100 * pts[f"pass@{k}_stderr"].fillna(0),
                                marker="o", capsize=3, label=label if len(suites) == 1 else f"{label} · {suite}")
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
