import json
import os
import platform
import subprocess
import sys

import pytest

from fewshot.device import resolve_device
from fewshot.errors import FewShotError

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocates and frees a 64 MiB tensor 40 times, as a training loop does its activations; counts
# the page faults of the last ten and the peak memory.
PAGE_FAULTS = """
import json, resource, torch
from fewshot.device import tune_cpu_allocator
left_alone_for_gpu = not tune_cpu_allocator("cuda")
applied = tune_cpu_allocator("cpu")
for _ in range(30):
    torch.ones(16 * 2**20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 * 2**20)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"left_alone_for_gpu": left_alone_for_gpu, "applied": applied, "faults": usage.ru_minflt - before, "peak_mib": usage.ru_maxrss // 1024}))
"""


def _page_faults(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS], env={**clean, **env}, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="the allocator tuning applies to glibc only")
def test_tuned_allocator_reuses_freed_pages():
    tuned = _page_faults({})
    untouched = _page_faults({"MALLOC_ARENA_MAX": "8"})  # a user's own malloc setting: left alone
    assert tuned["applied"] and not untouched["applied"]
    assert tuned["left_alone_for_gpu"]  # a CUDA device does not touch the CPU's allocator
    pages = 10 * 64 * 2**20 // 4096
    assert untouched["faults"] > pages / 2  # every new 64 MiB block faulted in again
    assert tuned["faults"] < pages / 20  # the same pages, reused
    assert tuned["peak_mib"] < untouched["peak_mib"] + 1024  # at the price of a bounded amount of memory


def test_resolve_device_names():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(FewShotError, match="use one of: auto, cpu, cuda"):
        resolve_device("tpu")
