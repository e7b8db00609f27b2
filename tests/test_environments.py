"""Suite environments (common/envspec.py, sandbox/envimage.py, sandbox/envpools.py) and DS-1000 on them.

CI builds one environment, DS-1000's core (`ds1000`: numpy, pandas, scipy, matplotlib, seaborn, scikit-learn,
statsmodels; about 110 MB of wheels), and runs a slice of each of its five libraries; the deep-learning image
(`ds1000-dl`, torch + TensorFlow) is built by `harness sandbox build --suite ds1000` and bench/ds1000_agreement.py.
"""
import collections
import json
import subprocess
import sys

import pytest

from common.envspec import EnvSpec, read_requirements
from common.errors import UserError
from tasks import load_suite
from tasks.suites import ds1000 as ds

from conftest import require_docker


def test_a_spec_is_a_lock_of_pinned_packages_and_its_hash_is_its_content():
    a = EnvSpec("x", ("numpy==1.26.4", "pandas==1.5.3"), preload=("pandas",))
    assert a.hash == EnvSpec("x", ("numpy==1.26.4", "pandas==1.5.3"), preload=("pandas",), note="other").hash
    assert a.hash != EnvSpec("x", ("numpy==1.26.4", "pandas==2.2.0"), preload=("pandas",)).hash
    assert a.packages() == {"numpy": "1.26.4", "pandas": "1.5.3"}
    for bad in ("numpy", "numpy>=1.26", "numpy==1.26.4; python_version>'3'"):
        with pytest.raises(ValueError, match="pinned"):
            EnvSpec("x", (bad,))
    with pytest.raises(ValueError, match="name"):
        EnvSpec("Has Space", ())
    assert read_requirements("# c\nnumpy==1.0  # why\n\n") == ("numpy==1.0",)


def test_a_pin_the_index_has_only_as_source_is_found_by_its_name_as_pip_spells_it():
    from sandbox.envimage import _pin_named

    pins = ["Flask-Mail==0.9.1", "numpy==1.23.5", "starkbank_ecdsa==2.2.0"]
    assert _pin_named(pins, "flask-mail==0.9.1") == "Flask-Mail==0.9.1"
    assert _pin_named(pins, "starkbank-ecdsa==2.2.0") == "starkbank_ecdsa==2.2.0"
    assert _pin_named(pins, "scipy==1.9.3") is None


def test_ds1000_has_its_thousand_problems_with_the_papers_library_counts():
    suite = load_suite("ds1000")
    assert len(suite.tasks) == 1000 and suite.stop == ("</code>", "# SOLUTION END")
    counts = collections.Counter(t.group for t in suite.tasks)
    assert counts == {"Pandas": 291, "Numpy": 220, "Matplotlib": 155, "Sklearn": 115, "Scipy": 106, "Pytorch": 68,
                      "Tensorflow": 45}
    envs = collections.Counter((t.group, t.env.name) for t in suite.tasks)
    assert envs[("Pytorch", "ds1000-dl")] == 68 and envs[("Tensorflow", "ds1000-dl")] == 45
    assert envs[("Pandas", "ds1000")] == 291  # no pandas problem pays for the deep-learning image
    # the official versions (environment.yml at b39aab7), pinned
    core = ds.environments()["ds1000"].packages()
    assert {k: core[k] for k in ("numpy", "pandas", "scipy", "matplotlib", "seaborn", "scikit-learn")} == {
        "numpy": "1.26.4", "pandas": "1.5.3", "scipy": "1.12.0", "matplotlib": "3.8.4", "seaborn": "0.13.2",
        "scikit-learn": "1.4.0"}
    assert ds.environments()["ds1000-dl"].packages()["tensorflow-cpu"] == "2.16.1"
    assert len(load_suite("ds1000-pandas").tasks) == 291 and {t.env.name for t in load_suite("ds1000-pandas").tasks} \
        == {"ds1000"}


