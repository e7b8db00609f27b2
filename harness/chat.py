"""Instruct and chat models: the instruction each task is asked as, the chat template that renders it for a local
checkpoint, and the program pulled out of the answer (fenced block, else the text, then an AST sanitiser).

A suite whose prompt is an instruction already (`Task.instruct`: DataFrameBench) is asked it as it is, and its
answer is judged by the suite's own extraction (its `Task.program`), not by the sanitiser below.

The instruction follows EvalPlus's: the suite's prompt inside a code block, with a request to complete it and to
answer with a self-contained program in one fenced block. The sanitiser is ours, after EvalPlus's idea: of the
answer's top-level statements it keeps the imports, the entry-point function and the definitions it reaches by name,
and drops the rest (tests, prints, `if __name__ == "__main__":`), so that an answer that also shows how to call the
function is judged on the function alone.
"""
from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

from common.errors import UserError

INSTRUCTION = ("Complete the following Python code. Reply with a self-contained Python program in one markdown code "
               "block that defines `{entry_point}`.")

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)


def messages(prompt: str, entry_point: str) -> list[dict]:
    """The chat a task is asked as: one user turn (EvalPlus-style: the instruction, then the prompt as code)."""
    text = INSTRUCTION.format(entry_point=entry_point) + "\n```python\n" + prompt.rstrip() + "\n```\n"
    return [{"role": "user", "content": text}]


def task_messages(task) -> list[dict]:
    """A task's chat: its prompt as the turn where the suite's prompt is an instruction already (DataFrameBench),
    else wrapped as `messages` does it."""
    own = task.chat_messages()  # a suite's own instruction wording (BigCodeBench's)
    if own:
        return own
    if task.instruct:
        return [{"role": "user", "content": task.prompt}]
    return messages(task.prompt, task.entry_point)


def read_template(path: str | Path | None) -> str | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--chat-template {path} does not exist: pass a Jinja chat template file")
    return path.read_text(encoding="utf-8")


def render(tokenizer, chat: list[dict], template: str | None, where: str) -> str:
    """The text a local checkpoint generates from: its tokenizer's chat template (or `template`, from
    --chat-template), with the assistant turn opened."""
    if template is None and not getattr(tokenizer, "chat_template", None):
        raise UserError(f"{where}: its tokenizer has no chat template, so --chat cannot build a prompt: pass "
                        "--chat-template FILE (a Jinja template), or drop --chat for a base model")
    try:
        return tokenizer.apply_chat_template(chat, chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
    except Exception as exc:  # a Jinja syntax or render error in the template: the user's file or the checkpoint's
        raise UserError(f"{where}: the chat template does not render ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160]}): fix the template or pass another --chat-template")


def extract_code(answer: str, entry_point: str) -> str:
    """The code of a chat answer: the fenced block that defines the entry point (else the longest fenced block), or
    the whole text when there is no fence. A block indented inside a markdown list is dedented."""
    blocks = [(lang.lower(), textwrap.dedent(body)) for lang, body in FENCE.findall(answer)]
    if not blocks:
        return answer
    python = [b for lang, b in blocks if lang in ("", "python", "py", "python3")] or [b for _, b in blocks]
    defining = [b for b in python if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\b", b, re.M)]
    chosen = max(defining or python, key=len)
    return "\n".join(_lent(python, chosen) + [chosen])


def _lent(blocks: list[str], chosen: str) -> list[str]:
    """The functions and classes of the other blocks that give a name the chosen one uses without defining (a helper
    shown in a block of its own), with those blocks' imports; nothing else of them (their tests, their prints)."""
    try:
        tree = ast.parse(chosen)
    except (SyntaxError, ValueError):
        return []
    own = {name for n in tree.body for name in _defined(n)} | _bound_by_imports(tree)
    lacking = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - own
    lent = []
    for block in blocks:
        try:
            other = ast.parse(block) if block is not chosen else None
        except (SyntaxError, ValueError):
            continue
        defs = [n for n in (other.body if other else []) if isinstance(n, DEFINITIONS) and n.name not in own]
        if any(n.name in lacking for n in defs):  # all its definitions (a helper may call another; the sanitiser
            # drops what the entry point does not reach)
            lent += [ast.unparse(n) for n in other.body if _imports(n)] + [ast.unparse(n) for n in defs]
            own |= {n.name for n in defs}
    return lent


def _bound_by_imports(tree: ast.Module) -> set[str]:
    return {(a.asname or a.name).split(".")[0] for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in n.names}


CODE_START = re.compile(r"(async\s+def|def|class|import|from|@)\b")


def _parse_prefix(code: str, entry_point: str = "") -> tuple[ast.Module, list[str]] | None:
    """The longest run of whole lines that parses, and those lines: from the top, or when prose comes first (an
    answer without a fence) from a line that starts a definition or an import; cut at the end, since a model that
    stops mid-statement still gave a function. A run that defines `entry_point` beats a longer one that does not
    (the function, then prose, then a longer example of its use)."""
    lines = code.splitlines()
    best, best_key = None, None
    for start in [0] + [i for i, line in enumerate(lines) if i and CODE_START.match(line)]:
        if best_key is not None and best_key >= (True, len(lines) - start):
            break  # no later start can do better
        for end in range(len(lines), start, -1):
            try:
                tree = ast.parse("\n".join(lines[start:end]))
            except (SyntaxError, ValueError):
                continue
            key = (any(entry_point in _defined(n) for n in tree.body), end - start)
            if best_key is None or key > best_key:
                best, best_key = (tree, lines[start:end]), key
            break
    return best


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, DEFINITIONS):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _imports(node: ast.stmt) -> bool:
    """An import, or a `try:` that imports (`try: import numpy as np` / `except ImportError: np = None`)."""
    if isinstance(node, ast.Try):
        return any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body)
    return isinstance(node, (ast.Import, ast.ImportFrom))


