"""The isolated oracle's channel: plain data encoded by exact type, length-prefixed JSON over a pair of pipes, and the
stub (`Remote`) that stands for a candidate's function in the judge."""
import builtins
import collections
import json
import math
import os
import re

MAX_MESSAGE = 64 * 2**20  # bytes of one call or reply on the channel
MAX_DEPTH = 200  # nesting of plain data (also what stops a cyclic structure)
DICT_LIKE = (collections.Counter, collections.OrderedDict, collections.defaultdict)
JSON_SCALARS = (type(None), bool, int, float, str)
ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))  # built once: json.dumps(**kw) builds one per call


class NotPlainData(Exception):
    """A value that may not cross between judge and candidate."""


class ProtocolError(Exception):
    """The candidate's side of the channel sent something that is not a well-formed reply."""


class CandidateError(Exception):
    """The candidate raised an exception that is not one of Python's built-in exceptions."""


class CandidateGone(Exception):
    """The candidate process ended (or closed the channel) while the judge waited for it."""


def encode_plain(x, depth=0):
    """Plain data -> JSON-able tagged form. Exact types only: a subclass of int, str, list... is not plain data."""
    if depth > MAX_DEPTH:
        raise NotPlainData("data nested too deep (or cyclic)")
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:  # beyond 64 bits in hex: decimal conversion of huge ints is capped (sys.set_int_max_str_digits)
        return x if -2**63 <= x < 2**63 else {"i": hex(x)}
    if t is float:
        return x if math.isfinite(x) else {"f": repr(x)}
    if t is complex:
        return {"c": [encode_plain(x.real, depth + 1), encode_plain(x.imag, depth + 1)]}
    if t is bytes:
        return {"b": x.decode("latin-1")}
    if t is list:
        if all(type(v) in JSON_SCALARS and (type(v) is not float or math.isfinite(v))
               and (type(v) is not int or -2**63 <= v < 2**63) for v in x):
            return x  # the common case, a flat list of small scalars, goes to json as it is
        return [encode_plain(v, depth + 1) for v in x]
    if t is tuple:
        return {"t": [encode_plain(v, depth + 1) for v in x]}
    if t is dict:
        return {"d": [[encode_plain(k, depth + 1), encode_plain(v, depth + 1)] for k, v in x.items()]}
    if t is set or t is frozenset:
        return {"s" if t is set else "fs": [encode_plain(v, depth + 1) for v in x]}
    if t in DICT_LIKE:  # exactly these standard-library classes (a subclass could lie): sent as the dict they hold
        return {"d": [[encode_plain(k, depth + 1), encode_plain(v, depth + 1)] for k, v in x.items()]}
    if t is re.Match:  # not serialisable; as EvalPlus does for MBPP's regex tasks, only "not None" crosses
        return True
    raise NotPlainData(f"an object of type {t.__name__!s:.60}, which is not plain data")


def decode_plain(x, depth=0):
    """The tagged form -> plain data; anything else is a ProtocolError. Builds only built-in types."""
    if depth > MAX_DEPTH:
        raise ProtocolError("data nested too deep")
    t = type(x)
    if x is None or t is bool or t is int or t is float or t is str:
        return x
    if t is list:
        if not any(type(v) is list or type(v) is dict for v in x):
            return list(x)  # scalars only; a copy, so that the message stays what was sent (mutation check)
        return [decode_plain(v, depth + 1) for v in x]
    if t is dict and len(x) == 1:
        (tag, v), = x.items()
        try:
            if tag == "f" and v in ("nan", "inf", "-inf"):
                return float(v)
            if tag == "i" and type(v) is str and len(v) <= MAX_MESSAGE:
                return int(v, 16)
            if tag == "c" and type(v) is list and len(v) == 2:
                re_, im = decode_plain(v[0], depth + 1), decode_plain(v[1], depth + 1)
                if type(re_) is float and type(im) is float:
                    return complex(re_, im)
            if tag == "b" and type(v) is str:
                return v.encode("latin-1")
            if type(v) is list:
                items = [decode_plain(i, depth + 1) for i in v] if tag != "d" else None
                if tag == "t":
                    return tuple(items)
                if tag == "s":
                    return set(items)
                if tag == "fs":
                    return frozenset(items)
                if tag == "d" and all(type(kv) is list and len(kv) == 2 for kv in v):
                    return {decode_plain(k, depth + 1): decode_plain(val, depth + 1) for k, val in v}
        except (TypeError, ValueError, UnicodeError) as exc:  # an unhashable key, a bad latin-1 string...
            raise ProtocolError(f"malformed {tag!r} value: {exc}")
    raise ProtocolError(f"not plain data: {str(x)[:60]}")


