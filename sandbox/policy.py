"""The container policy, as a pure function: the part of the sandbox a security reviewer most needs to read.

`docker_run_args` returns the arguments of `docker run` for one worker container. No engine is touched here, so
the policy has unit tests of its own (tests/test_sandbox_policy.py).
"""
from __future__ import annotations

from sandbox.limits import Limits

LABEL = "codeparrot-harness.sandbox"
OWNER_LABEL = "codeparrot-harness.owner"
# What the worker needs, nothing more: switch each child to its own uid (SETUID/SETGID), hand it its work dir
# (CHOWN), clean that dir afterwards (DAC_OVERRIDE, FOWNER), kill it (KILL).
WORKER_CAPS = ("SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL")


def slot_dir(slot: int) -> str:
    return f"/work/{slot}"


def docker_run_args(limits: Limits, image: str, name: str, owner: str, container_index: int) -> list[str]:
    """`docker run` arguments (after `docker`) for one hardened, long-lived worker container."""
    memory = f"{limits.container_memory_mb()}m"
    args = ["run", "-i", "--rm", "--name", name,
            "--label", f"{LABEL}=1", "--label", f"{OWNER_LABEL}={owner}",
            "--network", "none",  # no network at all
            "--read-only",  # root filesystem read-only; the only writable places are the per-slot tmpfs below
            "--init",  # an init reaps what samples leave behind
            "--ipc", "none",
            "--cap-drop", "ALL"]
    for cap in WORKER_CAPS:
        args += ["--cap-add", cap]
    args += ["--security-opt", "no-new-privileges",
             "--memory", memory, "--memory-swap", memory,  # no swap beyond the memory limit
             "--pids-limit", str(limits.pids),
             "--log-driver", "none"]  # no bind mounts, no -e: nothing of the host is visible
    for slot in range(limits.slots):
        args += ["--tmpfs", f"{slot_dir(slot)}:rw,nosuid,nodev,size={limits.tmpfs_mb}m,mode=0700"]
    return args + [image] + limits.worker_args(container_index)
