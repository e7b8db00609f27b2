"""Where caches live: $HARNESS_CACHE, else ~/.cache/codeparrot-harness."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "codeparrot-harness"))
