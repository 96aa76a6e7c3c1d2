"""What the CPU and its C library offer a training step: native bfloat16 arithmetic, and a ``malloc`` that keeps the
memory a step freed so the next step reuses it instead of faulting fresh pages in.

A bf16 training step allocates and frees the same large tensors every iteration: autocast's bf16 copies of the
weights, the fp32 gradients cast back from bf16, the optimizer's temporaries. glibc's ``malloc`` serves blocks above
its (dynamic) mmap threshold with fresh ``mmap`` pages and returns freed heap tops to the kernel, so each iteration
page-faults that memory in again: a bf16 MoCo ResNet-18 step takes tens of thousands of minor page faults that
:func:`reuse_freed_memory` reduces about a hundredfold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

__all__ = ["bf16_native", "reuse_freed_memory"]

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX) and ignores larger values
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024


def bf16_native() -> bool:
    """Returns: whether this CPU has native bfloat16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast pays."""
    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return bool(avx512_bf16 or amx)


def reuse_freed_memory(
    mmap_threshold: int = _MAX_MMAP_THRESHOLD, trim_threshold: int = 1 << 30, libc: ctypes.CDLL | None = None
) -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse (``mallopt``), for the whole process and from now on.

    Blocks up to ``mmap_threshold`` bytes come from the heap instead of fresh ``mmap`` pages, and up to
    ``trim_threshold`` bytes of free heap are kept instead of being returned to the kernel; the same as starting
    Python with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set. The price is that the process holds on
    to its peak heap size. Bundles call it in ``initialize``; it is safe to call more than once.

    Args:
        mmap_threshold: bytes; at most 32 MiB (glibc ignores larger values on 64-bit).
        trim_threshold: bytes of free heap top kept before trimming.
        libc: the C library to configure (default: this process's, found by ``ctypes.util.find_library("c")``).

    Returns:
        True when both settings were applied; False where the C library is not glibc (macOS, Windows, musl), where
        nothing is changed.

    Raises:
        ValueError: when ``mmap_threshold`` is not in ``(0, 32 MiB]`` or ``trim_threshold`` is not positive.

    Example::

        from monai_moco.utils.cpu import reuse_freed_memory

        reuse_freed_memory()  # before the training loop
    """
    if not 0 < mmap_threshold <= _MAX_MMAP_THRESHOLD:
        raise ValueError(
            f"reuse_freed_memory: mmap_threshold must be in (0, {_MAX_MMAP_THRESHOLD}] bytes, got {mmap_threshold}."
        )
    if trim_threshold <= 0:
        raise ValueError(f"reuse_freed_memory: trim_threshold must be positive, got {trim_threshold}.")
    if libc is None:
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
