"""MBPP+ (EvalPlus; Liu et al., NeurIPS 2023; Apache-2.0, see tasks/data/mbppplus/LICENSE), rebuilt as v0.2.0.

378 MBPP problems with EvalPlus's base and plus inputs. Not the official release file (not obtainable here) but one
rebuilt from EvalPlus's repository and its v0.2.0 fix script: its scores are reported as `mbppplus (rebuilt v0.2.0)`.
The prompt is MBPP's (the description and the first assert in a docstring); 360 of them are those of our `mbpp`
suite, so one generation serves both (the other 18 lost a URL in EvalPlus's fix). The expected outputs are the
reference solution's, computed once offline (tasks/data/mbppplus/build_expected.py) and shipped; the test built here
compares each output as EvalPlus 0.3.1's evaluator does: exact match, its special oracles for eight kinds of MBPP
task, and its float tolerance (numpy.allclose after a type and length check).
"""
from __future__ import annotations

import collections
import gzip
import hashlib
import json
import math
from pathlib import Path

from tasks.registry import suite
from tasks.suite import Suite, Task
from tasks.suites.mbpp import MBPP_STOP

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "mbppplus"
DATA = DATA_DIR / "MbppPlus-v0.2.0-rebuilt.jsonl.gz"
EXPECTED = DATA_DIR / "expected_outputs.jsonl.gz"
LABEL = "mbppplus (rebuilt v0.2.0)"
SHIP_AT_MOST = 4 * 10**6  # characters of expected outputs per task; a task with more recomputes them in its test
# Tasks whose reference does not pass in the sandbox at its default limits, with why (the build found none broken).
BROKEN = {
    "Mbpp/255": "one plus input (5 elements, n=77) has 1.66 million 77-tuples as its output, 1.1 GB in memory: the "
                "reference's and a candidate's output together need about 2.3 GB, beyond the default 512 MB per "
                "sample (EvalPlus allows 4 GB); MemoryError for every sample unless --memory-mb is raised",
}


# ---- the inputs: JSON lists of arguments, turned into the types EvalPlus's loader gives them -----------------------
def _deep_tuple(x):
    return tuple(_deep_tuple(v) for v in x) if isinstance(x, list) else x


def _each_tuple(args):
    return [tuple(a) for a in args]


def _each_list_of_tuples(args):
    return [[tuple(v) for v in a] for a in args]


# task number -> the conversion of one input (a list of arguments); tasks not named take the JSON as it is. These are
# the types the reference solutions were written for (a tuple, a set, a complex number) that JSON cannot hold.
CONVERT = {
    **dict.fromkeys((2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726,
                     740, 744, 809), _each_tuple),
    **dict.fromkeys((63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780), _each_list_of_tuples),
    **dict.fromkeys((75, 413, 444, 753), lambda a: [[tuple(v) for v in a[0]], a[1]]),
    **dict.fromkeys((106, 750), lambda a: [a[0], tuple(a[1])]),
    # an empty list becomes {} (an empty dict, not a set): EvalPlus's loader does that, and the outputs follow it
    115: lambda a: [[set(v) if isinstance(v, list) and v else {} for v in a[0]]],
    124: lambda a: (float(a[0]), complex(a[1])),
    **dict.fromkeys((250, 405, 446, 617, 720, 763, 808), lambda a: [tuple(a[0]), a[1]]),
    **dict.fromkeys((259, 401, 445), lambda a: [tuple(tuple(v) for v in x) for x in a]),
    278: lambda a: [tuple(tuple(v) if isinstance(v, list) else v for v in a[0])],
    307: lambda a: [tuple(a[0]), a[1], a[2]],
    722: lambda a: [{k: tuple(v) for k, v in a[0].items()}, *a[1:]],
    252: lambda a: [complex(a[0])],
    **dict.fromkeys((580, 615, 791), _deep_tuple),
}


def convert_inputs(task_id: str, inputs) -> list:
    fn = CONVERT.get(int(task_id.split("/")[1]))
    return [fn(inp) for inp in inputs] if fn else list(inputs)


