"""How many torch threads to use.

On a machine whose cores are busy with other work, OpenMP threads that wait for each other at every
parallel region make torch much slower than one thread (measured on a 2-core machine with one core
busy: detection ~20x slower with 2 threads than with 1; see docs/speed.md). The rule
(:func:`auto_threads`): use the cores that are idle right now (measured over 0.2 s from
``/proc/stat``), at least 1 and at most the cores this process may run on; where that cannot be
measured, 1 thread on machines with at most 2 cores and ``cores - 1`` otherwise. ``OMP_NUM_THREADS``,
when set, wins (unless a number is given explicitly).
"""
from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import torch

from os2d.errors import InvalidInputError


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> Optional[Sequence[int]]:
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    return [int(v) for v in fields[1:]] if fields and fields[0] == "cpu" else None


def idle_cores(interval: float = 0.2) -> Optional[float]:
    """Idle cores of the whole machine over ``interval`` seconds (None where unknown)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(interval)
    second = _cpu_times()
    if second is None:
        return None
    delta = [b - a for a, b in zip(first, second)]
    total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
    if total <= 0:
        return None
    idle = delta[3] + delta[4]
    return (os.cpu_count() or 1) * idle / total


def auto_threads() -> int:
    """The thread count of the rule in the module docstring."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    cores = available_cores()
    idle = idle_cores()
    if idle is None:
        return 1 if cores <= 2 else cores - 1
    return max(1, min(cores, int(idle + 0.5)))


def parse_threads(value: Optional[str]) -> Optional[int]:
    """``--threads`` value: ``None``/``"auto"`` -> None (use :func:`auto_threads`), else a count >= 1."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        count = int(str(value).strip())
    except ValueError:
        raise InvalidInputError(f"--threads must be a positive whole number or 'auto', got {value!r}") from None
    if not 1 <= count <= 1024:
        raise InvalidInputError(f"--threads must be between 1 and 1024, got {count}")
    return count


def set_threads(count: Optional[int] = None) -> int:
    """Set torch's intra-op threads to ``count`` (default: :func:`auto_threads`); returns the number set."""
    threads = auto_threads() if count is None else count
    torch.set_num_threads(threads)
    return threads
