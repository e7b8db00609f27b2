"""pass@k: the unbiased estimator of Chen et al. (2021), per problem, averaged over problems with a standard error."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import math
import statistics

from common.errors import UserError


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), computed as a product so it stays exact-ish for n in the thousands.

    C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i); no factorials, no overflow.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or k > n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))  # pure Python: no numpy import to pay


def parse_ks(spec: str | Iterable[int]) -> list[int]:
    if isinstance(spec, str):
        try:
            ks = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--k takes comma-separated integers like 1,10,100, got {spec!r}")
    else:
        ks = [int(x) for x in spec]
    if not ks or any(k < 1 for k in ks):
        raise UserError(f"--k needs positive integers, got {spec!r}")
    return sorted(set(ks))


@dataclass(frozen=True)
class PassK:
    """One pass@k: the mean over problems, its standard error, and how many problems it averages."""
    value: float
    stderr: float
    problems: int


def pass_at_k(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> tuple[dict[int, PassK], list[str]]:
    """counts: task_id -> (n, c). Returns ({k: PassK}, notes).

    A pass@k is reported only when every scored problem has n >= k; the standard error is that of the
    mean over problems (sample std with ddof=1 over sqrt(#problems)), the spread a different draw of
    problems from the same distribution would show.
    """
    out, notes = {}, []
    if not counts:
        return out, ["no problem was scored"]
    min_n = min(n for n, _ in counts.values())
    for k in sorted(set(ks)):
        if k > min_n:
            short = sum(1 for n, _ in counts.values() if n < k)
            notes.append(f"pass@{k} omitted: {short} problem(s) have fewer than {k} samples (min n = {min_n})")
            continue
        per = [estimate_pass_at_k(n, c, k) for n, c in counts.values()]
        stderr = statistics.stdev(per) / math.sqrt(len(per)) if len(per) > 1 else 0.0
        out[k] = PassK(statistics.fmean(per), stderr, len(per))
    return out, notes