def test_ds1000_program_is_the_official_one():
    t = load_suite("ds1000").by_id()["DS1000/0"]
    program = t.program("<code>\nresult = df.iloc[List]\n</code>\nEND SOLUTION")
    # the official postprocess: cut at </code>, drop the <code> tag (its newline stays)
    assert program.startswith(t.test) and "code = '\\nresult = df.iloc[List]\\n'\ntest_execution(code)\n" in program
    assert ds.postprocess("```python\nx = 1\n```\nmore") == "\nx = 1\n"
    with_string = next(t for t in load_suite("ds1000").tasks if "def test_string" in t.test)
    assert with_string.program("x").endswith("test_execution(code)\ntest_string(code)\n")
    with pytest.raises(UserError, match="--oracle inline"):
        t.isolated_parts("x")


def core_slice(per_library=3):
    """The first references of each core library, and one that reads a seaborn dataset shipped in the image."""
    suite = load_suite("ds1000")
    broken = dict(suite.broken)
    seen = collections.Counter()
    out = [suite.by_id()["DS1000/519"]]  # sns.load_dataset("tips"): offline, from SEABORN_DATA
    for t in suite.tasks:
        if t.env.name == "ds1000" and seen[t.group] < per_library and t.task_id not in broken:
            seen[t.group] += 1
            out.append(t)
    return out


@pytest.fixture(scope="module")
def ds_pool():
    require_docker()
    from harness.config import SandboxConfig

    pools = SandboxConfig(workers=1).make_pool()
    pools.prepare([ds.environments()["ds1000"]])  # builds the image where missing (about 2 minutes on 2 CPUs)
    yield pools
    pools.close()


def test_ds1000_references_pass_and_mutants_fail_on_the_core_image(ds_pool):
    from sandbox.jobs import Job

    tasks = core_slice()
    assert {t.group for t in tasks} == {"Pandas", "Numpy", "Matplotlib", "Scipy", "Sklearn"}
    jobs = [Job(("ref", t.task_id), t.canonical_program(), 30.0, env=t.env) for t in tasks]
    jobs += [Job(("raise", t.task_id), t.program("raise ValueError('mutant')\n" + t.canonical_solution), 30.0,
                 env=t.env) for t in tasks]
    jobs.append(Job(("base", "humaneval"), "import math\nassert math.sqrt(4) == 2\n"))  # the base image, same run
    verdicts = {job.key: v for job, v in ds_pool.run(jobs)}
    failed_refs = {k: v.result for k, v in verdicts.items() if k[0] == "ref" and not v.passed}
    assert not failed_refs
    raised = {k: v for k, v in verdicts.items() if k[0] == "raise"}
    assert not any(v.passed for v in raised.values()), {k: v.result for k, v in raised.items()}
    # the exception itself is the verdict's reason (but where the test catches it and fails an assertion instead)
    assert sum("ValueError: mutant" in v.result for v in raised.values()) >= len(raised) - 2, \
        {k: v.result for k, v in raised.items()}
    assert verdicts[("base", "humaneval")].passed


def test_the_environment_is_warm_headless_and_pinned(ds_pool):
    from sandbox.jobs import Job

    env = ds.environments()["ds1000"]
    probe = ("import sys, time, os\nt = time.process_time()\nimport pandas, matplotlib.pyplot as plt, sklearn\n"
             "took = time.process_time() - t\n"
             "assert 'pandas' in sys.modules and took < 0.05, took\n"
             "assert pandas.__version__ == '1.5.3', pandas.__version__\n"
             "assert plt.get_backend().lower() == 'agg', plt.get_backend()\n"
             "plt.plot([1, 2]); plt.savefig('out.png'); assert os.path.getsize('out.png') > 0\n"
             "import tempfile; assert tempfile.gettempdir() == os.getcwd(), tempfile.gettempdir()\n")
    [v] = ds_pool.judge([Job("probe", probe, 10.0, env=env)])
    assert v.passed, v.result + v.output