class Channel:
    """Length-prefixed JSON messages over a pair of pipes (reads are buffered: one call, usually one read)."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd
        self.buf = b""
        self.seq = 0

    def send(self, obj):
        data = ENCODER.encode(obj).encode()
        data = len(data).to_bytes(4, "big") + data
        while data:
            data = data[os.write(self.wfd, data):]

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = os.read(self.rfd, max(1 << 16, n - len(self.buf)))
            if not chunk:
                raise CandidateGone("the candidate process ended before it answered")
            self.buf += chunk

    def recv(self):
        self._fill(4)
        n = int.from_bytes(self.buf[:4], "big")
        if n > MAX_MESSAGE:
            raise ProtocolError(f"a message of {n} bytes (at most {MAX_MESSAGE})")
        self._fill(4 + n)
        data, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"not JSON: {exc}")


def builtin_exception(name, message):
    """The candidate's exception, raised in the judge: a built-in type by name (so `except ValueError` in a test
    behaves as inline), anything else as CandidateError."""
    cls = getattr(builtins, name, None) if type(name) is str else None
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(message)
        except Exception:
            pass
    return CandidateError(f"{str(name)[:60]}: {message}")


def raise_from_reply(exc):
    if type(exc) is not list or len(exc) != 2 or not all(type(e) is str for e in exc):
        raise ProtocolError("malformed exception")
    raise builtin_exception(exc[0], exc[1][:1000])


def copy_back(original, new):
    """In-place mutations the candidate made to an argument, applied to the judge's object."""
    if type(original) is list and type(new) is list:
        original[:] = new
    elif type(original) is dict and type(new) is dict:
        original.clear()
        original.update(new)
    elif type(original) is set and type(new) is set:
        original.clear()
        original.update(new)


class Remote:
    """Stands for a function of the candidate in the judge's namespace: each call crosses the channel."""

    def __init__(self, channel, name):
        self._channel, self._name = channel, name

    def __repr__(self):
        return f"<candidate function {self._name} (isolated)>"

    def __call__(self, *args, **kwargs):
        return self._call(args, kwargs, None)

    def call_limited(self, cpu_s, wall_s, *args):
        """One call under a time limit armed in the candidate's process (tasks/per_input.py's per-input limits)."""
        return self._call(args, {}, [float(cpu_s), float(wall_s)])

    def _call(self, args, kwargs, limit):
        ch = self._channel
        try:
            request = {"call": self._name, "seq": ch.seq, "args": [encode_plain(a) for a in args],
                       "kwargs": {k: encode_plain(v) for k, v in kwargs.items()}}
        except NotPlainData as exc:
            raise TypeError(f"isolated oracle: an argument cannot be sent to the candidate ({exc})")
        if limit is not None:
            request["limit"] = limit
        ch.seq += 1
        ch.send(request)
        reply = ch.recv()
        if type(reply) is not dict or reply.get("seq") != request["seq"]:
            raise ProtocolError("a reply that does not answer this call")
        mutated = reply.get("mutated", {})
        if type(mutated) is not dict:
            raise ProtocolError("malformed mutations")
        for i, value in mutated.items():
            if type(i) is str and i.isdigit() and int(i) < len(args):
                copy_back(args[int(i)], decode_plain(value))
        if "raise" in reply:
            raise_from_reply(reply["raise"])
        if "return" not in reply:
            raise ProtocolError("a reply with neither a value nor an exception")
        return decode_plain(reply["return"])
