"""Any causal LM: tiny random GPT-2, GPTBigCode, Llama (grouped-query attention), GPT-NeoX and Qwen2 built from
configs (no download), committed on hub branches and evaluated end to end by `harness eval --ckpt`; greedy
completions equal `model.generate()`'s. `--model DIR` evaluates a plain folder; a non-causal model is one line."""
import csv
import json

import pytest
import torch

from checkpoint_hub import open_hub
from conftest import require_docker
from harness.cli import main as harness_main
from harness.generate import truncate_at_stop
from tasks import load_suite

FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, n_positions=256)),
    "gpt_bigcode": ("GPTBigCodeConfig", "GPTBigCodeForCausalLM",
                    dict(n_embd=64, n_layer=2, n_head=4, n_positions=256, multi_query=True)),
    "llama": ("LlamaConfig", "LlamaForCausalLM",
              dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=256)),  # grouped-query attention: 4 heads, 2 kv
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                 dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      max_position_embeddings=256)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=256)),
}
LIMIT, NEW = 4, 24


def build(family, tokenizer_dir, folder):
    import transformers
    from transformers import AutoTokenizer

    config_cls, model_cls, kw = FAMILIES[family]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = getattr(transformers, config_cls)(vocab_size=len(tok), bos_token_id=tok.eos_token_id,
                                                eos_token_id=tok.eos_token_id, initializer_range=0.3, **kw)
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(config).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, tok


@pytest.fixture(scope="module")
def family_hub(small_tokenizer, tmp_path_factory):
    """One hub, one branch per family, each holding a tiny random model of that family."""
    root = tmp_path_factory.mktemp("families")
    hub = open_hub(str(root / "hub"), create=True)
    models = {}
    for family in FAMILIES:
        folder = root / family
        models[family] = build(family, small_tokenizer, folder)
        hub.push(family, folder, f"{family} from config")
    return root / "hub", models


def run(*argv):
    return harness_main([str(a) for a in argv])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_evaluates_end_to_end_and_greedy_matches_generate(family, family_hub, small_corpus, tmp_path,
                                                                  monkeypatch):
    require_docker()
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    repo, models = family_hub
    out = tmp_path / "out"
    assert run("eval", "--repo", repo, "--ckpt", family, "--limit", LIMIT, "--n", 1, "--temperature", 0, "--k", 1,
               "--max-new-tokens", NEW, "--ppl-data", small_corpus, "--ppl-max-tokens", 4096, "--output-dir", out,
               "--leaderboard", tmp_path / "b.csv") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["perplexity"] > 1 and summary["pass_at_k"]["1"]["problems"] == LIMIT
    got = {r["task_id"]: r["completion"] for r in map(json.loads, open(out / "results.jsonl"))}
    model, tok = models[family]
    suite = load_suite("humaneval")
    for task in suite.tasks[:LIMIT]:
        ids = tok(task.prompt, return_tensors="pt")
        room = 256 - NEW  # the harness keeps the end of a prompt that does not fit the context
        ids = {k: v[:, -room:] for k, v in ids.items()}
        with torch.inference_mode():
            ref = model.generate(**ids, max_new_tokens=NEW, do_sample=False, pad_token_id=tok.eos_token_id)
        text = tok.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert got[task.task_id] == truncate_at_stop(text, suite.stop), (family, task.task_id)


def test_model_folder_is_evaluated_and_named_by_content(family_hub, small_tokenizer, tmp_path, monkeypatch, capsys):
    require_docker()
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    board = tmp_path / "b.csv"
    first, second = tmp_path / "a" / "my-model", tmp_path / "b" / "my-model"  # one name, two contents
    build("llama", small_tokenizer, first)
    build("qwen2", small_tokenizer, second)
    for i, folder in enumerate((first, second)):
        assert run("eval", "--model", folder, "--limit", 2, "--n", 1, "--k", 1, "--no-ppl", "--max-new-tokens", 8,
                   "--output-dir", tmp_path / f"o{i}", "--leaderboard", board) == 0
    rows = list(csv.DictReader(open(board)))
    assert len(rows) == 2 and {r["branch"] for r in rows} == {"my-model"}
    # someone else's model records no training corpus: the eval warns in one line, and the board says "unknown"
    warnings = [l for l in capsys.readouterr().err.splitlines() if "not decontaminated against humaneval" in l]
    assert len(warnings) == 2 and "does not record a decontaminated corpus" in warnings[0]
    assert {r["decontaminated"] for r in rows} == {""}
    assert len({r["commit"] for r in rows}) == 2 and all(len(r["commit"]) == 40 for r in rows)


def test_a_model_the_harness_cannot_drive_is_one_line(small_tokenizer, tmp_path, capsys):
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(small_tokenizer)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64)

    def one_error_line(model_cls, *extra):
        folder = tmp_path / model_cls.__name__
        model_cls(config).save_pretrained(folder)
        tok.save_pretrained(folder)
        capsys.readouterr()
        assert run("eval", "--model", folder, "--limit", 1, "--n", 1, "--sandbox", "process",
                   "--output-dir", tmp_path / "o", "--no-leaderboard", *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if line.startswith("error:")]
        assert len(errors) == 1 and errors[0] == err[-1] and "Traceback" not in "\n".join(err)
        return errors[0]

    # neither a causal LM nor a masked LM: named by its type
    msg = one_error_line(BertForSequenceClassification, "--no-ppl")
    assert "'bert'" in msg and "BertForSequenceClassification" in msg and "causal" in msg
    # a masked LM is scored by masked-LM perplexity, which needs a mask token its tokenizer lacks here
    text = tmp_path / "code.txt"
    text.write_text(open(__file__).read() * 4)
    msg = one_error_line(BertForMaskedLM, "--ppl-data", text)
    assert "masked" in msg and "no mask token" in msg
    assert run("eval", "--model", tmp_path / "nowhere", "--no-ppl") == 2
    assert "no such folder" in capsys.readouterr().err
