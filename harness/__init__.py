"""codeparrot-harness, the app on top: score code-LM checkpoints (perplexity, pass@k in a Docker sandbox), gate them
into main and publish the leaderboard.

Layers (dependencies point down only; tests/test_layers.py checks it):

    harness            CLI (cli.py), evaluation (evaluate.py), gate (gate.py), leaderboard (leaderboard.py)
      ├── pretrain     the training side      ├── sandbox   runs untrusted code      ├── tasks   suites, pass@k
    checkpoint_hub + common                    the checkpoint store; errors, atomic writes, JSONL, progress, paths

Data crossing a layer has a declared shape: TrainingState (checkpoint_hub.state), Summary (harness.summary),
EvalConfig/SandboxConfig/GenParams (harness.config), GateResult (harness.gate), Job/Verdict (sandbox.jobs).
"""
__version__ = "0.1.0"
