"""`UserError` and the CLI runner that turns it into one line on stderr and a non-zero exit."""
from __future__ import annotations

import sys


class UserError(Exception):
    """A mistake the user can fix. The CLI prints its message as one line and exits non-zero."""


def run_cli(args, on_interrupt: str) -> int:
    """Runs a parsed command: a UserError is one line on stderr and exit 2 (no traceback); bugs keep theirs."""
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {on_interrupt}", file=sys.stderr)
        return 130
