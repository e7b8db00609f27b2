"""`harness eval --ckpt`, `gate`, `leaderboard` end to end on a real tiny checkpoint, real hub, real Docker sandbox."""
import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import TINY_ARGS, require_docker
from harness.cli import main as harness_main
from harness.generate import GenParams, generate, prepare_prompt, truncate_at_stop
from harness.summary import Summary
from checkpoint_hub import open_hub
from pretrain.cli import main as pretrain_main

EVAL = ["--limit", "6", "--n", "4", "--k", "1,2", "--ppl-max-tokens", "8192", "--max-new-tokens", "48"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "harness-cache"))


def run(*argv):
    return harness_main([str(a) for a in argv])


def test_eval_ckpt_end_to_end_then_fully_cached(tiny_run, tmp_path, capsys):
    require_docker()
    board = tmp_path / "board.csv"
    out = tmp_path / "out"
    argv = ["eval", "--repo", tiny_run["repo"], "--ckpt", "tiny-run", *EVAL, "--output-dir", out, "--leaderboard", board]
    assert run(*argv) == 0
    summary = Summary.load(out / "summary.json")
    hub = open_hub(str(tiny_run["repo"]))
    assert summary.commit == hub.resolve("tiny-run") and summary.branch == "tiny-run"
    assert summary.step == 24 and summary.tokens_seen == 24 * 8 * 128 and summary.parameters > 1_000_000
    assert 1 < summary.perplexity < 2048 and 0 < summary.bits_per_byte < 8
    assert summary.generation["n"] == 4 and summary.generation["temperature"] == 0.2
    assert 0 <= summary.pass_at_k[1].value <= 1 and summary.pass_at_k[2].stderr >= 0 and summary.samples == 24
    rows = [json.loads(l) for l in open(out / "results.jsonl")]
    assert len(rows) == 24 and {"task_id", "completion", "sample_index", "passed", "result"} <= set(rows[0])
    assert summary.generation_timing["generated_now"] == 24 and summary.timings["executed"] == 24
    assert summary.objective == "clm" and summary.decontaminated is True  # the corpus was, against every suite
    assert "not decontaminated" not in capsys.readouterr().err
    first = (out / "results.jsonl").read_text()
    # Again: nothing is generated or executed twice, and the results are the same.
    assert run(*argv) == 0
    again = Summary.load(out / "summary.json")
    assert again.generation_timing["generated_now"] == 0 and again.timings["executed"] == 0
    assert (out / "results.jsonl").read_text() == first
    with open(board) as f:
        board_rows = list(csv.DictReader(f))
    assert len(board_rows) == 1 and board_rows[0]["commit"] == summary.commit
    assert board_rows[0]["decontaminated"] == "yes" and board_rows[0]["objective"] == "clm"
    for col in ("repo", "branch", "commit", "step", "tokens", "parameters", "perplexity", "pass@1", "pass@1_stderr",
                "n", "temperature", "top_p", "suite_hash", "sandbox", "date"):
        assert col in board_rows[0]


