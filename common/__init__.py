"""The bottom layer: what every package needs and nothing else. Imports nothing of this project.

- `errors`: `UserError` (a mistake the user can fix, shown as one line) and `run_cli` (the CLI runner).
- `atomic`: files written whole or not at all.
- `jsonl`: reading JSON Lines, strictly (user files) or tolerantly (append-only caches of killed runs).
- `progress`: tqdm bars with a rate.
- `paths`: where caches live.
"""
