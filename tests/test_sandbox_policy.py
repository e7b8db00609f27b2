"""The container policy and the pool's scheduling, as pure functions: no engine needed."""
from sandbox.limits import UID_BASE, UIDS_PER_CONTAINER, Limits
from sandbox.policy import LABEL, OWNER_LABEL, WORKER_CAPS, container_spec
from sandbox.pool import plan_workers, refill_plan


def spec_for(**kw):
    return container_spec(Limits(**kw), "img:tag", "c0", "host:1", 3)


def test_no_network_read_only_init_no_ipc():
    host = spec_for()["host_config"]
    assert host["network_mode"] == "none" and spec_for()["create"]["network_disabled"] is True
    assert host["read_only"] is True and host["init"] is True and host["ipc_mode"] == "none"
    assert host["auto_remove"] is True


def test_every_capability_dropped_but_the_workers_few():
    host = spec_for()["host_config"]
    assert host["cap_drop"] == ["ALL"]
    assert sorted(host["cap_add"]) == sorted(WORKER_CAPS)
    assert "SYS_ADMIN" not in WORKER_CAPS and "NET_RAW" not in WORKER_CAPS
    assert host["security_opt"] == ["no-new-privileges"]
    assert "privileged" not in host or host["privileged"] is False


def test_memory_pids_and_cpu_limits_follow_the_limits():
    lim = Limits(slots=3, memory_mb=256, tmpfs_mb=32, pids=99, cpus_per_slot=0.5)
    host = container_spec(lim, "img", "c", "o", 0)["host_config"]
    assert host["nano_cpus"] == 1_500_000_000  # --cpus 1.5: three slots of half a CPU
    assert host["mem_limit"] == f"{3 * (256 + 32) + 256}m"
    assert host["memswap_limit"] == host["mem_limit"]  # no swap on top
    assert host["pids_limit"] == 99


def test_one_capped_tmpfs_per_slot_and_no_mounts_or_env():
    spec = spec_for(slots=2, tmpfs_mb=64)
    assert spec["host_config"]["tmpfs"] == {**{f"/work/{i}": "rw,nosuid,nodev,size=64m,mode=0700" for i in range(2)},
                                            "/work/.worker": "rw,nosuid,nodev,noexec,size=32m,mode=0700"}
    for forbidden in ("binds", "mounts", "volumes_from", "devices", "privileged", "pid_mode", "userns_mode"):
        assert forbidden not in spec["host_config"]
    for forbidden in ("environment", "volumes", "ports", "user"):
        assert forbidden not in spec["create"]
    assert spec["host_config"]["log_config"]["type"] == "none"


def test_the_spec_is_accepted_by_the_docker_sdk():
    """The SDK validates host-config keys against the API version; a typo here would only fail at run time."""
    from docker.types import ContainerConfig, HostConfig

    spec = spec_for()
    host = HostConfig(version="1.44", **spec["host_config"])
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["Tmpfs"]["/work/0"].startswith("rw,nosuid,nodev") and host["AutoRemove"] is True
    assert host["NanoCpus"] == 2 * 10**9
    config = ContainerConfig(version="1.44", **{k: v for k, v in spec["create"].items() if k != "name"})
    assert config["OpenStdin"] and config["StdinOnce"] and config["AttachStdin"] and config["NetworkDisabled"]
    assert not config.get("Env")


def test_labels_name_and_worker_args():
    create = spec_for(slots=2, memory_mb=300)["create"]
    assert create["labels"] == {LABEL: "1", OWNER_LABEL: "host:1"} and create["image"] == "img:tag"
    cmd = create["command"]
    assert cmd[cmd.index("--slots") + 1] == "2" and cmd[cmd.index("--memory-mb") + 1] == "300"
    assert float(cmd[cmd.index("--wall-factor") + 1]) == Limits().wall_factor
    assert cmd[cmd.index("--uid-base") + 1] == str(UID_BASE + 3 * UIDS_PER_CONTAINER)  # container 3: its own uids


def test_workers_are_spread_over_engines_by_cpus():
    assert plan_workers([2, 2], None) == [2, 2]  # default: one container per CPU of each engine
    assert plan_workers([16, 2], 6) == [5, 1]
    assert plan_workers([8, 1], 3) == [2, 1]  # every engine gets one while there are enough
    assert sum(plan_workers([3, 5, 7], 11)) == 11
    assert plan_workers([4], 3) == [3] and plan_workers([], 4) == []


def test_refill_waits_until_half_empty_then_fills_the_window():
    assert refill_plan([0, 0], pending=100, window=16, slots=2) == [16, 16]
    assert refill_plan([9, 8], pending=100, window=16, slots=2) == [0, 8]  # 9 > 16 // 2: not yet


def test_refill_skips_dead_workers_and_spreads_the_tail():
    assert refill_plan([None, 0], pending=100, window=16, slots=2) == [0, 16]
    # near the end: what is left is spread, not queued behind the first worker
    assert refill_plan([0, 0, 0, 0], pending=8, window=16, slots=2) == [2, 2, 2, 2]
    assert sum(refill_plan([0, 0, 0], pending=5, window=16, slots=2)) == 5
    assert refill_plan([0, 0], pending=0, window=16, slots=2) == [0, 0]
