"""codeparrot-harness: score code-LM checkpoints (perplexity, HumanEval pass@k in a Docker sandbox) and gate them into main."""
__version__ = "0.1.0"
