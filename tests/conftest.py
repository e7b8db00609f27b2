"""Shared fixtures: a real Docker sandbox pool (never faked), the HumanEval suite."""
import os
import subprocess

import pytest

from tasks import load_suite


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


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
    from sandbox.pool import Limits, SandboxPool

    with SandboxPool(backend="docker", workers=2, limits=Limits(slots=2)) as p:
        yield p
