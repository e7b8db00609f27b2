"""tqdm bars with a rate, on stderr; redrawn rarely when stderr is a log file rather than a terminal."""
import sys


def progress(iterable=None, **kw):
    from tqdm import tqdm

    kw.setdefault("file", sys.stderr)
    kw.setdefault("mininterval", 0.2 if kw["file"].isatty() else 15.0)
    kw.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kw)
