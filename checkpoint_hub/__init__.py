"""The checkpoint store, with Hugging Face Hub semantics: branch = training run, commit = checkpoint, `main` = gated.

Both sides import it: training pushes checkpoints, evaluation resolves, reads and merges them. Two stores behind one
interface (`base.Hub`): a local bare git repository (`local`, the embedded default) and `hf://org/name` through
huggingface_hub (`hf`). `state.TrainingState` is the declared shape of the `training_state.json` every checkpoint
commit carries. The rest of the code calls `open_hub` and does not know which store it talks to.
"""
from __future__ import annotations

from checkpoint_hub.base import MAIN, Commit, Hub
from checkpoint_hub.local import check_repo
from checkpoint_hub.state import TRAINING_STATE, TrainingState

__all__ = ["MAIN", "Commit", "Hub", "TRAINING_STATE", "TrainingState", "check_repo", "open_hub"]


def open_hub(spec: str, create: bool = False) -> Hub:
    """`hf://org/name` -> HFHub; anything else is a local path -> LocalHub (created when `create`)."""
    if spec.startswith("hf://"):
        from checkpoint_hub.hf import HFHub

        return HFHub(spec[len("hf://"):], create=create)
    from checkpoint_hub.local import LocalHub

    return LocalHub(spec, create=create)