def test_every_commit_gives_a_learning_curve(tiny_run, tmp_path, capsys):
    require_docker()
    assert run("eval", "--repo", tiny_run["repo"], "--ckpt", "tiny-run", "--every-commit", *EVAL,
               "--output-dir", tmp_path / "curve", "--leaderboard", tmp_path / "b.csv") == 0
    with open(tmp_path / "b.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [8, 16, 24]
    ppl = [float(r["perplexity"]) for r in rows]
    assert ppl[0] > ppl[1] > ppl[2], ppl
    out = capsys.readouterr().out
    assert "perplexity" in out and "pass@1 (%)" in out


def test_short_sha_and_unknown_refs(tiny_run, tmp_path, capsys):
    hub = open_hub(str(tiny_run["repo"]))
    first = hub.commits("tiny-run")[-2].sha  # step 8
    assert run("eval", "--repo", tiny_run["repo"], "--ckpt", f"tiny-run@{first[:7]}", "--sandbox", "process",
               *EVAL, "--output-dir", tmp_path / "o", "--no-leaderboard") == 0
    assert Summary.load(tmp_path / "o" / "summary.json").step == 8
    capsys.readouterr()
    assert run("eval", "--repo", tiny_run["repo"], "--ckpt", "no-such-run", *EVAL) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no branch 'no-such-run'" in err[0] and "tiny-run" in err[0]
    assert run("eval", "--repo", tiny_run["repo"], "--ckpt", "tiny-run@abcdef1", *EVAL) == 2
    assert "is not on branch 'tiny-run'; its commits:" in capsys.readouterr().err


def test_checkpoint_without_weights_and_corrupt_checkpoint(tiny_run, tmp_path, capsys):
    hub = open_hub(str(tiny_run["repo"]))
    good = hub.materialize(hub.resolve("tiny-run"))
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    (broken / "model.safetensors").unlink()
    hub.push("no-weights", broken, "step 1")
    assert run("eval", "--repo", tiny_run["repo"], "--ckpt", "no-weights", *EVAL, "--sandbox", "process") == 2
    assert "has no weights" in capsys.readouterr().err
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    hub.push("corrupt", broken, "step 1")
    assert run("eval", "--repo", tiny_run["repo"], "--ckpt", "corrupt", *EVAL, "--sandbox", "process") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: checkpoint corrupt@") and "is corrupt" in err[-1]


def test_results_dir_of_another_suite_is_never_mixed(tiny_run, tmp_path, capsys):
    out = tmp_path / "o"
    base = ["eval", "--repo", tiny_run["repo"], "--ckpt", "tiny-run", "--n", "2", "--k", "1", "--no-ppl",
            "--max-new-tokens", "16", "--sandbox", "process", "--output-dir", out, "--no-leaderboard"]
    assert run(*base, "--limit", "2") == 0
    assert run(*base, "--limit", "3") == 2
    assert "holds results for suite 'humaneval[:2]'" in capsys.readouterr().err


def test_no_docker_engine_is_one_line_before_any_work(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    assert run("eval", "--repo", tiny_run["repo"], "--ckpt", "tiny-run", *EVAL, "--output-dir", tmp_path / "o",
               "--leaderboard", tmp_path / "b.csv") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Docker engine answers" in err[0] and "--sandbox process" in err[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "b.csv").exists()


def test_gate_merges_into_empty_main_then_blocks_a_worse_run(tiny_run, tmp_path, capsys):
    require_docker()
    repo = tmp_path / "hub"
    subprocess.run(["git", "clone", "-q", "--bare", "--mirror", str(tiny_run["repo"]), str(repo)], check=True)
    # a second, much shorter run: clearly worse perplexity
    assert pretrain_main(["train", *TINY_ARGS, "--tokenizer", str(tiny_run["tokenizer"]), "--corpus",
                          str(tiny_run["corpus"]), "--repo", str(repo), "--run", "short-run", "--max-steps", "2",
                          "--save-every", "2", "--output-dir", str(tmp_path / "short")]) == 0
    hub = open_hub(str(repo))
    common = ["--repo", repo, *EVAL, "--output-dir", tmp_path / "eval", "--leaderboard", tmp_path / "b.csv"]
    assert run("gate", "--ckpt", "tiny-run", *common) == 0  # main holds no checkpoint yet
    assert hub.resolve("main") == hub.resolve("tiny-run")
    main_before = hub.resolve("main")
    capsys.readouterr()
    assert run("gate", "--ckpt", "short-run", "--metric", "perplexity", *common) == 1
    out = capsys.readouterr().out
    assert "blocked" in out and "95% CI" in out
    assert hub.resolve("main") == main_before
    report = (tmp_path / "eval" / "gate-short-run.md").read_text()
    assert "**blocked**" in report and "paired bootstrap" in report
    # the gate re-used the cached evaluation of main: nothing generated twice
    assert run("gate", "--ckpt", "short-run", "--metric", "humaneval:pass@1", *common) in (0, 1)
    assert "humaneval:pass@1: main" in capsys.readouterr().out
    main_before = hub.resolve("main")  # the named-suite gate may have merged: what follows must not move main
    assert run("gate", "--ckpt", "short-run", "--metric", "pass@9", *common) == 2
    assert "needs at least 9 samples" in capsys.readouterr().err
    assert hub.resolve("main") == main_before  # an error never merges


def test_leaderboard_publishes_csv_markdown_and_plot(tiny_run, tmp_path, capsys):
    require_docker()
    board = tmp_path / "results" / "leaderboard.csv"
    assert run("eval", "--repo", tiny_run["repo"], "--ckpt", "tiny-run", "--every-commit", *EVAL,
               "--output-dir", tmp_path / "e", "--leaderboard", board) == 0
    assert run("leaderboard", "--source", board, "--out", board) == 0
    assert board.with_suffix(".md").read_text().count("tiny-run") == 3
    from PIL import Image

    with Image.open(board.with_suffix(".png")) as im:
        assert im.size[0] > 600 and im.size[1] > 300
    assert run("leaderboard", "--source", tmp_path / "none.csv", "--out", tmp_path / "x.csv") == 2


def test_generation_is_deterministic_stops_and_truncates(tiny_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hub = open_hub(str(tiny_run["repo"]))
    folder = hub.materialize(hub.resolve("tiny-run"))
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    prompts = [("a", "def add(a, b):\n"), ("b", "import os\n\n\ndef walk(path):\n    "), ("c", "x = 1\n" * 300)]
    params = GenParams(n=3, temperature=0.8, top_p=0.95, max_new_tokens=24, seed=7)
    runs = []
    for batch_size in (6, 6):
        got = []
        generate(model, tok, prompts, params, batch_size=batch_size, on_batch=got.extend)
        runs.append(sorted((g.key, g.index, g.completion) for g in got))
    assert runs[0] == runs[1] and len(runs[0]) == 9
    other = []
    generate(model, tok, prompts, GenParams(n=3, temperature=0.8, top_p=0.95, max_new_tokens=24, seed=8),
             batch_size=6, on_batch=other.extend)
    assert sorted((g.key, g.index, g.completion) for g in other) != runs[0]
    ids, cut = prepare_prompt(tok, "x = 1\n" * 300, model.config.n_positions, 24)
    assert cut and len(ids) == model.config.n_positions - 24
    assert ids == tok("x = 1\n" * 300)["input_ids"][-len(ids):]  # the end is kept
    assert truncate_at_stop("    return a\n\ndef other():\n", GenParams().stop) == "    return a\n"
    assert truncate_at_stop("    if x:\n        return 1\nprint(2)", GenParams().stop) == "    if x:\n        return 1"


def test_greedy_batched_generation_matches_generate(tiny_run):
    """Our batched loop (left padding, shared prefill, rows leaving the batch) == per-prompt model.generate()."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hub = open_hub(str(tiny_run["repo"]))
    folder = hub.materialize(hub.resolve("tiny-run"))
    model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    prompts = [("a", "def add(a, b):\n"), ("b", "import os\n\n\ndef walk(path):\n    "), ("c", "class A:\n    def")]
    params = GenParams(n=1, temperature=0.0, max_new_tokens=20, stop=("\n\n\n\n\n",))
    got = []
    generate(model, tok, prompts, params, batch_size=8, on_batch=got.extend)
    ours = {g.key: g.completion for g in got}
    for task_id, prompt in prompts:
        ids = tok(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=20, do_sample=False, pad_token_id=tok.eos_token_id)
        ref = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert ours[task_id] == truncate_at_stop(ref, params.stop)


def test_generation_shards_across_accelerate_processes(tiny_run, tmp_path):
    """Under `accelerate launch` with 2 processes each generates half the prompts; the result equals one process."""
    import os
    import sys

    env = dict(os.environ, HARNESS_CACHE=str(tmp_path / "cache2"))
    base = ["eval", "--repo", str(tiny_run["repo"]), "--ckpt", "tiny-run", "--limit", "6", "--n", "3", "--k", "1",
            "--no-ppl", "--max-new-tokens", "24", "--sandbox", "process", "--no-leaderboard"]
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    r = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "-m", "harness.cli", *base,
                        "--output-dir", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert run(*base, "--output-dir", tmp_path / "one") == 0  # the private cache of this test: generates anew
    two = [json.loads(l) for l in open(tmp_path / "two" / "results.jsonl")]
    one = [json.loads(l) for l in open(tmp_path / "one" / "results.jsonl")]
    assert len(two) == 18 and [r["completion"] for r in two] == [r["completion"] for r in one]
    shards = list((tmp_path / "cache2" / "generations").rglob("*.rank*.jsonl"))
    assert shards == []  # gathered into the cache by the main process


def test_several_suites_share_generations_and_gate_on_a_named_suite(tiny_run, tmp_path, capsys):
    require_docker()
    board = tmp_path / "b.csv"
    out = tmp_path / "multi"
    args = ["--repo", tiny_run["repo"], "--tasks", "humaneval,humanevalplus,mbpp", "--limit", "3", "--n", "2",
            "--k", "1", "--no-ppl", "--max-new-tokens", "24", "--output-dir", out, "--leaderboard", board]
    assert run("eval", "--ckpt", "tiny-run", *args) == 0
    dirs = sorted(p for p in out.rglob("summary.json"))
    summaries = {s.suite: s for s in map(Summary.load, dirs)}
    assert set(summaries) == {"humaneval[:3]", "humanevalplus[:3]", "mbpp[:3]"}
    # HumanEval and HumanEval+ share their first 3 prompts: 3 x 2 generated for both, plus 3 x 2 for MBPP
    assert summaries["humaneval[:3]"].generation_timing["generated_now"] == 12
    he = [json.loads(l)["completion"] for l in open(Path(summaries["humaneval[:3]"].output_dir) / "results.jsonl")]
    plus = [json.loads(l)["completion"] for l in open(Path(summaries["humanevalplus[:3]"].output_dir) / "results.jsonl")]
    assert he == plus
    assert summaries["mbpp[:3]"].generation["stop"] != summaries["humaneval[:3]"].generation["stop"]
    rows = list(csv.DictReader(open(board)))
    assert sorted(r["suite"] for r in rows) == ["humaneval[:3]", "humanevalplus[:3]", "mbpp[:3]"]
    out_text = capsys.readouterr().out
    assert "humanevalplus[:3]" in out_text and "mbpp[:3]" in out_text
    main_before = open_hub(str(tiny_run["repo"])).resolve("main")
    assert run("gate", "--ckpt", "tiny-run", "--metric", "mbpp-full:pass@1", *args) == 2
    assert "suite 'mbpp-full' is not among --tasks" in capsys.readouterr().err
    assert open_hub(str(tiny_run["repo"])).resolve("main") == main_before
