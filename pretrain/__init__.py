"""The training side: corpus building and filtering (corpus.py), tokenizer training (tokenizer.py), model presets
(models.py) and the Accelerate training loop (train.py) that pushes every checkpoint to the hub as a commit with its
`TrainingState`. Imports only `checkpoint_hub` and `common`: it can be used without the evaluation app."""
