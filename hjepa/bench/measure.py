"""What the benchmarks measure with: device sync, the matmul peak, FLOP counts, peak memory.

- ``matmul_peak_flops``: best FLOP/s of a large square matrix product, the denominator of MFU.
- ``count_flops``: FLOPs of a callable from ``torch.utils.flop_counter.FlopCounterMode``, with the
  CPU attention kernel counted (torch's counter has formulas for the CUDA kernels only).
- ``PeakMemory``: peak memory of a block of code. On CUDA: ``torch.cuda.max_memory_allocated``
  (absolute: weights, optimizer state and activations). On CPU, where torch keeps no allocator
  statistics: the growth of the process's resident set (RSS) over its value at the start of the
  block, sampled every millisecond from ``/proc/self/statm`` after returning freed heap memory to
  the system (``malloc_trim``), i.e. what the block allocates on top of what already lives.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so a wall-clock interval covers the work it started."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> float:
    """Best FLOP/s of an n x n x n matrix product in ``dtype`` on ``device`` (default threads)."""
    device = torch.device(device)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# On CPU, F.scaled_dot_product_attention runs aten._scaled_dot_product_flash_attention_for_cpu
# (also with a boolean mask), for which FlopCounterMode has no formula: attention would count
# 0 FLOPs. The same dense formulas as the CUDA kernels' (a masked-out score is still computed).
def _cpu_attention_forward(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                            **kwargs: Any) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
}


@dataclass
class FlopCount:
    """FLOPs of one call (a multiply-add counts 2).

    Attributes:
        total: every counted op of the call.
        by_module: FLOPs per module path (``Model.levels.0.encoder``), to ``depth`` levels below the
            root, forward and backward together (backward ops are attributed to their module).
    """

    total: int
    by_module: dict[str, int]


def count_flops(fn: Callable[[], Any], depth: int = 4) -> FlopCount:
    """Run ``fn()`` once under ``FlopCounterMode`` and return its FLOPs (matmuls, convolutions,
    attention; element-wise ops and the optimizer's update count 0, as in torch's counter)."""
    with FlopCounterMode(display=False, depth=depth, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        fn()
    by_module = {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items() if name != "Global"}
    return FlopCount(total=int(counter.get_total_flops()), by_module=by_module)


def _trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc), so RSS starts from what is alive."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the baseline then includes cached free memory
        pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory of the ``with`` block; ``.mb`` after it, ``.kind`` says what was measured.

    ``kind`` is ``cuda_max_allocated`` (absolute peak of tensors on the GPU) or
    ``cpu_rss_growth`` (peak RSS minus RSS at the start; 0 where /proc is missing).
    """

    def __init__(self, device: torch.device, interval_s: float = 0.001) -> None:
        self.device = device
        self.interval_s = interval_s
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "cpu_rss_growth"
        self.mb = 0.0
        self._stop = threading.Event()
        self._peak = 0
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif os.path.exists("/proc/self/statm"):
            _trim_heap()
            self._start = self._peak = _rss_bytes()
            # torch's kernels release the GIL, so the sampler runs while the step computes.
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.mb = (self._peak - self._start) / 2**20