# ---- Python source for a value: the shipped outputs and the inputs are written into the test as literals -----------
def literal(x) -> str:
    """Source text that evaluates to a value equal to x, of the same types all the way down (TypeError: not plain
    data), given `_collections` (the test imports it). repr() alone would write inf and nan as names, and huge ints
    past Python's int-to-text limit."""
    t = type(x)
    if x is None or t is bool or t is str or t is bytes:
        return repr(x)
    if t is int:
        return repr(x) if x.bit_length() < 10_000 else ("-" if x < 0 else "") + hex(abs(x))
    if t is float:
        return repr(x) if math.isfinite(x) else f"float('{x!r}')"
    if t is complex:
        return f"complex({literal(x.real)}, {literal(x.imag)})"
    if t is list:
        return "[" + ", ".join(map(literal, x)) + "]"
    if t is tuple:
        return "(" + ", ".join(map(literal, x)) + ("," if len(x) == 1 else "") + ")"
    if t is dict:
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in x.items()) + "}"
    if t is set:  # elements in the order of their text: the same set is the same text, whatever the hash seed
        return "{" + ", ".join(sorted(map(literal, x))) + "}" if x else "set()"
    if t is frozenset:
        return f"frozenset({literal(set(x))})"
    if t is collections.Counter or t is collections.OrderedDict:  # their equality is not a dict's: keep the type
        return f"_collections.{t.__name__}({literal(dict(x))})"
    raise TypeError(f"not plain data: {t.__name__}")


# ---- the oracle: EvalPlus 0.3.1's comparison of one output, as a test's source ------------------------------------
# Special oracles, by the task's entry point (EvalPlus keys them so): "any" accepts every output that returns, "set"
# compares as sets, "not_none" expects only whether the output is None (those tasks return re.Match objects), and the
# others accept a second reading of the task as well as the reference's.
SPECIAL = {
    "are_equivalent": "any",  # Mbpp/164
    "sum_div": "or_zero",  # Mbpp/295: 0 also accepted
    "surface_Area": "or_surface_area",  # Mbpp/581: the height read as the perpendicular one
    "digit_distance_nums": "or_digit_distance",  # Mbpp/558: numbers of unequal length padded with zeros
    **dict.fromkeys(("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
                     "intersection_array", "find_dissimilar", "Diff"), "set"),
    **dict.fromkeys(("check_str", "text_match_three", "text_starta_endb"), "not_none"),
}
NOT_NONE = tuple(k for k, v in SPECIAL.items() if v == "not_none")  # their expected output: `is not None`

ORACLE = '''
import collections as _collections
import math as _math

import numpy as _np


def _surface_area(base_edge, height):
    slant = _math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 4 * (base_edge * slant) / 2)


def _digit_distance(a, b):
    width = max(len(str(a)), len(str(b)))
    return sum(abs(int(x) - int(y)) for x, y in zip(str(a).zfill(width), str(b).zfill(width)))


def _is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(v, float) for v in x)
    if isinstance(x, _np.ndarray):
        return x.dtype == _np.float64 or x.dtype == _np.float32
    return False


def _check_output(out, exp, inp, atol):
    """One output against the expected one; returns the tolerance for the next input (EvalPlus raises a zero atol
    to 1e-6 at the first float output and keeps it for the rest of that run)."""
    same = out == exp
    if _SPECIAL == "any":
        same = True
    elif _SPECIAL == "or_zero":
        same = same or out == 0
    elif _SPECIAL == "or_surface_area":
        same = same or abs(out - _surface_area(*inp)) <= atol
    elif _SPECIAL == "or_digit_distance":
        same = same or out == _digit_distance(*inp)
    elif _SPECIAL == "set":
        same = set(out) == set(exp)
    elif _SPECIAL == "not_none":
        same = out == exp if isinstance(out, bool) else exp == (out is not None)
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if not same and atol != 0:
        assert type(out) == type(exp), f"input {inp!r:.200}: {type(out).__name__}, expected {type(exp).__name__}"
        if isinstance(exp, (list, tuple)):
            assert len(out) == len(exp)
        assert _np.allclose(out, exp, rtol=1e-07, atol=atol), f"input {inp!r:.200}: {out!r:.200} != {exp!r:.200}"
    else:
        assert same, f"input {inp!r:.200}: {out!r:.200} != {exp!r:.200}"
    return atol
'''

