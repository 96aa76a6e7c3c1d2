"""Tests for monai_moco.utils.cpu: bf16 detection and glibc's malloc settings."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest
import torch

from monai_moco.utils.cpu import bf16_native, reuse_freed_memory


class FakeLibc:
    """A C library whose ``mallopt`` records its calls and answers ``result``."""

    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result
        libc = self

        class Mallopt:
            argtypes: list = []
            restype = None

            def __call__(self, param: int, value: int) -> int:
                libc.calls.append((param, value))
                return libc.result

        self.mallopt = Mallopt()


def test_bf16_native_follows_torch_cpu(monkeypatch):
    for avx512, amx, expected in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert bf16_native() is expected


@pytest.mark.parametrize(
    "kwargs, calls",
    [
        ({}, [(-3, 32 * 1024 * 1024), (-1, 1 << 30)]),
        ({"mmap_threshold": 1 << 20, "trim_threshold": 1 << 24}, [(-3, 1 << 20), (-1, 1 << 24)]),
    ],
)
def test_reuse_freed_memory_sets_mmap_and_trim_thresholds(kwargs, calls):
    libc = FakeLibc()
    assert reuse_freed_memory(libc=libc, **kwargs) is True
    assert libc.calls == calls  # M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1 in glibc's malloc.h
    assert libc.mallopt.argtypes == [ctypes.c_int, ctypes.c_int] and libc.mallopt.restype is ctypes.c_int


def test_reuse_freed_memory_reports_a_refusal_or_a_libc_without_mallopt():
    assert reuse_freed_memory(libc=FakeLibc(result=0)) is False
    assert reuse_freed_memory(libc=object()) is False  # e.g. macOS's libSystem: no mallopt


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mmap_threshold": 0}, "mmap_threshold"), ({"mmap_threshold": 64 << 20}, "32"), ({"trim_threshold": 0}, "trim")],
)
def test_reuse_freed_memory_rejects_values_glibc_would_ignore(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reuse_freed_memory(libc=FakeLibc(), **kwargs)


# In a fresh interpreter (glibc's defaults, or after reuse_freed_memory()), the pattern of a training step: three 4 MiB
# blocks allocated, written and freed, five times; prints the minor page faults of each cycle. With the defaults the
# dynamic mmap threshold rises to 4 MiB, but 12 MiB of free heap top exceeds the trim threshold (twice that), so the
# heap is returned to the kernel and faulted in again every cycle.
ALLOCATION_CYCLES = """
import ctypes, ctypes.util, resource, sys
from monai_moco.utils.cpu import reuse_freed_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
size = 4 << 20
def cycle():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(size) for _ in range(3)]
    for b in blocks:
        ctypes.memset(b, 1, size)
    for b in reversed(blocks):
        libc.free(b)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(*[cycle() for _ in range(5)])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_reuse_freed_memory_stops_the_page_faults_of_repeated_allocations():
    def faults(mode: str) -> list[int]:
        command = [sys.executable, "-c", ALLOCATION_CYCLES, mode]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        return [int(v) for v in out.stdout.split()]

    pages = 3 * (4 << 20) // 4096
    default, reused = faults("default"), faults("reuse")
    assert all(f > pages // 2 for f in default), default  # measured: 3075, 3066, 2016, 2016, 2016
    assert reused[0] > pages // 2 and reused[1:] == [0, 0, 0, 0], reused  # the heap grows once, then is reused
