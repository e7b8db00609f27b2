"""What this machine multiplies fast: the CPU's identity and ISA flags, and matmul rates from short, time-capped
probes cached once per machine (keyed by CPU or GPU model, torch version, dtype and shapes) under the cache root.

Why cached and capped: the same kind of machine is an Intel CPU with AMX one day (bf16 ~5x faster than fp32) and an
AMD EPYC with AVX2 only the next (bf16 ~80x slower: 0.9 vs 77 GFLOP/s), so nothing here is assumed from a name; but
a probe that multiplies 2048 x 2048 bf16 matrices on the AVX2 CPU takes minutes, so every probe stops at a time
budget, and its answer is kept on disk for the next run.
"""
from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from common import atomic
from common.paths import cache_root

FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def cpu_identity() -> dict:
    """{"model": the CPU's model name, "flags": which of FLAGS /proc/cpuinfo lists}."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux
        pass
    return {"model": model, "flags": [f for f in FLAGS if f in flags]}


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_identity()["model"]


def _cache_path(kind: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root() / "hardware" / f"{kind}-{digest}.json"


def _normalise(key: dict) -> dict:
    return json.loads(json.dumps({**key, "torch": torch.__version__}))  # as it reads back (tuples become lists)


def cached(kind: str, key: dict, measure, refresh: bool = False):
    """`measure()` once per machine and key; later calls read the answer from the cache root (refresh: measure
    again and keep the new answer, as a bench does, which is the measuring instrument)."""
    key = _normalise(key)
    path = _cache_path(kind, key)
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key and not refresh:
            return saved["value"]
    except (OSError, ValueError, KeyError):
        pass
    value = measure()
    try:
        atomic.write_json(path, {"key": key, "value": value})
    except OSError:  # a read-only cache is no reason to fail a run; it is measured again next time
        pass
    return value


def matmul_seconds(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, budget_s: float) -> float:
    """The fastest (m, k) x (k, n) product in `dtype` seen within about `budget_s` seconds (one untimed warm-up, then
    at least one timed product). The product goes into one preallocated output: a fresh result each time would be
    page-faulted in and measure the allocator, not the matmul."""
    g = torch.Generator(device=device).manual_seed(0)  # private: the global RNG drives dropout and must not move
    a = torch.randn(m, k, device=device, generator=g).to(dtype)
    b = torch.randn(k, n, device=device, generator=g).to(dtype)
    c = torch.empty(m, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.mm(a, b, out=c)
    sync()
    best, until = float("inf"), time.perf_counter() + budget_s
    while True:
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        sync()
        now = time.perf_counter()
        best = min(best, now - t)
        if now >= until:
            return best


def matmul_rate(shapes: list[tuple[int, int, int]], dtype: torch.dtype, device: torch.device,
                budget_s: float = 0.5) -> float:
    """FLOP/s over a list of (m, k, n) products (repeats weigh more): the total work over the sum of each product's
    best time. Not cached; see peak_flops and model_peak_flops."""
    unique = sorted(set(shapes))
    per = budget_s / len(unique) / 2
    # two passes, each product's best of both: a moment of contention on a shared machine does not become the answer
    seconds = {s: matmul_seconds(*s, dtype, device, per) for s in unique}
    seconds = {s: min(t, matmul_seconds(*s, dtype, device, per)) for s, t in seconds.items()}
    return sum(2 * m * k * n for m, k, n in shapes) / sum(seconds[s] for s in shapes)


def affordable_rows(k: int, n: int, flops_per_row: float, dtype: torch.dtype, device: torch.device,
                    budget_s: float, most: int, least: int = 16) -> int:
    """How many rows a probe can use and still finish in about `budget_s`: a (64, k, n) pilot product gives the rate,
    and each shape costs a warm-up and a timed product. Where a dtype is emulated (bf16 without AVX512-BF16 or AMX:
    0.9 GFLOP/s) that keeps the probe in budget at a smaller size instead of taking minutes."""
    rate = 2 * 64 * k * n / matmul_seconds(64, k, n, dtype, device, 0.0)
    return int(max(least, min(most, budget_s * rate / (2 * flops_per_row))))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).split(".")[-1]


def peak_flops(dtype: torch.dtype, device: torch.device, budget_s: float = 0.3, refresh: bool = False) -> float:
    """The device's square-matmul rate in `dtype` (1024 on a CPU, 4096 on a GPU, smaller where the dtype is too slow
    for the budget): the conventional MFU denominator."""
    most = 4096 if device.type == "cuda" else 1024

    def measure():
        rate = 2 * 256**3 / matmul_seconds(256, 256, 256, dtype, device, 0.0)  # a pilot gives the rate
        n = int(max(256, min(most, (budget_s / 2 * rate / 4) ** (1 / 3))))  # a warm-up and a timed product
        return matmul_rate([(n, n, n)], dtype, device, budget_s / 2)

    return cached("square", {"device": device_name(device), "dtype": _dtype_name(dtype), "n": most}, measure, refresh)


def model_shapes(config, rows: int, loss_rows: int | None = None) -> list[tuple[int, int, int]]:
    """The (m, k, n) products of one training step of a GPT-style decoder, per layer: each linear's forward, its input
    gradient and its weight gradient; and the output projection over the vocabulary (over `loss_rows` at a time
    where the loss is chunked). `rows` is batch x tokens."""
    def get(*names):
        return next(getattr(config, a) for a in names if getattr(config, a, None) is not None)

    d = get("n_embd", "hidden_size", "dim")
    layers = get("n_layer", "num_hidden_layers", "n_layers")
    inner = getattr(config, "n_inner", None) or getattr(config, "intermediate_size", None) or 4 * d
    vocab = get("vocab_size")
    shapes = []
    for k, n in [(d, 3 * d), (d, d), (d, inner), (inner, d)]:
        shapes += [(rows, k, n), (rows, n, k), (k, rows, n)] * layers  # forward, input gradient, weight gradient
    v = min(loss_rows or rows, rows)
    shapes += [(v, d, vocab), (v, vocab, d), (vocab, v, d)] * (rows // v)
    return shapes


def model_peak_flops(config, rows: int, dtype: torch.dtype, device: torch.device, loss_rows: int | None = None,
                     budget_s: float = 0.6, refresh: bool = False) -> float:
    """The rate this device reaches on the products the model really multiplies (model_shapes): the MFU denominator
    that shows the headroom left (a 256-wide model never runs a 2048 x 2048 product). Probed at up to 1024 rows
    (efficiency changes little past that), fewer where the dtype is too slow for the budget."""
    d = model_shapes(config, 1)[0][1]

    def measure():
        per_row = sum(2 * m * k * n for m, k, n in set(model_shapes(config, 1)))  # each unique product, one row
        probe_rows = affordable_rows(d, d, per_row, dtype, device, budget_s / 2, most=min(rows, 1024))
        shapes = model_shapes(config, probe_rows, min(loss_rows or rows, probe_rows))
        return matmul_rate(shapes, dtype, device, budget_s / 2)

    return cached("model", _model_key(config, rows, dtype, device, loss_rows), measure, refresh)


def _model_key(config, rows, dtype, device, loss_rows) -> dict:
    return {"device": device_name(device), "dtype": _dtype_name(dtype), "rows": rows, "loss_rows": loss_rows,
            "shapes": sorted(set(model_shapes(config, 1)))}


def forget_model_peak(config, rows: int, dtype: torch.dtype, device: torch.device, loss_rows: int | None = None):
    """Drop a cached model-shape rate, so the next run probes again: for when a run beat it, which means the probe
    ran while something else had the cores (a cached answer must not keep a busy moment forever)."""
    _cache_path("model", _normalise(_model_key(config, rows, dtype, device, loss_rows))).unlink(missing_ok=True)


def bf16_speedup(device: torch.device = torch.device("cpu")) -> float:
    """How many times faster bf16 matmuls run than fp32 here (below 1: slower), at 512 x 512, time-capped: on a CPU
    without native bf16 one such product takes about 0.3 s."""
    def measure():
        fp32 = matmul_seconds(512, 512, 512, torch.float32, device, 0.15)
        bf16 = matmul_seconds(512, 512, 512, torch.bfloat16, device, 0.15)
        return fp32 / bf16

    return cached("bf16-speedup", {"device": device_name(device)}, measure)