CHECK = '''
_SPECIAL = {special!r}
{bind}

def check(candidate):
    {rebind}inputs = {inputs}
    results = {results}
    atol = {atol!r}
    for i, (inp, exp) in enumerate(zip(inputs, results)):
        if i == {n_base}:
            atol = {atol!r}  # EvalPlus runs the base and the plus inputs as two runs, each from the task's atol
        atol = _check_output(candidate(*inp), exp, inp, atol)
'''


# The few tasks whose outputs are not shipped (too large, or in an order that follows the hash seed): the test runs
# the reference on a copy of each input first, in its own namespace, then the candidate.
CHECK_RECOMPUTED = '''
import copy as _copy

_REFERENCE = {{}}
exec(compile({reference}, "<reference>", "exec"), _REFERENCE)
_SPECIAL = {special!r}
{bind}

def check(candidate):
    {rebind}inputs = {inputs}
    atol = {atol!r}
    for i, inp in enumerate(inputs):
        if i == {n_base}:
            atol = {atol!r}
        exp = _REFERENCE[{entry_point!r}](*_copy.deepcopy(inp))
        if {not_none}:
            exp = exp is not None
        atol = _check_output(candidate(*inp), exp, inp, atol)
        del exp  # the next input's is computed without this one in memory (Mbpp/255's are 1.7 million tuples)
'''
# Mbpp/56's function is itself called `check`: the test binds it before defining its own (EvalPlus calls the function
# the program defines, whatever its name).
BIND = "_CANDIDATE = check\n"
REBIND = "candidate = _CANDIDATE\n    "


def build_test(row: dict, expected: dict) -> str:
    """The test of one task: EvalPlus-style (tasks/per_input.py gives each input its own time limit)."""
    inputs = convert_inputs(row["task_id"], row["base_input"]) + convert_inputs(row["task_id"], row["plus_input"])
    named_check = row["entry_point"] == "check"
    fields = dict(special=SPECIAL.get(row["entry_point"]), inputs=literal(inputs), atol=row["atol"],
                  n_base=len(row["base_input"]), bind=BIND if named_check else "",
                  rebind=REBIND if named_check else "")
    if "results" in expected:
        return ORACLE + CHECK.format(results=expected["results"], **fields)
    return ORACLE + CHECK_RECOMPUTED.format(reference=literal(row["prompt"] + row["canonical_solution"]),
                                            entry_point=row["entry_point"], not_none=row["entry_point"] in NOT_NONE,
                                            **fields)


def read_rows() -> list[dict]:
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def data_sha256() -> str:
    return hashlib.sha256(DATA.read_bytes()).hexdigest()


@suite("mbppplus")
def mbppplus() -> Suite:
    with gzip.open(EXPECTED, "rt", encoding="utf-8") as f:
        head, *outputs = [json.loads(line) for line in f if line.strip()]
    if head["data_sha256"] != data_sha256():
        raise RuntimeError(f"{EXPECTED} was computed from another {DATA.name}: run "
                           "tasks/data/mbppplus/build_expected.py")
    expected = {o["task_id"]: o for o in outputs}
    tasks = []
    for row in read_rows():
        tid = row["task_id"]
        tasks.append(Task(tid, row["prompt"], row["entry_point"], build_test(row, expected[tid]),
                          canonical_solution=row["canonical_solution"]))
    broken = tuple(sorted({**BROKEN, **{tid: o["broken"] for tid, o in expected.items() if o.get("broken")}}.items()))
    return Suite("mbppplus", tuple(tasks), str(DATA), stop=MBPP_STOP, label=LABEL, broken=broken)
