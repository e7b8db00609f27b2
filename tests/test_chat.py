"""Chat answers -> programs: the fenced block, else the text, then the AST sanitiser (entry point and what it needs)."""
from harness.chat import extract_code, messages, program_of, sanitize

PROMPT = 'from typing import List\n\n\ndef add(xs: List[int]) -> int:\n    """Sum."""\n'


def test_the_fenced_block_that_defines_the_entry_point_is_taken():
    answer = ("Here is a helper:\n```python\ndef other():\n    pass\n```\nAnd the solution:\n```python\n"
              "def add(xs):\n    return sum(xs)\n```\nHope it helps.")
    assert extract_code(answer, "add") == "def add(xs):\n    return sum(xs)\n"
    assert extract_code("def add(xs):\n    return sum(xs)", "add") == "def add(xs):\n    return sum(xs)"
    assert extract_code("```\ndef add(xs):\n    return 0\n", "add") == "def add(xs):\n    return 0\n"  # unclosed


def test_sanitiser_keeps_the_entry_point_its_helpers_and_imports_and_drops_the_rest():
    code = ("import math\nimport os\n\nSCALE = 2\nUNUSED = 3\n\n\ndef helper(x):\n    return math.floor(x) * SCALE\n\n\n"
            "def stray():\n    os.remove('x')\n\n\n@staticmethod\ndef add(xs):\n    return sum(helper(x) for x in xs)\n\n\n"
            "print(add([1, 2]))\nassert add([]) == 0\nif __name__ == '__main__':\n    add([1])\n")
    out = sanitize(code, "add", PROMPT)
    assert out.splitlines()[0] == "from typing import List"  # the prompt's import, which the answer left out
    assert "import math" in out and "import os" in out  # imports stay: cheap and often needed
    assert "SCALE = 2" in out and "def helper" in out and "@staticmethod\ndef add" in out
    assert "UNUSED" not in out and "def stray" not in out and "print(" not in out and "__main__" not in out
    assert "assert" not in out
    ns = {}
    exec(out.replace("@staticmethod\n", ""), ns)
    assert ns["add"]([1.5, 2.5]) == 6


def test_a_truncated_answer_keeps_its_whole_statements_and_unparsable_text_is_left_alone():
    out = sanitize("def add(xs):\n    return sum(xs)\n\n\ndef half(", "add")
    assert out == "def add(xs):\n    return sum(xs)\n"
    assert sanitize("this is not python at all (", "add") == "this is not python at all ("


def test_program_of_a_chat_answer_runs_and_the_instruction_holds_the_prompt():
    answer = "Sure!\n```python\ndef add(xs: List[int]) -> int:\n    return sum(xs)\n\nprint(add([1]))\n```"
    program = program_of(answer, "add", PROMPT)
    ns = {}
    exec(program, ns)
    assert ns["add"]([2, 3]) == 5 and "print" not in program
    (turn,) = messages(PROMPT, "add")
    assert turn["role"] == "user" and PROMPT.rstrip() in turn["content"] and "`add`" in turn["content"]


def run(program: str, name: str):
    ns = {}
    exec(program, ns)
    return ns[name]


def test_the_prompts_helpers_are_given_to_an_answer_that_calls_them_without_repeating_them():
    prompt = ('def encode_cyclic(s: str):\n    """Reverse."""\n    return s[::-1]\n\n\n'
              'def decode_cyclic(s: str):\n    """Undo encode_cyclic."""\n')  # HumanEval/38's shape
    answer = "```python\ndef decode_cyclic(s: str):\n    return encode_cyclic(s)\n```"
    assert run(program_of(answer, "decode_cyclic", prompt), "decode_cyclic")("abc") == "cba"
    mine = "```python\ndef encode_cyclic(s):\n    return s\n\ndef decode_cyclic(s):\n    return encode_cyclic(s)\n```"
    assert run(program_of(mine, "decode_cyclic", prompt), "decode_cyclic")("abc") == "abc"  # the answer's own wins


def test_prose_before_unfenced_code_and_a_block_indented_in_a_list_are_still_code():
    assert run(program_of("Here is the code:\ndef add(xs):\n    return sum(xs)\n", "add", PROMPT), "add")([2]) == 2
    listed = "1. The function:\n   ```python\n   def add(xs):\n       return sum(xs)\n   ```\n"
    assert run(program_of(listed, "add", PROMPT), "add")([1, 2]) == 3


def test_a_helper_in_a_block_of_its_own_and_a_guarded_import_are_kept_and_a_test_block_is_not():
    answer = ("First a helper:\n```python\ndef double(x):\n    return 2 * x\n\nprint(double(2))\n```\nA test:\n"
              "```python\nimport no_such_module\n\ndef test_add():\n    assert add([1]) == 2\n```\nThen:\n```python\n"
              "try:\n    import math\nexcept ImportError:\n    math = None\n\n\ndef add(xs):\n"
              "    return math.fsum(double(x) for x in xs)\n```")
    program = program_of(answer, "add", PROMPT)
    assert run(program, "add")([1, 2]) == 6
    assert "no_such_module" not in program and "print(" not in program


def test_unfenced_code_that_defines_the_entry_point_beats_a_longer_example_after_the_prose():
    answer = ("def add(xs):\n    return sum(xs)\n\nYou can use it like this:\nimport random\n"
              "xs = [random.random() for _ in range(10)]\nys = sorted(xs)\nprint(add(ys))\n")
    assert run(program_of(answer, "add", PROMPT), "add")([1, 2]) == 3
