"""The container policy and the pool's scheduling, as pure functions: no engine needed."""
from sandbox.limits import UID_BASE, Limits
from sandbox.policy import WORKER_CAPS, docker_run_args
from sandbox.pool import refill_plan


def args_for(**kw):
    return docker_run_args(Limits(**kw), "img:tag", "c0", "host:1", 3)


def flag_values(args, flag):
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_no_network_read_only_init_no_ipc():
    args = args_for()
    assert flag_values(args, "--network") == ["none"] and "--read-only" in args and "--init" in args
    assert flag_values(args, "--ipc") == ["none"] and "--rm" in args and "-i" in args


def test_every_capability_dropped_but_the_workers_few():
    args = args_for()
    assert flag_values(args, "--cap-drop") == ["ALL"]
    assert sorted(flag_values(args, "--cap-add")) == sorted(WORKER_CAPS)
    assert "SYS_ADMIN" not in WORKER_CAPS and "NET_RAW" not in WORKER_CAPS
    assert flag_values(args, "--security-opt") == ["no-new-privileges"]


def test_memory_and_pids_limits_follow_the_limits():
    lim = Limits(slots=3, memory_mb=256, tmpfs_mb=32, pids=99)
    args = docker_run_args(lim, "img", "c", "o", 0)
    assert flag_values(args, "--memory") == [f"{3 * (256 + 32) + 256}m"]
    assert flag_values(args, "--memory-swap") == flag_values(args, "--memory")  # no swap on top
    assert flag_values(args, "--pids-limit") == ["99"]


def test_one_capped_tmpfs_per_slot_and_no_mounts_or_env():
    args = args_for(slots=2, tmpfs_mb=64)
    tmpfs = flag_values(args, "--tmpfs")
    assert tmpfs == [f"/work/{i}:rw,nosuid,nodev,size=64m,mode=0700" for i in range(2)]
    for forbidden in ("-v", "--volume", "--mount", "-e", "--env", "--env-file", "--privileged", "--network=host"):
        assert forbidden not in args


def test_labels_name_and_worker_args_after_the_image():
    args = args_for(slots=2, memory_mb=300)
    assert flag_values(args, "--label") == ["codeparrot-harness.sandbox=1", "codeparrot-harness.owner=host:1"]
    after = args[args.index("img:tag") + 1:]
    assert flag_values(after, "--slots") == ["2"] and flag_values(after, "--memory-mb") == ["300"]
    assert flag_values(after, "--uid-base") == [str(UID_BASE + 300)]  # container 3: its own uid range


def test_refill_waits_until_half_empty_then_fills_the_window():
    assert refill_plan([0, 0], pending=100, window=16, slots=2) == [16, 16]
    assert refill_plan([9, 8], pending=100, window=16, slots=2) == [0, 8]  # 9 > 16 // 2: not yet


def test_refill_skips_dead_workers_and_spreads_the_tail():
    assert refill_plan([None, 0], pending=100, window=16, slots=2) == [0, 16]
    # near the end: what is left is spread, not queued behind the first worker
    assert refill_plan([0, 0, 0, 0], pending=8, window=16, slots=2) == [2, 2, 2, 2]
    assert sum(refill_plan([0, 0, 0], pending=5, window=16, slots=2)) == 5
    assert refill_plan([0, 0], pending=0, window=16, slots=2) == [0, 0]
