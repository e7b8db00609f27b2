"""GPT-2 byte-level BPE: token characters back to bytes (stop-sequence spotting, bits per byte)."""
from __future__ import annotations


def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: token characters -> bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def piece_text(piece: str, byte_decoder: dict[str, int]) -> str:
    """Text of one byte-level token (partial UTF-8 shows as U+FFFD; only used to spot ASCII stop sequences)."""
    if piece is None:
        return ""
    if all(ch in byte_decoder for ch in piece):
        return bytes(byte_decoder[ch] for ch in piece).decode("utf-8", errors="replace")
    return piece  # special tokens
