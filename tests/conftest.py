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


TINY_ARGS = ["--model", "tiny", "--seq-length", "128", "--batch-size", "8", "--eval-batches", "4", "--lr", "5e-4",
             "--mixed-precision", "bf16",  # pinned: "auto" measures, and runs compared step for step must agree
             "--warmup-steps", "4"]


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
