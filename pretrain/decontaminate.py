"""Benchmark decontamination of a training corpus: a file is dropped when it shares a long n-gram with a suite's
canonical solution, or contains one of its prompts' docstrings (the task description).

The reference is BigCode's decontamination of The Stack before StarCoder (Li et al., 2023, sec. 5.2: files that
contain HumanEval/MBPP docstrings or solutions were removed). Matching is on code tokens (identifiers, numbers, and
each punctuation character; whitespace and line breaks ignored), so re-indenting or re-wrapping a solution does not
hide it. Solutions: any shared run of NGRAM tokens (the order of GPT-3's 13-word overlap, in code tokens, which are
shorter than words) that holds at least one name: a run of numbers and punctuation alone is a data constant that
code writes independently (the days-in-month table `31, 30, 31, ...` of HumanEval/124's solution would otherwise
remove the stdlib's calendar.py and datetime.py). Docstrings: the description part (before the examples), whole,
when it is at least MIN_DOC_TOKENS tokens long, so that a generic one-liner ("Return the sum.") does not remove half
of a corpus. The suites come from `tasks`, the registry the harness scores with.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NGRAM = 20
MIN_DOC_TOKENS = 8
TOKEN = re.compile(r"\w+|[^\w\s]")
NAME = re.compile(r"[^\W\d]")  # a token that starts with a letter or underscore
DOCSTRING = re.compile(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', re.S)
EXAMPLES = re.compile(r"^\s*(>>>|assert\b|for example|example|examples?:|e\.g\.)", re.I | re.M)


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def description(prompt: str) -> str:
    """The task description of a prompt: its last docstring (or the prompt itself) up to the first example."""
    docs = [a or b for a, b in DOCSTRING.findall(prompt)]
    text = docs[-1] if docs else prompt
    m = EXAMPLES.search(text)
    return text[: m.start()] if m else text


@dataclass(frozen=True)
class Hit:
    suite: str
    task_id: str
    why: str  # "solution n-gram" or "docstring"


class Decontaminator:
    """An index of the suites' solutions (n-gram hashes) and docstrings (keyed by their first tokens)."""

    def __init__(self, suite_names: list[str]):
        from tasks import load_suite

        self.suites = list(suite_names)
        self.solution_grams: dict[int, tuple[str, str]] = {}
        self.docs: dict[int, list[tuple[str, str, tuple[str, ...]]]] = {}
        for name in self.suites:
            for task in load_suite(name).tasks:
                sol = tokens(task.canonical_solution or "")
                names = [0]  # names[i]: how many of sol[:i] are names (identifiers or keywords)
                for t in sol:
                    names.append(names[-1] + bool(NAME.match(t)))
                for i in range(len(sol) - NGRAM + 1):
                    if names[i + NGRAM] > names[i]:
                        self.solution_grams.setdefault(hash(tuple(sol[i:i + NGRAM])), (name, task.task_id))
                doc = tokens(description(task.prompt))
                if len(doc) >= MIN_DOC_TOKENS:
                    key = hash(tuple(doc[:MIN_DOC_TOKENS]))
                    self.docs.setdefault(key, []).append((name, task.task_id, tuple(doc)))

    def check(self, content: str) -> Hit | None:
        """The first contamination found in a file, or None."""
        toks = tokens(content)
        for i in range(len(toks) - MIN_DOC_TOKENS + 1):
            cands = self.docs.get(hash(tuple(toks[i:i + MIN_DOC_TOKENS])))
            for suite, task_id, doc in cands or ():
                if tuple(toks[i:i + len(doc)]) == doc:
                    return Hit(suite, task_id, "docstring")
            if i <= len(toks) - NGRAM:
                hit = self.solution_grams.get(hash(tuple(toks[i:i + NGRAM])))
                if hit:
                    return Hit(hit[0], hit[1], "solution n-gram")
        return None


def resolve_suites(spec: str | None) -> list[str]:
    """`--decontaminate`: 'all' (default) is every registered suite; 'none' opts out; else a comma list."""
    from tasks import registry

    names = registry.names()
    if spec in (None, "", "all"):
        return list(names)
    if spec == "none":
        return []
    chosen = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in names]
    if unknown:
        from common.errors import UserError

        raise UserError(f"--decontaminate: unknown suite(s) {', '.join(unknown)}: use all, none, or some of "
                        f"{', '.join(names)}")
    return chosen