def _used(node: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def sanitize(code: str, entry_point: str, prompt: str = "") -> str:
    """The program to judge: the imports (the prompt's too, which answers often leave out), the prompt's helpers the
    answer does not redefine, the entry point, and the top-level functions, classes and assignments it needs, in
    their original order. Code without the entry point keeps every import and definition; code that does not parse
    at all is returned as it is (the sandbox says why)."""
    parsed = _parse_prefix(code, entry_point)
    if parsed is None:
        return code
    tree, lines = parsed

    def source(node: ast.stmt) -> str:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return "\n".join(lines[start - 1:node.end_lineno])

    imports = [n for n in tree.body if _imports(n)]
    definitions = [n for n in tree.body if _defined(n)]
    by_name: dict[str, list[ast.stmt]] = {}
    for n in definitions:
        for name in _defined(n):
            by_name.setdefault(name, []).append(n)
    if entry_point in by_name:
        keep, todo = set(), [entry_point]
        while todo:
            for n in by_name.get(todo.pop(), []):
                if id(n) not in keep:
                    keep.add(id(n))
                    todo += sorted(_used(n) - {entry_point})
        definitions = [n for n in definitions if id(n) in keep]
    body = sorted(imports + definitions, key=lambda n: n.lineno)
    parsed_prompt = _parse_prefix(prompt) if prompt.strip() else None
    given = parsed_prompt[0].body if parsed_prompt else []
    have = {ast.unparse(n) for n in imports}
    header = [ast.unparse(n) for n in given if _imports(n) and ast.unparse(n) not in have]
    # the prompt's own helpers (HumanEval/38's encode_cyclic) that the answer calls without repeating them
    helpers = [ast.unparse(n) for n in given if _defined(n) and not _defined(n) & (set(by_name) | {entry_point})]
    return "\n".join(header + helpers + [source(n) for n in body]) + "\n"


def program_of(answer: str, entry_point: str, prompt: str) -> str:
    """A chat answer -> the program judged: extraction, then sanitising."""
    return sanitize(extract_code(answer, entry_point), entry_point, prompt)
