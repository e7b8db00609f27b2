"""An `evaluate` metric: pass@k from verdicts the harness already produced (it executes nothing).

    import evaluate, tasks.metrics
    metric = evaluate.load(tasks.metrics.PASS_AT_K)          # a local path: works offline
    metric.compute(predictions=[3, 0, 10], references=[10, 10, 10], k=[1, 10])      # c and n per problem
    metric.compute(predictions=[[True, False], [False, False]], references=["HumanEval/0", "HumanEval/1"], k=[1, 2])
"""
import datasets
import evaluate

from tasks.passk import pass_at_k

_DESCRIPTION = """The unbiased pass@k estimator of Chen et al. (2021), 1 - C(n-c, k)/C(n, k) per problem, averaged over
problems, with the standard error of that mean. Unlike `code_eval` it does not run code: give it per-problem
counts (predictions = correct samples c, references = samples n) or per-problem verdict lists (predictions =
list of bools, references = task ids)."""

_CITATION = """@article{chen2021codex,
  title={Evaluating Large Language Models Trained on Code},
  author={Chen, Mark and others},
  journal={arXiv preprint arXiv:2107.03374},
  year={2021}
}"""

_KWARGS = """
Args:
    predictions: per problem, the number of correct samples c, or the list of verdicts (bools).
    references: per problem, the number of samples n (with counts), or the task id (with verdict lists).
    k: the k values (default [1, 10, 100]); a k above some problem's n is left out.
Returns:
    {"pass@k": mean, "pass@k_stderr": standard error, ...} for each reported k.
"""


class PassAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Sequence(datasets.Value("bool")),
                                   "references": datasets.Value("string")}),
            ],
            reference_urls=["https://arxiv.org/abs/2107.03374"],
        )

    def _compute(self, predictions, references, k=(1, 10, 100)):
        if predictions and isinstance(predictions[0], list):
            counts = {str(ref): (len(v), int(sum(v))) for ref, v in zip(references, predictions)}
        else:
            counts = {str(i): (int(n), int(c)) for i, (c, n) in enumerate(zip(predictions, references))}
        table, _ = pass_at_k(counts, k)
        out = {}
        for k, est in table.items():
            out[f"pass@{k}"] = est.value
            out[f"pass@{k}_stderr"] = est.stderr
        return out
