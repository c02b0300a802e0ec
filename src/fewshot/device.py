"""Choosing the torch device from ``auto|cpu|cuda``, and tuning the CPU's memory allocator."""
from __future__ import annotations

import ctypes
import os
import platform
import sys

import torch

from fewshot.errors import FewShotError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device for ``name``: ``auto`` picks CUDA when present, else the CPU.

    Example:
        >>> resolve_device("auto")  # on a machine without a GPU
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FewShotError(f"--device {name} was asked for but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    raise FewShotError(f"unknown device {name!r}; use one of: {', '.join(DEVICE_CHOICES)}")


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers (malloc.h)
_allocator_tuned = False


def tune_cpu_allocator(device: torch.device | str = "cpu") -> bool:
    """On the CPU, make glibc keep freed memory for reuse instead of handing it back to the OS.

    By default glibc serves every large block (an activation of a training step: 36 MB for one
    Conv-4 layer of a 60-way episode) with fresh pages from ``mmap`` and unmaps it on free, so
    each step page-faults through all of its activations again. With ``mmap`` off for the heap
    and trimming only above 2 GiB free, the pages stay mapped: 60-way 1-shot ProtoNet training
    ran 1.50x the episodes per second, at 721 MiB peak memory against 647 MiB
    (``benchmarks/cpu_allocator.py``, docs/benchmarks.md). Applied once per process, for a CPU
    ``device``, on Linux with glibc only, and never when the user tunes malloc already (a
    ``MALLOC_*`` environment variable, or an allocator in ``LD_PRELOAD``). Returns whether it is applied.

    Example:
        >>> applied = tune_cpu_allocator(torch.device("cpu"))  # before the first training step
    """
    global _allocator_tuned
    if _allocator_tuned or torch.device(device).type != "cpu":
        return _allocator_tuned
    user_tuned = os.environ.get("LD_PRELOAD") or any(name.startswith("MALLOC_") for name in os.environ)
    if user_tuned or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    _allocator_tuned = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _allocator_tuned
