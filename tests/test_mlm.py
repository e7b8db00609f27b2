"""Masked-LM domain adaptation, the course's recipe on our data: a tiny encoder trained on the stdlib's `email` and
`json` packages, then adapted with --init to `asyncio`; its perplexity on asyncio's validation split falls, and both
numbers come from `harness eval --ckpt`. Also: exact resume, whole-word masking, the gate, and one-line refusals."""
import json

import pytest
import torch

from checkpoint_hub import open_hub
from conftest import PRECISION, STDLIB, kill_then_resume
from harness.cli import main as harness_main
from pretrain.cli import main as pretrain_main

MLM_ARGS = ["--objective", "mlm", "--model", "mlm-tiny", "--seq-length", "128", "--batch-size", "8",
            "--eval-batches", "4", "--lr", "1e-3", "--warmup-steps", "4", "--mixed-precision", PRECISION]


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    from pretrain.corpus import FilterConfig, build_corpus
    from pretrain.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("mlm")
    build_corpus([f"{STDLIB}/email", f"{STDLIB}/json"], root / "base", FilterConfig(), valid_fraction=0.15)
    build_corpus([f"{STDLIB}/asyncio"], root / "asyncio", FilterConfig(), valid_fraction=0.15)
    train_tokenizer(root / "base", 2048, root / "tok")
    return root


@pytest.fixture(scope="module")
def base_run(domains):
    args = ["train", *MLM_ARGS, "--tokenizer", str(domains / "tok"), "--corpus", str(domains / "base"),
            "--repo", str(domains / "hub"), "--run", "base", "--max-steps", "60", "--save-every", "30",
            "--output-dir", str(domains / "runs" / "base")]
    assert pretrain_main(args) == 0
    return open_hub(str(domains / "hub"))


def eval_ppl(domains, ckpt, data, out):
    assert harness_main(["eval", "--repo", str(domains / "hub"), "--ckpt", ckpt, "--ppl-data", str(data),
                         "--output-dir", str(out), "--no-leaderboard"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "mlm" and summary["pass_at_k"] == {}  # no pass@k: not a 0
    assert any("no pass@k" in n for n in summary["notes"])
    return summary["perplexity"]


def test_adaptation_lowers_in_domain_perplexity(domains, base_run, tmp_path):
    state = json.loads(base_run.read_file(base_run.resolve("base"), "training_state.json"))
    assert state["objective"] == "mlm"
    start = base_run.materialize(base_run.resolve("base"))
    tok = json.loads((start / "tokenizer.json").read_text())
    assert {t["content"] for t in tok["added_tokens"]} >= {"[MASK]", "[PAD]"}  # added and saved with the checkpoint
    before = eval_ppl(domains, "base", domains / "asyncio", tmp_path / "before")
    assert pretrain_main(["train", *MLM_ARGS, "--init", str(start), "--corpus", str(domains / "asyncio"),
                          "--repo", str(domains / "hub"), "--run", "adapted", "--max-steps", "60",
                          "--save-every", "60", "--whole-word-masking",
                          "--output-dir", str(domains / "runs" / "adapted")]) == 0
    after = eval_ppl(domains, "adapted", domains / "asyncio", tmp_path / "after")
    print(f"\nmasked-LM perplexity on asyncio's validation split: {before:.2f} before adaptation, {after:.2f} after")
    assert after < 0.8 * before, (before, after)


def test_mlm_resume_after_a_kill_matches_an_uninterrupted_run(domains, base_run, tmp_path):
    kill_then_resume([*MLM_ARGS, "--tokenizer", str(domains / "tok"), "--corpus", str(domains / "base"),
                      "--max-steps", "60", "--save-every", "30"], tmp_path, "killed", 30, (base_run, "base"))


def test_whole_word_masking_masks_identifiers_whole(domains):
    from transformers import AutoTokenizer

    from pretrain.mlm import Masker, ensure_mlm_tokens, word_starts

    tok = AutoTokenizer.from_pretrained(domains / "tok")
    ensure_mlm_tokens(tok)
    text = "result = compute_checksum_value(payload_bytes) + other_identifier_name"
    enc = tok.backend_tokenizer.encode(text, add_special_tokens=False)
    starts = word_starts(enc, text)
    words = []
    for token, (s, e), new in zip(enc.tokens, enc.offsets, starts):
        if new:
            words.append("")
        words[-1] += text[s:e]
    assert "compute_checksum_value" in [w.strip() for w in words] and "payload_bytes" in [w.strip() for w in words]
    ids = torch.tensor([enc.ids] * 64)
    batch = Masker(tok, whole_word=True, seed=0, probability=0.3)([(r, torch.tensor(starts)) for r in ids])
    masked = batch["labels"] != -100
    word_index = torch.tensor(starts).long().cumsum(0)
    for row in masked:
        for w in word_index.unique():
            in_word = row[word_index == w]
            assert in_word.all() or not in_word.any()  # a word is masked whole or not at all
    assert 0 < masked.float().mean() < 0.6


def test_gate_uses_masked_perplexity_and_refuses_pass_at_k(domains, base_run, tmp_path, capsys):
    hub = str(domains / "hub")
    assert harness_main(["gate", "--repo", hub, "--ckpt", "base", "--metric", "pass@1", "--no-leaderboard",
                         "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "masked-LM checkpoint" in err[-1] and "--metric perplexity" in err[-1]
    assert harness_main(["gate", "--repo", hub, "--ckpt", "base", "--metric", "perplexity", "--no-leaderboard",
                         "--output-dir", str(tmp_path)]) == 0
    assert open_hub(hub).resolve("main") == open_hub(hub).resolve("base")


def test_an_mlm_option_without_mlm_is_one_line(domains, tmp_path, capsys):
    argv = ["train", "--tokenizer", str(domains / "tok"), "--corpus", str(domains / "base"), "--repo",
            str(tmp_path / "hub"), "--run", "x", "--max-steps", "2", "--save-every", "1", "--whole-word-masking"]
    assert pretrain_main(argv) == 2
    assert "add --objective mlm" in capsys.readouterr().err
    argv = ["train", "--objective", "mlm", "--model", "small", "--tokenizer", str(domains / "tok"), "--corpus",
            str(domains / "base"), "--repo", str(tmp_path / "hub"), "--run", "x", "--max-steps", "2",
            "--save-every", "1"]
    assert pretrain_main(argv) == 2
    assert "GPT-2 (causal) preset" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()
