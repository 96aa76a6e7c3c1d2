"""Measuring tools of the benchmarks: interleaved timing with medians, FLOP counting, the
machine's measured matrix-multiply peak, where a step's operator time goes, and JSON-line output.

Benchmarks on a shared machine compare cases *side by side*: every repeat runs each case once, in a rotating order,
and the reported figures are medians over repeats and medians of the per-repeat ratios (a paired comparison that
cancels slow drifts of the machine's load), never single absolute timings.

Model FLOPs utilisation (MFU, Chowdhery et al., "PaLM", 2022, appendix B) is the FLOP/s a training step achieves
(FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``) divided by the peak FLOP/s of the hardware, here
measured by a large matrix multiplication in the same run rather than taken from a datasheet.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from monai_moco.utils.cpu import bf16_native

__all__ = [
    "OP_CATEGORIES",
    "count_flops",
    "cpu_model",
    "machine_info",
    "matmul_peak_flops",
    "median",
    "op_category",
    "op_time_shares",
    "paired_ratios",
    "print_json_line",
    "time_interleaved",
]


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence.

    Args:
        values: the measurements.

    Returns:
        ``statistics.median(values)`` as a float.

    Raises:
        ValueError: for an empty sequence.

    Example::

        median([3.0, 1.0, 2.0])  # 2.0
    """
    if len(values) == 0:
        raise ValueError("median of an empty sequence.")
    return float(statistics.median(values))


