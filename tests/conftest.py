"""Shared fixtures: a real Docker sandbox pool (never faked), the HumanEval suite."""
import os

import pytest

from tasks import load_suite


def docker_answers() -> bool:
    from common.errors import UserError
    from sandbox.engine import Engine

    try:
        Engine()
        return True
    except UserError:
        return False


def docker_api():
    """The local engine's low-level docker SDK client (tests inspect, kill and list containers with it)."""
    from sandbox.engine import Engine

    return Engine().client.api


def require_docker():
    if docker_answers():
        return
    if os.environ.get("CI"):
        pytest.fail("no Docker engine answers in CI: `make setup` should have started one")
    pytest.skip("no Docker engine answers here: run `make setup` as root, or start Docker")


@pytest.fixture(scope="session")
def humaneval():
    return load_suite("humaneval")


@pytest.fixture(scope="module")
def pool():
    require_docker()
    from sandbox.limits import Limits
    from sandbox.pool import SandboxPool

    with SandboxPool(backend="docker", workers=2, limits=Limits(slots=2)) as p:
        yield p


STDLIB = __import__("sysconfig").get_paths()["stdlib"]


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A real corpus from this Python's standard library (a few hundred files)."""
    from pretrain.corpus import FilterConfig, build_corpus

    out = tmp_path_factory.mktemp("corpus") / "corpus"
    # decontaminated against every suite, as `pretrain corpus` does by default
    from tasks import registry

    build_corpus([STDLIB], out, FilterConfig(decontaminate=tuple(registry.names())), valid_fraction=0.1, max_files=600)
    return out


@pytest.fixture(scope="session")
def small_tokenizer(small_corpus, tmp_path_factory):
    from pretrain.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer(small_corpus, 2048, out)
    return out


def fast_precision() -> str:
    """The precision `--mixed-precision auto` picks on this machine (bf16 with AMX, fp32 where bf16 is emulated and
    80x slower), from the same cached measurement, pinned once for the session: runs compared step for step (an
    uninterrupted run and a killed-then-resumed one) must use the same precision, and none may crawl in bf16."""
    from pretrain.train import pick_mixed_precision

    return pick_mixed_precision("auto")


PRECISION = fast_precision()
TINY_ARGS = ["--model", "tiny", "--seq-length", "128", "--batch-size", "8", "--eval-batches", "4", "--lr", "5e-4",
             "--mixed-precision", PRECISION, "--warmup-steps", "4"]


@pytest.fixture(scope="session")
def tiny_run(small_corpus, small_tokenizer, tmp_path_factory):
    """A real tiny training run: 3 checkpoints (steps 8, 16, 24) on branch `tiny-run` of a local hub repo."""
    from pretrain.cli import main as pretrain_main

    root = tmp_path_factory.mktemp("run")
    repo = root / "hub"
    rc = pretrain_main(["train", *TINY_ARGS, "--tokenizer", str(small_tokenizer), "--corpus", str(small_corpus),
                        "--repo", str(repo), "--run", "tiny-run", "--max-steps", "24", "--save-every", "8",
                        "--output-dir", str(root / "state")])
    assert rc == 0
    return {"repo": repo, "run": "tiny-run", "corpus": small_corpus, "tokenizer": small_tokenizer, "root": root}


def kill_then_resume(train_args: list[str], tmp_path, run: str, kill_at_step: int, uninterrupted) -> None:
    """Starts `pretrain train` (train_args, with --repo tmp_path/hub --run RUN --output-dir tmp_path/state), kills it
    with SIGKILL once a checkpoint at or after `kill_at_step` is saved, resumes it, and checks that the final
    training_state matches `uninterrupted` (a hub and a branch trained without a kill) step for step."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from checkpoint_hub import open_hub

    args = [sys.executable, "-m", "pretrain.cli", "train", *train_args, "--repo", str(tmp_path / "hub"),
            "--run", run, "--output-dir", str(tmp_path / "state")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "state" / "state" / "trainer_state.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (marker.exists() and json.loads(marker.read_text())["step"] >= kill_at_step):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    hub, branch = uninterrupted
    b = json.loads(hub.read_file(hub.resolve(branch), "training_state.json"))
    assert json.loads(marker.read_text())["step"] < b["step"], "the run finished before it was killed"
    assert subprocess.run(args + ["--resume"], capture_output=True).returncode == 0
    resumed = open_hub(str(tmp_path / "hub"))
    a = json.loads(resumed.read_file(resumed.resolve(run), "training_state.json"))
    assert a["step"] == b["step"] and a["tokens"] == b["tokens"]
    assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    assert a["valid_loss"] == pytest.approx(b["valid_loss"], abs=1e-6)
