"""The container policy, as a pure function: the part of the sandbox a security reviewer most needs to read.

`container_spec` returns the docker SDK arguments that create one worker container. No engine is touched here, so
the policy has unit tests of its own (tests/test_sandbox_policy.py).
"""
from __future__ import annotations

from sandbox.limits import Limits

LABEL = "codeparrot-harness.sandbox"
OWNER_LABEL = "codeparrot-harness.owner"
# What the worker needs, nothing more: switch each child to its own uid (SETUID/SETGID), hand it its work dir
# (CHOWN), clean that dir afterwards (DAC_OVERRIDE, FOWNER), kill it (KILL).
WORKER_CAPS = ("SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL")


WORKER_DIR = "/work/.worker"


def slot_dir(slot: int) -> str:
    return f"/work/{slot}"


def container_spec(limits: Limits, image: str, name: str, owner: str, container_index: int,
                   extra_args: tuple[str, ...] = ()) -> dict:
    """One hardened, long-lived worker container, as docker SDK arguments.

    `create` goes to `APIClient.create_container`, `host_config` to `APIClient.create_host_config`; the CLI
    equivalent of each setting is in the comment beside it.
    """
    memory = f"{limits.container_memory_mb()}m"
    host_config = {
        "auto_remove": True,  # --rm
        "network_mode": "none",  # --network none: no network at all
        "read_only": True,  # --read-only: the only writable places are the per-slot tmpfs below
        "init": True,  # --init: an init reaps what samples leave behind
        "ipc_mode": "none",  # --ipc none
        "cap_drop": ["ALL"],
        "cap_add": list(WORKER_CAPS),
        "security_opt": ["no-new-privileges"],
        "mem_limit": memory, "memswap_limit": memory,  # no swap beyond the memory limit
        "pids_limit": limits.pids,
        "nano_cpus": int(limits.container_cpus() * 1e9),  # --cpus: slots x cpus_per_slot, so a sample that spawns
        # many processes competes with its own container's slots, not with the other containers
        "log_config": {"type": "none", "config": {}},  # --log-driver none
        # no binds, no mounts, no devices, no environment: nothing of the host is visible
        "tmpfs": {**{slot_dir(slot): f"rw,nosuid,nodev,size={limits.tmpfs_mb}m,mode=0700"
                     for slot in range(limits.slots)},
                  WORKER_DIR: "rw,nosuid,nodev,noexec,size=32m,mode=0700"},  # the worker's own (root only): caches
        # a suite environment builds before the zygote forks (matplotlib's font list)
    }
    create = {
        "image": image, "name": name, "command": limits.worker_args(container_index) + list(extra_args),
        "labels": {LABEL: "1", OWNER_LABEL: owner},
        "stdin_open": True, "detach": False,  # -i (StdinOnce): closing our end of the attach stream closes its stdin
        "network_disabled": True,
    }
    return {"create": create, "host_config": host_config}