def time_interleaved(
    runners: Mapping[str, Callable[[], int]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Throughput of several runners measured side by side: each repeat runs every runner once, in rotating order.

    Args:
        runners: name -> ``run() -> items processed`` (e.g. images of a few training steps).
        repeats: timed repeats per runner.
        warmup: untimed calls of each runner first (allocator, autotuning, compilation).

    Returns:
        name -> items per second of each repeat, in repeat order (so ``paired_ratios`` can pair them).

    Raises:
        ValueError: when ``repeats < 1`` or ``runners`` is empty.

    Example::

        rates = time_interleaved({"ours": run_ours, "ref": run_ref}, repeats=5)
        ratio = median(paired_ratios(rates["ours"], rates["ref"]))
    """
    if repeats < 1 or not runners:
        raise ValueError(f"time_interleaved needs repeats >= 1 and at least one runner, got {repeats}, {list(runners)}.")
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            items = runners[name]()
            rates[name].append(items / (time.perf_counter() - start))
    return rates


def paired_ratios(numerator: Sequence[float], denominator: Sequence[float]) -> list[float]:
    """Per-repeat ratios ``numerator[i] / denominator[i]`` of two runners timed in the same repeats.

    Args:
        numerator: rates of one runner.
        denominator: rates of the other, same length.

    Returns:
        The ratios.

    Example::

        paired_ratios([2.0, 4.0], [1.0, 2.0])  # [2.0, 2.0]
    """
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call of ``fn`` (matmuls and convolutions, forward and backward), counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as 2 FLOPs). ``scaled_dot_product_attention``
    runs through its math backend while counting, since the counter sees no FLOPs in the CPU flash-attention kernel.

    Args:
        fn: e.g. one training step.

    Returns:
        The total FLOP count.

    Example::

        flops = count_flops(lambda: model(x).sum().backward())
    """
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel([SDPBackend.MATH]):
        fn()
    return int(counter.get_total_flops())


#: operator families of :func:`op_time_shares`, as (name, regular expression over the profiler's ``aten::`` names);
#: the first that matches wins, and an operator matching none is ``"other"``
OP_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("attention", r"aten::_?(scaled_dot_product|flash_attention|efficient_attention).*"),
    ("matmul", r"aten::(mm|addmm|bmm|baddbmm|_addmm_activation|mkldnn_linear.*|linear_backward)"),
    ("convolution", r"aten::(_?convolution.*|mkldnn_convolution.*|_?slow_conv.*|conv\w*)"),
    ("normalisation", r"aten::(native_|_)?(batch|layer|group)_norm.*|aten::_batch_norm.*"),
    ("activation", r"aten::(gelu|relu|threshold|silu|sigmoid|hardtanh|clamp_min|_?softmax|_?log_softmax)\w*"),
    ("copy_cast", r"aten::(copy_|_to_copy|clone|contiguous|cat|stack|index|index_select|_copy_from\w*)"),
    ("optimizer_momentum", r"aten::(_fused_sgd_|_fused_adamw?_|_foreach_\w+|lerp_?)"),
)


def op_category(name: str) -> str:
    """The :data:`OP_CATEGORIES` family of a profiler operator name.

    Args:
        name: e.g. ``"aten::addmm"``.

    Returns:
        The family, or ``"other"``.

    Example::

        op_category("aten::native_layer_norm_backward")  # "normalisation"
    """
    for category, pattern in OP_CATEGORIES:
        if re.fullmatch(pattern, name):
            return category
    return "other"


def op_time_shares(fn: Callable[[], Any], top: int = 10) -> dict[str, Any]:
    """Where one call of ``fn`` spends its operator time: ``torch.profiler`` (CPU) self time per operator, summed
    by :data:`OP_CATEGORIES` family, as shares of the total operator self time.

    Self times do not overlap, so the shares add up to 1; time outside operators (Python, the engine's bookkeeping)
    is the difference between ``wall_ms`` and ``op_ms``. The profiler adds a small cost to every operator, so many
    small operators look somewhat larger than they are. Under ``torch.compile`` the fused kernels appear as
    ``"other"``.

    Args:
        fn: e.g. a few training steps (warm it up first: the first call also allocates and compiles).
        top: how many of the largest operators to list.

    Returns:
        ``wall_ms`` and ``op_ms`` (total self time), ``shares`` (family -> share, largest first) and ``top_ops``
        (``{"name", "category", "share"}`` of the ``top`` largest operators).

    Example::

        step()  # warm-up
        profile_line = op_time_shares(step)  # {"shares": {"matmul": 0.31, "copy_cast": 0.15, ...}, ...}
    """
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
    per_op = sorted(
        ((e.key, op_category(e.key), float(e.self_cpu_time_total)) for e in prof.key_averages()
         if e.self_cpu_time_total > 0),
        key=lambda item: item[2],
        reverse=True,
    )  # fmt: skip
    total = sum(t for _, _, t in per_op) or 1.0
    shares: dict[str, float] = {}
    for _, category, t in per_op:
        shares[category] = shares.get(category, 0.0) + t / total
    return {
        "wall_ms": wall * 1e3,
        "op_ms": total / 1e3,
        "shares": dict(sorted(shares.items(), key=lambda item: item[1], reverse=True)),
        "top_ops": [{"name": n, "category": c, "share": t / total} for n, c, t in per_op[:top]],
    }


def matmul_peak_flops(
    dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 5, max_seconds: float = 3.0
) -> float:
    """This machine's achievable matrix-multiply FLOP/s: the faster of the two GEMM libraries torch runs on a CPU.

    Each is the median of ``repeats`` timed products: ``torch.mm`` of two ``size x size`` matrices (BLAS, MKL in the
    PyPI wheels; it runs a ViT's linear layers in fp32) and a 3x3 channels-last convolution of a batch of
    ``size // 64`` 256-channel 16x16 maps (oneDNN's implicit GEMM, which runs a training step's convolutions and, under
    bf16 autocast, its linear layers). They differ by CPU: on some AVX-512 CPUs the convolution runs at more than twice
    ``torch.mm``'s rate, so a peak from ``torch.mm`` alone can put a training step's "utilisation" above 100 %.

    Each library starts at size 256 and doubles the size (up to ``size``) only while ``repeats`` products of the next
    size, extrapolated from the last one's time, fit in ``max_seconds``. So a slow product (bf16 without AMX /
    AVX-512 BF16 is emulated and many times slower than fp32) is never run at a size that would take minutes; such a
    peak is far below fp32 anyway and tells that the dtype does not pay.

    Args:
        dtype: ``torch.float32`` or ``torch.bfloat16`` (oneDNN uses AMX / AVX-512 BF16 where present).
        size: largest matrix size of ``torch.mm``; the convolution's batch is ``size // 64`` (large enough to be compute
            bound).
        repeats: timed products (after one warm-up at each size tried).
        max_seconds: time budget of each library's timed products, judged from the warm-ups.

    Returns:
        FLOP/s (a multiply-add counts as 2) with the current ``torch.get_num_threads()``.

    Example::

        peak = matmul_peak_flops(torch.bfloat16)
    """
    g = torch.Generator().manual_seed(0)
    channels, side = 256, 16  # the convolution's feature maps; its batch grows with the size

    def mm_flops(n: int) -> float:
        return 2.0 * n**3

    def mm(n: int) -> Callable[[], Any]:
        a = torch.randn(n, n, generator=g).to(dtype)
        b = torch.randn(n, n, generator=g).to(dtype)
        return lambda: torch.mm(a, b)

    def conv_flops(n: int) -> float:
        return 2.0 * max(1, n // 64) * channels**2 * 9 * side**2

    def conv3x3(n: int) -> Callable[[], Any]:
        x = torch.randn(max(1, n // 64), channels, side, side, generator=g).to(dtype)
        w = torch.randn(channels, channels, 3, 3, generator=g).to(dtype)
        x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
        return lambda: torch.nn.functional.conv2d(x, w, padding=1)

    def seconds_of(product: Callable[[], Any]) -> float:
        start = time.perf_counter()
        product()
        return time.perf_counter() - start

    best = 0.0
    for build, flops_of in ((mm, mm_flops), (conv3x3, conv_flops)):
        n = min(size, 256)
        product = build(n)
        seconds = seconds_of(product)  # the warm-up of this size
        while 2 * n <= size and seconds * flops_of(2 * n) / flops_of(n) * repeats <= max_seconds:
            n *= 2
            product = build(n)
            seconds = seconds_of(product)
        times = [seconds_of(product) for _ in range(repeats)]
        best = max(best, flops_of(n) / median(times))
    return best


def cpu_model() -> str:
    """Returns: the CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``), recorded beside each run."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Returns: what a benchmark line needs to be read later: torch version, CPU model, cores, torch threads, bf16."""
    return {
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "bf16_native": bf16_native(),
    }


def print_json_line(record: Mapping[str, Any], file: TextIO | None = None) -> None:
    """Print ``record`` as one JSON object on one line and flush (benchmarks are read while they run).

    Floats are rounded to 4 significant digits.

    Args:
        record: JSON-serialisable values.
        file: the stream (default ``sys.stdout``).

    Example::

        print_json_line({"case": "resnet18", "ours_img_s": 12.345678})
    """

    def _round(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.4g}")
        if isinstance(v, dict):
            return {k: _round(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [_round(x) for x in v]
        return v

    print(json.dumps({k: _round(v) for k, v in record.items()}), file=file or sys.stdout, flush=True)