def test_a_suite_whose_environment_cannot_be_built_is_one_line_and_others_still_run(tmp_path):
    """A pin that no index has: the eval of the other suite in the same run is written; the run exits non-zero with
    one line naming the package."""
    require_docker()
    bad = EnvSpec("broken-test-env", ("no-such-package-codeparrot-harness==0.0.1",))
    code = """
import sys
from dataclasses import replace
from harness import cli
from tasks.registry import suite, load_suite
from common.envspec import EnvSpec
@suite("broken-env")
def broken():
    s = load_suite("humaneval").limit(2)
    return replace(s, name="broken-env", tasks=tuple(replace(t, env=EnvSpec("broken-test-env",
        ("no-such-package-codeparrot-harness==0.0.1",))) for t in s.tasks))

sys.exit(cli.main(sys.argv[1:]))
"""
    samples = tmp_path / "s.jsonl"
    t = load_suite("humaneval").tasks[0]
    samples.write_text(json.dumps({"task_id": t.task_id, "completion": t.canonical_solution}) + "\n")
    r = subprocess.run([sys.executable, "-c", code, "eval", "--samples", str(samples), "--tasks",
                        "humaneval,broken-env", "--k", "1", "--output-dir", str(tmp_path / "out"), "--workers", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "no-such-package-codeparrot-harness" in last and "broken-env" in last, r.stderr[-2000:]
    assert (tmp_path / "out" / "humaneval" / "summary.json").is_file()  # the other suite was scored
    assert not (tmp_path / "out" / "broken-env" / "summary.json").exists()
    assert bad.hash  # the spec itself is valid: only its package is missing


# BigCodeBench on its small image (bigcodebench-small: numpy, pandas, matplotlib with the full lock's pins; about
# 60 MB of wheels; building it took 3 minutes on 2 CPUs under load, the two tests then 22 s). Cheap tasks only:
# BigCodeBench/0's reference runs 10! shuffled permutations (over a minute of CPU). The full image (tensorflow, scikit-learn, 167 pins) is built
# by `harness sandbox build --suite bigcodebench` and bench/bigcodebench_agreement.py, never here.
BCB_SLICE = ("BigCodeBench/1", "BigCodeBench/3", "BigCodeBench/16", "BigCodeBench/50", "BigCodeBench/55",
             "BigCodeBench/69", "BigCodeBench/84", "BigCodeBench/113")
BCB_PROBE = '''
import io, subprocess, sys, time, unittest
class TestCases(unittest.TestCase):
    def test_what_bigcodebench_gives_a_sample(self):
        self.assertEqual(__name__, "__test__")
        self.assertIs(environ, os.environ)  # sys, os and environ are there without an import
        self.assertEqual(time.strftime("%Z"), "UTC")
        self.assertIsNone(exit)
        self.assertRaises(OSError, sys.stdin.read)
        self.assertEqual(subprocess.check_output(["ps", "aux"]), b"")  # the guarded check_output
        os.kill(1, 9)  # refused (not a child of the sample), printed, nothing killed
        self.assertEqual(os.system("true"), 0)
    @unittest.skip("a skip is not a failure")
    def test_skipped(self):
        raise AssertionError
'''


@pytest.fixture(scope="module")
def bcb_pool():
    require_docker()
    from harness.config import SandboxConfig
    from tasks.suites import bigcodebench as bcb

    pools = SandboxConfig(workers=1).make_pool()
    pools.prepare([bcb.small_environment()])
    yield pools
    pools.close()


def bcb_tasks():
    from dataclasses import replace

    from tasks.suites import bigcodebench as bcb

    by_id = load_suite("bigcodebench").by_id()
    return [replace(by_id[t], env=bcb.small_environment()) for t in BCB_SLICE]


def test_bigcodebench_references_pass_and_mutants_fail_on_its_small_image(bcb_pool):
    from sandbox.jobs import Job

    tasks = bcb_tasks()
    jobs = [Job(("ref", t.task_id), t.canonical_program(), 60.0, env=t.env) for t in tasks]
    jobs += [Job(("raise", t.task_id), t.program("    raise ValueError('mutant')\n" + t.canonical_solution), 60.0,
                 env=t.env) for t in tasks]
    # calibrated: a solution without the prompt's imports still has them (bigcodebench puts code_prompt first)
    bare = "\n".join(line for line in tasks[0].complete_prompt.splitlines() if not line.startswith(("import", "from")))
    jobs.append(Job(("no-imports", tasks[0].task_id), tasks[0].program_from_solution(bare + "\n" +
                                                                                    tasks[0].canonical_solution),
                    60.0, env=tasks[0].env))
    verdicts = {job.key: v for job, v in bcb_pool.run(jobs)}
    assert not {k: v.result for k, v in verdicts.items() if k[0] != "raise" and not v.passed}
    for t in tasks:
        v = verdicts[("raise", t.task_id)]
        assert not v.passed and "tests failed" in v.result and "ValueError: mutant" in v.result, v.result


def test_bigcodebench_sample_sees_what_its_evaluator_gives_it(bcb_pool):
    from dataclasses import replace

    from sandbox.jobs import Job

    t = replace(bcb_tasks()[0], test=BCB_PROBE)
    [v] = bcb_pool.judge([Job("probe", t.program_from_solution("def task_func():\n    pass\n"), 30.0, env=t.env)])
    assert v.passed, v.result + v.output
    failing = replace(t, test=BCB_PROBE.replace('"__test__")', '"__main__")'))
    [v] = bcb_pool.judge([Job("probe", failing.program_from_solution("x = 1\n"), 30.0, env=t.env)])
    assert not v.passed and "1 of 2 tests failed; test_what_bigcodebench_gives_a_sample: AssertionError" in v.result


# DataFrameBench (tasks/suites/dataframebench.py): its prompts and its parser are the package's, its program is the
# package's unittest run with the verdict taken from the result, not from the exit code.
from tasks.suites import dataframebench as dfb  # noqa: E402


def test_dataframebench_prompts_are_filled_as_the_package_fills_them():
    free, pandas, polars = (load_suite(n) for n in ("dataframebench", "dataframebench-pandas", "dataframebench-polars"))
    assert len(free.tasks) == len(pandas.tasks) == len(polars.tasks) == 100
    assert len(load_suite("dataframebench-val").tasks) == 16
    assert len({free.hash, pandas.hash, polars.hash}) == 3 and free.stop == ()
    assert {e.name for s in (free, pandas, polars) for e in s.envs()} == {"dataframebench"}
    # every prompt holds both placeholders (3 statements show the starter code twice: both imports are filled)
    counts = collections.Counter((r["prompt"].count(dfb.IMPORT_PLACEHOLDER),
                                  r["prompt"].count(dfb.INSTRUCTION_PLACEHOLDER)) for r in dfb.rows("test"))
    assert counts == {(1, 1): 97, (2, 1): 3}
    t = pandas.by_id()["DFB/B0001"]
    assert "\n\nUse pandas as the data processing library in your solution.\n\n```python\nimport pandas as pd\n" \
        "import matplotlib.pyplot as plt\n" in t.prompt
    pinned = polars.by_id()["DFB/B0001"].prompt
    assert "Use polars as" in pinned and "import polars as pl\n" in pinned
    f = free.by_id()["DFB/B0001"].prompt
    assert ("Choose, import and use a data processing library in your solution.\n\n```python\n"
            "import ___  # you MUST") in f
    assert "{library" not in f and "{library" not in t.prompt
    # plain replacement, never str.format: a stub's own braces stay as they are
    assert dfb.fill_condition("{library_import}\nd = {'a': 1}  {x}", "polars") == \
        "import polars as pl\nd = {'a': 1}  {x}"
    assert dfb.fill_condition("{library_instruction}", "duckdb") == \
        "Use duckdb as the data processing library in your solution."
    assert (t.canonical_solution, polars.by_id()["DFB/B0001"].canonical_solution) == (
        dict(t.references)["pandas"], dict(t.references)["polars"])
    assert t.instruct and free.by_id()["DFB/B0001"].canonical_solution == dict(t.references)["pandas"]
    with pytest.raises(UserError, match="--oracle inline"):
        t.isolated_parts("x")


def test_dataframebench_code_is_drawn_from_an_answer_as_the_packages_parser_does():
    fn = "def task_func():\n    return 1"
    assert dfb.answer_code(f"Sure:\n```python\n{fn}\n```\nUse it:\n```python\nprint(task_func())\n```") == fn
    assert dfb.answer_code(f"```bash\npip install x\n```\n```\n{fn}\n```") == fn  # untagged counts, bash does not
    assert dfb.answer_code(f"<think>```python\nx = 1\n```</think>\n```py\n{fn}\n```") == fn  # after the reasoning
    assert dfb.answer_code("<think>ran out of tokens ```python\nx = 1\n```") is None
    assert dfb.answer_code(fn) is None  # no fenced block: the package fails it without running it
    assert dfb.answer_code(f"```python\n{fn}\n") == fn  # an unclosed fence runs to the end
    assert dfb.answer_code("```python\ndef broken(:\n    pass\n    more\n```\n```python\nx = 1\n```") == "x = 1"
    doc = 'def task_func():\n    """Example:\n    ```python\n    task_func()\n    ```\n    """\n    return 1\n'
    assert dfb.answer_code(f"```python\n{doc}```") == doc  # a fence inside the docstring: first to last fence
    t = load_suite("dataframebench").by_id()["DFB/B0002"]
    assert "no code in the answer" in t.program(fn) and "_SOURCE = " in t.program(f"```python\n{fn}\n```")


def run_program(program: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})


def test_dataframebench_program_passes_only_when_its_unittest_run_passed():
    """On the host's interpreter (the logic only; the sandbox runs the same program below): passing tests pass, a
    failing test, no test at all and a `sys.exit(0)` before the tests do not, whatever the exit code would say."""
    test = ("import unittest\n\nclass TestCases(unittest.TestCase):\n    def test_one(self):\n"
            "        self.assertEqual(task_func(), 1)\n    def test_main_module(self):\n"
            "        import sys\n        self.assertIs(sys.modules['__main__'].task_func, task_func)\n\n"
            "if __name__ == '__main__':\n    unittest.main()\n")
    good = run_program(dfb.program_for("def task_func():\n    return 1\n", test))
    assert good.returncode == 0 and "Ran 2 tests" in good.stderr, good.stderr[-2000:]
    wrong = run_program(dfb.program_for("def task_func():\n    return 2\n", test))
    assert wrong.returncode != 0 and "1 of 2 tests failed; test_one: AssertionError: 2 != 1" in wrong.stderr
    raises = run_program(dfb.program_for("def task_func():\n    raise ValueError\n", test))
    assert "1 of 2 tests failed; test_one: ValueError" in raises.stderr
    exits = run_program(dfb.program_for("import sys\nsys.exit(0)\ndef task_func():\n    return 1\n", test))
    assert exits.returncode != 0 and "ended before its unittest run" in exits.stderr  # exit code 0 in the package
    no_tests = run_program(dfb.program_for("def task_func():\n    return 1\n", "import unittest\n"))
    assert no_tests.returncode != 0 and "no test ran" in no_tests.stderr  # Python 3.12's unittest exits 5 here
    assert run_program(dfb.NO_CODE).returncode != 0


def test_an_instruct_suite_is_asked_its_prompt_as_it_is_and_its_answer_is_the_completion():
    from harness.chat import task_messages
    from harness.evaluate import prompt_id, suite_samples

    suite = load_suite("dataframebench-polars").limit(1)
    t = suite.tasks[0]
    assert task_messages(t) == [{"role": "user", "content": t.prompt}]
    assert "Complete the following Python code" in task_messages(load_suite("humaneval").tasks[0])[0]["content"]
    answer = "Here you go:\n```python\n" + dict(t.references)["polars"] + "\n```"
    have = {(prompt_id("p"), 0): {"index": 0, "completion": answer}}
    [s] = suite_samples(suite, have, lambda task: "p", 1, chat=True)
    assert s.solution is None and s.completion == answer
    assert t.program(s.completion) == t.program_from_solution(dict(t.references)["polars"].strip())


# CI's slice of DataFrameBench's environment (the whole one, scikit-learn, statsmodels, pyarrow and the rest, is
# several minutes of pip install on 2 CPUs: bench/dataframebench_agreement.py builds and runs it on all 100 tasks).
DFB_SLICE = ("DFB/B0095", "DFB/B0099", "DFB/B0058", "DFB/B0054")  # aggregation, text, file-io, a plot


@pytest.fixture(scope="module")
def dfb_pool():
    require_docker()
    from harness.config import SandboxConfig

    pools = SandboxConfig(workers=1).make_pool()
    pools.prepare([dfb.slice_environment()])  # builds the image where missing
    yield pools
    pools.close()


def test_dataframebench_references_pass_and_mutants_fail_on_the_environment_slice(dfb_pool):
    from sandbox.jobs import Job

    full, part = dfb.environment().packages(), dfb.slice_environment().packages()
    assert part == {k: full[k] for k in part} and {"pandas", "polars", "matplotlib", "seaborn"} <= set(part)
    tasks = dfb.slice_suite(DFB_SLICE).tasks
    wrap = "\n_impl = task_func\n\ndef task_func(*a, **k):\n    {}\n"
    jobs = [Job(("ref", lib, t.task_id), t.reference_program(lib), 30.0, env=t.env)
            for t in tasks for lib in dfb.LIBRARIES]
    t, pandas = tasks[0], dict(tasks[0].references)["pandas"]
    mutants = {
        "wrong": t.program_from_solution(pandas + wrap.format("_impl(*a, **k)\n    return None")),
        "raises": t.program_from_solution(pandas + wrap.format("raise ValueError('mutant')")),
        "exit0": t.program_from_solution("import sys\nsys.exit(0)\n" + pandas),  # exit code 0: a pass for the package
        "no-fence": t.program(pandas),  # an answer without a fenced block: failed unrun
    }
    jobs += [Job(("mutant", k, t.task_id), p, 30.0, env=t.env) for k, p in mutants.items()]
    jobs.append(Job(("answer", "fenced", t.task_id), t.program(f"Here:\n```python\n{pandas}\n```\nDone."), 30.0,
                    env=t.env))
    verdicts = {job.key: v for job, v in dfb_pool.run(jobs)}
    assert not {k: v.result for k, v in verdicts.items() if k[0] != "mutant" and not v.passed}
    assert not {k: v.result for k, v in verdicts.items() if k[0] == "mutant" and v.passed}
    assert "tests failed; " in verdicts[("mutant", "wrong", t.task_id)].result
    assert "ended before its unittest run" in verdicts[("mutant", "exit0", t.task_id)].result
    assert "no code in the answer" in verdicts[("mutant", "no-fence", t.task_id)].result


def test_dataframebench_environment_is_warm_and_polars_runs_after_the_fork(dfb_pool):
    """polars is imported before the zygote forks: its thread pool must start in the sample, not be lost with it."""
    from sandbox.jobs import Job

    probe = ("import time, os\nt = time.process_time()\nimport pandas as pd, polars as pl, matplotlib.pyplot as plt\n"
             "took = time.process_time() - t\nassert took < 0.05, took\n"
             "assert pl.thread_pool_size() == 1 and os.environ['MPLBACKEND'] == 'Agg'\n"
             "df = pl.DataFrame({'k': [1, 2, 1], 'v': [1.0, 2.0, 3.0]})\n"
             "out = df.group_by('k', maintain_order=True).agg(pl.col('v').sum())\n"
             "assert out.to_dicts() == [{'k': 1, 'v': 4.0}, {'k': 2, 'v': 2.0}], out\n"
             "assert pd.DataFrame({'a': [1]}).a.sum() == 1 and plt.get_backend().lower() == 'agg'\n"
             f"assert pl.__version__ == {dfb.environment().packages()['polars']!r}, pl.__version__\n")
    [v] = dfb_pool.judge([Job("probe", probe, 10.0, env=dfb.slice_environment())])
    assert v.passed, v.result + v.output
