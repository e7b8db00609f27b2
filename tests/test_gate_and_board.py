"""Pure parts of the gate (paired bootstrap, decision) and of the leaderboard (upsert): no model, no engine."""
import csv

import numpy as np
import pandas as pd
import pytest

from common.errors import UserError
from harness import leaderboard
from harness.gate import Comparison, GateResult, check_metric, decide, paired_bootstrap


def mean(v, i):
    return v[i].mean()


def test_paired_bootstrap_of_identical_runs_is_exactly_zero():
    v = np.random.default_rng(1).random(50)
    point, lo, hi = paired_bootstrap(v, v.copy(), mean)
    assert point == lo == hi == 0.0


def test_paired_bootstrap_interval_covers_a_known_shift():
    rng = np.random.default_rng(2)
    main = rng.random(200)
    branch = main + 0.1 + rng.normal(0, 0.01, 200)
    point, lo, hi = paired_bootstrap(main, branch, mean)
    assert point == pytest.approx(0.1, abs=0.005) and lo < 0.1 < hi and hi - lo < 0.01  # pairing: a tight interval


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(3)
    a, b = rng.random(30), rng.random(30)
    assert paired_bootstrap(a, b, mean, seed=5) == paired_bootstrap(a, b, mean, seed=5)


def cmp(delta, higher=True):
    return Comparison("pass@1" if higher else "perplexity", 0.5, 0.5 + delta, delta, (delta - 0.1, delta + 0.1),
                      higher, "10 problems")


def test_decision_respects_direction_and_margin():
    assert decide(cmp(0.0), 0.0) and decide(cmp(0.01), 0.0) and not decide(cmp(-0.01), 0.0)
    assert decide(cmp(-0.01), 0.02)
    assert decide(cmp(-1.0, higher=False), 0.0) and not decide(cmp(1.0, higher=False), 0.5)
    assert decide(cmp(0.4, higher=False), 0.5)


def test_gate_result_exit_codes():
    assert GateResult("b", "c", None, True, "first").exit_code == 0
    assert GateResult("b", "c", "m", False, "worse").exit_code == 1
    assert GateResult("b", "c", "c", False, "already").exit_code == 0


@pytest.mark.parametrize("metric", ["pass@0", "pass@x", "accuracy", "pass@"])
def test_unknown_metric_is_a_user_error(metric):
    with pytest.raises(UserError, match="unknown gate metric"):
        check_metric(metric)


def row(commit, step, p1, **kw):
    return {"repo": "hub", "branch": "run", "commit": commit, "step": step, "suite": "humaneval", "suite_hash": "h",
            "n": 10, "temperature": 0.2, "top_p": 0.95, "max_new_tokens": 128, "seed": 0, "sandbox": "docker",
            "pass@1": p1, "pass@1_stderr": 0.01, **kw}


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_upsert_replaces_same_key_adds_new_and_sorts_by_step(tmp_path):
    board = tmp_path / "b.csv"
    leaderboard.upsert(board, row("c2", 20, 0.2))
    leaderboard.upsert(board, row("c1", 10, 0.1))
    leaderboard.upsert(board, row("c2", 20, 0.3))  # same key: replaced, not duplicated
    rows = read(board)
    assert [(r["commit"], r["pass@1"]) for r in rows] == [("c1", "0.1"), ("c2", "0.3")]
    leaderboard.upsert(board, row("c2", 20, 0.3, seed=1))  # other generation parameters: a row of its own
    assert len(read(board)) == 3
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_pass_at_k_columns_are_parsed_one_way():
    assert leaderboard.column_k("pass@10") == 10 and leaderboard.column_k("pass@10_stderr") is None
    assert leaderboard.column_k("perplexity") is None
    df = pd.DataFrame([{"pass@1": "0.1", "pass@100": "", "pass@10": ""}, {"pass@1": "", "pass@100": "", "pass@10": "0.2"}])
    assert leaderboard.reported_ks(df) == [1, 10]


