"""Declared shapes that cross packages: TrainingState, Summary, EvalConfig; each rejects bad input in one line."""
import json

import pytest

from checkpoint_hub import TrainingState
from common.errors import UserError
from harness.config import EvalConfig, GenParams, SandboxConfig
from harness.summary import Summary
from tasks.passk import PassK


def test_training_state_round_trip_and_unknown_fields_ignored():
    st = TrainingState(step=8, run="r", tokens=1024, train_loss=2.5, seq_length=128, corpus="/c")
    back = TrainingState.from_json(json.dumps({**st.to_json(), "added_later": 1}), "f")
    assert back == st


@pytest.mark.parametrize("raw, says", [
    ("{not json", "is corrupt (not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"tokens": 5}', "has no 'step'"),
    ('{"step": "eight"}', "field 'step' should be int"),
    ('{"step": 8, "seq_length": 1.5}', "field 'seq_length' should be int"),
    ('{"step": 8, "corpus": 7}', "field 'corpus' should be str"),
    ('{"step": 8, "seq_length": 1}', "not a usable context length"),
])
def test_corrupt_training_state_names_the_file(raw, says):
    with pytest.raises(UserError) as err:
        TrainingState.from_json(raw, "run@abc:training_state.json")
    assert "run@abc:training_state.json" in str(err.value) and says in str(err.value)


def test_summary_round_trips_pass_at_k_keyed_by_int(tmp_path):
    s = Summary(suite="humaneval", suite_hash="h", samples=20, timeout_s=3.0, sandbox="docker", harness_version="x",
                pass_at_k={1: PassK(0.25, 0.05, 10), 10: PassK(0.5, 0.1, 10)}, branch="b", commit="c" * 40)
    s.write(tmp_path / "summary.json")
    raw = json.loads((tmp_path / "summary.json").read_text())
    assert raw["pass_at_k"] == {"1": {"value": 0.25, "stderr": 0.05, "problems": 10},
                                "10": {"value": 0.5, "stderr": 0.1, "problems": 10}}
    assert Summary.load(tmp_path / "summary.json") == s


def test_a_file_that_is_not_a_summary_is_one_line(tmp_path):
    (tmp_path / "s.json").write_text('{"suite": "x"}')
    with pytest.raises(UserError, match="is not a harness summary"):
        Summary.load(tmp_path / "s.json")
    (tmp_path / "t.json").write_text("{")
    with pytest.raises(UserError, match="unreadable"):
        Summary.load(tmp_path / "t.json")


@pytest.mark.parametrize("make, says", [
    (lambda: SandboxConfig(timeout=0), "--timeout must be positive"),
    (lambda: SandboxConfig(workers=0), "--workers must be at least 1"),
    (lambda: SandboxConfig(memory_mb=10), "--memory-mb must be at least"),
    (lambda: GenParams(n=0), "generation needs --n >= 1"),
    (lambda: GenParams(top_p=0), "0 < --top-p <= 1"),
    (lambda: EvalConfig(gen_batch_size=0), "--gen-batch-size"),
])
def test_configs_reject_bad_values(make, says):
    with pytest.raises(UserError, match=says.replace("+", r"\+")):
        make()


def test_eval_config_from_the_cli_arguments():
    from harness.cli import build_parser

    args = build_parser().parse_args(["eval", "--ckpt", "r", "--k", "10,1", "--n", "3", "--timeout", "5",
                                      "--no-leaderboard", "--limit", "4"])
    cfg = EvalConfig.from_args(args)
    assert cfg.ks == (1, 10) and cfg.gen.n == 3 and cfg.sandbox.timeout == 5.0 and cfg.leaderboard is None
    assert cfg.limit == 4 and cfg.ppl


def test_gen_params_key_is_stable():
    """The generation cache is keyed by it: the key of the defaults must not drift between releases."""
    assert GenParams().key() == GenParams(n=10, temperature=0.2, top_p=0.95, max_new_tokens=128, seed=0).key()
    assert GenParams(seed=1).key() != GenParams().key()
