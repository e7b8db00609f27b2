"""Several Docker engines, for real: a second `dockerd` on this machine (its own socket, data root, exec root and
pidfile), started and killed by this test by pid. Also: the harness needs no docker CLI on the client.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from common.errors import UserError
from conftest import require_docker
from sandbox.jobs import Job

VENV_BIN = Path(sys.executable).parent


class SecondDaemon:
    """A second Docker engine beside the main one. Stopped by pid; its mounts and processes cleaned by path."""

    def __init__(self, root: Path):
        self.root = root
        self.url = f"unix://{root}/docker.sock"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_s: float = 90.0) -> None:
        from sandbox.engine import Engine

        log = open(self.root / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--host", self.url, "--data-root", f"{self.root}/data", "--exec-root", f"{self.root}/exec",
             "--pidfile", f"{self.root}/docker.pid", "--bridge", "none", "--iptables=false", "--ip6tables=false"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + wait_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"second dockerd exited: {self.log_tail()}")
            try:
                Engine(self.url)
                return
            except UserError:
                time.sleep(0.5)
        pytest.fail(f"second dockerd did not answer in {wait_s:.0f}s: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.root / "dockerd.log").read_text(errors="replace")[-800:]

    def kill(self) -> None:
        """SIGKILL to dockerd (by its pid), then to what it started under this root (its containerd, shims)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        deadline = time.time() + 20
        while (left := self._processes_under_root()) and time.time() < deadline:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        # A killed containerd may stay a zombie (nobody here is its parent): its pidfile would make the next dockerd
        # wait for it forever.
        (self.root / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)

    def _processes_under_root(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    cmdline = (entry / "cmdline").read_bytes()  # empty for a zombie: nothing left to kill
                    if str(self.root).encode() in cmdline:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    def cleanup(self) -> None:
        self.kill()
        time.sleep(0.5)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.root))]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def second_daemon():
    require_docker()
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with dockerd installed (make setup): the two-engine test must run")
        pytest.skip("a second Docker engine needs root and dockerd on this machine")
    daemon = SecondDaemon(Path(tempfile.mkdtemp(prefix="hd2-", dir="/tmp")))  # short: a socket path has 108 bytes
    daemon.start()
    yield daemon
    daemon.cleanup()


def mixed_jobs(humaneval, copies: int) -> list[Job]:
    """Passing, failing and timing-out programs: verdicts that must come out the same on any engine layout."""
    jobs = []
    for c in range(copies):
        for i, t in enumerate(humaneval.tasks):
            completion = t.canonical_solution if (i + c) % 4 else "    return None\n"
            if i % 41 == 0 and c == 0:
                completion = "    while True:\n        pass\n"
            jobs.append(Job((c, t.task_id), t.program(completion), 1.0))
    return jobs


def test_an_engine_killed_mid_run_loses_nothing(second_daemon, humaneval, pool):
    from sandbox.limits import Limits
    from sandbox.pool import SandboxPool

    jobs = mixed_jobs(humaneval, copies=3)
    reference = {job.key: (v.passed, v.result) for job, v in pool.run(jobs)}  # one engine
    assert len(reference) == len(jobs)

    main_url = pool.engines[0].url
    with SandboxPool(workers=4, limits=Limits(slots=2), engines=[main_url, second_daemon.url]) as two:
        on_second = [w for w in two.workers if w.engine.url == second_daemon.url]
        assert len(on_second) == 2  # both engines report this machine's CPUs: an even split
        seen: dict = {}
        held_at_kill = None
        for job, verdict in two.run(jobs):
            assert job.key not in seen, f"verdict recorded twice for {job.key}"
            seen[job.key] = (verdict.passed, verdict.result)
            if len(seen) == 60:
                held_at_kill = sum(len(w.inflight) for w in on_second)
                second_daemon.kill()
        assert second_daemon.url in two.engine_errors
        assert all(w.engine.url == main_url for w in two.workers if not w.dead)
    assert held_at_kill and held_at_kill > 0, "the killed engine held no samples: the test proved nothing"
    assert seen == reference
    print(f"\n{len(jobs)} samples, engine killed after 60 verdicts holding {held_at_kill}: every verdict matches "
          f"the single-engine run ({sum(p for p, _ in seen.values())} passed)")


def test_the_run_fails_in_one_line_when_no_engine_is_left(second_daemon, humaneval):
    from sandbox.limits import Limits
    from sandbox.pool import SandboxPool

    second_daemon.start()  # the previous test killed it; same data root, so the image is already there
    jobs = mixed_jobs(humaneval, copies=2)
    with SandboxPool(workers=2, limits=Limits(slots=2), engines=[second_daemon.url]) as one:
        done = 0
        with pytest.raises(UserError) as err:
            for _ in one.run(jobs):
                done += 1
                if done == 20:
                    second_daemon.kill()
    msg = str(err.value)
    assert "every Docker engine of this run failed" in msg and second_daemon.url in msg and "\n" not in msg


def test_the_image_is_copied_to_an_engine_that_lacks_it(second_daemon, pool):
    """A fresh engine gets the content-addressed image from one that has it (no registry, no rebuild)."""
    from sandbox import image
    from sandbox.engine import Engine
    from sandbox.pool import ensure_images

    second_daemon.start()
    fresh = Engine(second_daemon.url)
    tag = image.image_tag()
    fresh.client.api.remove_image(tag, force=True)
    assert not fresh.has_image(tag)
    images = ensure_images([Engine(second_daemon.url), pool.engines[0]])
    assert images == {second_daemon.url: tag, pool.engines[0].url: tag} and fresh.has_image(tag)
    second_daemon.kill()


def test_the_harness_needs_no_docker_cli(tmp_path, humaneval):
    """`harness eval --samples` with the docker sandbox, run with a PATH on which there is no `docker`."""
    require_docker()
    samples = tmp_path / "s.jsonl"
    with open(samples, "w") as f:
        for t in humaneval.tasks[:10]:
            f.write(json.dumps({"task_id": t.task_id, "completion": t.canonical_solution}) + "\n")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = dict(os.environ, PATH=str(empty_bin))
    assert shutil.which("docker", path=env["PATH"]) is None
    r = subprocess.run([str(VENV_BIN / "harness"), "eval", "--samples", str(samples), "--output-dir",
                        str(tmp_path / "out"), "--k", "1", "--no-leaderboard"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    results = [json.loads(line) for line in open(tmp_path / "out" / "results.jsonl")]
    assert len(results) == 10 and all(r["passed"] for r in results)
