"""EvalPlus's per-input time limits (tasks/per_input.py) in the real sandbox, both oracles: the reference is timed
per input, input i gets max(1 s, 4 x its time), a candidate slower on that input but within 4x passes, one beyond it
fails with a TimeoutError on that input, and the sample's own limit adds up to EvalPlus's."""
import pytest

from sandbox.jobs import IsolatedParts, Job
from sandbox.limits import WALL_FACTOR
from tasks import Task, per_input

# An EvalPlus-style test: input 0 makes the function spin for its argument (CPU seconds), the others return at once.
TEST = """
def check(candidate):
    inputs = [[0.3], [0.0], [0.0]]
    results = [True, True, True]
    for i, (inp, exp) in enumerate(zip(inputs, results)):
        assert candidate(*inp) == exp
"""
PROMPT = "def spin(seconds):\n"


def body(slowdown: float) -> str:
    return ("    import time\n    end = time.process_time() + seconds * %r\n"
            "    while time.process_time() < end:\n        pass\n    return True\n" % slowdown)


TASK = Task("t/spin", PROMPT, "spin", TEST, body(1.0))


def jobs(task: Task, completion: str, key, timeout: float) -> list[Job]:
    parts = IsolatedParts(**task.isolated_parts(completion=completion))
    return [Job((key, "inline"), task.program(completion), timeout),
            Job((key, "isolated"), task.program(completion), timeout, parts)]


@pytest.fixture(scope="module")
def limits(pool):
    assert per_input.supports(TASK) and per_input.input_count(TASK) == 3
    timing = per_input.with_limits(TASK, None, WALL_FACTOR)
    v = pool.judge([Job("time", timing.canonical_program(), 30.0)])[0]
    assert v.passed, v
    times = per_input.parse_times(v.output)
    assert set(times) == {0} and 0.25 < times[0] < 0.6, times  # only input 0 is above the recording threshold
    return per_input.limits_from_times(times)


def test_each_input_gets_four_times_the_references_time(limits):
    assert set(limits) == {0} and limits[0] == pytest.approx(4 * 0.3, rel=0.5)
    assert per_input.sample_limit(limits, 3) == pytest.approx(limits[0] + 2 * per_input.FLOOR_S + per_input.RUNS, abs=1e-3)


def test_slower_within_the_limit_passes_and_beyond_it_fails_on_that_input(pool, limits):
    task = per_input.with_limits(TASK, limits, WALL_FACTOR)
    timeout = per_input.sample_limit(limits, 3)
    run = jobs(task, body(2.0), "2x", timeout) + jobs(task, body(8.0), "8x", timeout)
    verdicts = {j.key: v for j, v in pool.run(run)}
    for oracle in ("inline", "isolated"):
        fast, slow = verdicts[("2x", oracle)], verdicts[("8x", oracle)]
        assert fast.passed, (oracle, fast)
        assert slow.result.startswith("failed: TimeoutError") and "time limit" in slow.result, (oracle, slow)
        assert slow.cpu < timeout  # stopped at its input's limit, not at the sample's


def test_an_endless_loop_on_one_input_stops_at_that_inputs_limit(pool, limits):
    task = per_input.with_limits(TASK, limits, WALL_FACTOR)
    loop = "    while True:\n        pass\n"
    for v in pool.judge(jobs(task, loop, "loop", per_input.sample_limit(limits, 3))):
        assert v.result.startswith("failed: TimeoutError"), v
        assert v.cpu < limits[0] + 1.0, v