def test_board_markdown_and_plot_come_from_the_frame(tmp_path):
    board = tmp_path / "b.csv"
    leaderboard.upsert(board, row("c1" * 20, 10, 0.1, perplexity=12.5))
    leaderboard.upsert(board, row("c2" * 20, 20, 0.25, perplexity=9.0))
    leaderboard.upsert(board, {**row("m1" * 20, 5, None, perplexity=7.25, objective="mlm"), "branch": "mlm-run",
                               "pass@1_stderr": None})
    out = leaderboard.publish(board, tmp_path / "pub" / "leaderboard.csv")
    md = (tmp_path / "pub" / "leaderboard.md").read_text()
    assert "| branch" in md and "25.00 ± 1.00" in md and "c1c1c1c1c1 " in md and "12.500" in md
    mlm_line = next(line for line in md.splitlines() if "mlm-run" in line)
    assert "| mlm " in mlm_line and "7.250" in mlm_line and "| -" in mlm_line  # no pass@k: '-', not 0
    assert out["rows"] == 3 and (tmp_path / "pub" / "leaderboard.png").stat().st_size > 10_000
    df = pd.read_csv(out["csv"], dtype=str, keep_default_na=False)
    assert list(df["commit"]) == ["m1" * 20, "c1" * 20, "c2" * 20]  # repo, branch, then step order


def test_a_suite_label_is_what_summary_and_board_show(tmp_path):
    """A rebuilt release is named as such (`mbppplus (rebuilt v0.2.0)`) wherever people read it; the suite key stays."""
    from harness.summary import Summary
    from harness.tables import format_summary
    from tasks.passk import PassK

    s = Summary(suite="mbppplus[:3]", suite_label="mbppplus (rebuilt v0.2.0)[:3]", suite_hash="h", samples=3,
                timeout_s=3.0, sandbox="docker", harness_version="x", pass_at_k={1: PassK(0.5, 0.1, 3)},
                repo="hub", branch="run", commit="c" * 40, step=1, generation={"n": 1, "temperature": 0.0})
    assert Summary.from_json(s.to_json()).suite_label == s.suite_label
    assert format_summary(s).startswith("mbppplus (rebuilt v0.2.0)[:3] (hash h)")
    board = tmp_path / "b.csv"
    leaderboard.upsert(board, row("c1" * 20, 10, 0.1))  # a row without a label: its suite name is shown
    leaderboard.upsert(board, leaderboard.row_from_summary(s, board))
    df = leaderboard.read(board)
    labels = dict(zip(df["suite"], df["suite_label"]))
    assert labels == {"humaneval": "", "mbppplus[:3]": "mbppplus (rebuilt v0.2.0)[:3]"}
    md = leaderboard.markdown(df)
    assert "| mbppplus (rebuilt v0.2.0)[:3] |" in md and "| humaneval " in md


def test_rows_name_the_hub_portably(tmp_path):
    board = tmp_path / "results" / "leaderboard.csv"
    assert leaderboard.portable_repo(str(tmp_path / "hubs" / "a"), board) == "../hubs/a"
    assert leaderboard.portable_repo(str(tmp_path / "hubs" / "a"), board, name="team/a") == "team/a"
    assert leaderboard.portable_repo("hf://org/model", board) == "hf://org/model"


def test_an_unreadable_csv_is_one_line(tmp_path):
    (tmp_path / "x.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match="not a readable CSV|not a harness leaderboard"):
        leaderboard.read(tmp_path / "x.csv")


def test_a_csv_that_is_not_a_leaderboard_is_refused(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not a harness leaderboard"):
        leaderboard.read(tmp_path / "x.csv")


def test_gate_under_accelerate_launch_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    from checkpoint_hub import open_hub
    from harness.cli import main

    open_hub(str(tmp_path / "hub"), create=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["gate", "--repo", str(tmp_path / "hub"), "--ckpt", "run", "--sandbox", "process"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs in one process" in err[0] and "WORLD_SIZE=2" in err[0]
