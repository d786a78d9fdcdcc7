"""What this machine offers a step: cores it may use, CUDA devices, torch threads.

Nothing here imports torch at module level: the counts are read from the
operating system, so Dagster can size its pools without loading a model
library, and a step sets its torch threads just before it needs torch.

>>> cores_per_step(cores=2, steps_at_once=4)
1
>>> cores_per_step(cores=16, steps_at_once=4)
4
"""

from __future__ import annotations

import os
from pathlib import Path

TORCH_THREADS_ENV = "VOXLAKE_TORCH_THREADS"
"""Set by `voxlake run` (and `voxlake ui`) for the processes it starts: torch threads per step."""

NVIDIA_GPUS_DIR = Path("/proc/driver/nvidia/gpus")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cuda_device_count() -> int:
    """CUDA devices visible to this process, read without importing torch.

    `CUDA_VISIBLE_DEVICES` wins when set (an empty value hides every device);
    otherwise the NVIDIA driver's list of GPUs under /proc.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if not NVIDIA_GPUS_DIR.is_dir():
        return 0
    return len([p for p in NVIDIA_GPUS_DIR.iterdir() if p.is_dir()])


def accelerator_slots() -> int:
    """Steps that may hold the accelerator at once: one per CUDA device, else one per core.

    On a CPU-only machine tokenization and training run on the cores, so they
    are bounded by the cores rather than serialised to a single step.
    """
    return cuda_device_count() or usable_cores()


def cores_per_step(cores: int, steps_at_once: int) -> int:
    """Cores each of `steps_at_once` concurrent steps may use without oversubscribing."""
    return max(1, cores // max(1, steps_at_once))


def torch_threads() -> int:
    """Torch intra-op threads for this step: `$VOXLAKE_TORCH_THREADS`, else every usable core."""
    value = os.environ.get(TORCH_THREADS_ENV)
    if value:
        try:
            return max(1, int(value))
        except ValueError as error:
            raise ValueError(f"${TORCH_THREADS_ENV} must be an integer, not {value!r}") from error
    return usable_cores()


def limit_torch_threads() -> int:
    """Set torch's intra-op threads for this process (imports torch); return the count."""
    import torch  # the step is about to use it anyway

    threads = torch_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
