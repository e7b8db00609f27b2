"""`evaluate` metric modules shipped with the package; pass their path to `evaluate.load` (offline)."""
from pathlib import Path

PASS_AT_K = str(Path(__file__).resolve().parent / "pass_at_k")
