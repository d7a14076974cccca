"""What every result records about where it was computed: versions and hardware."""

from __future__ import annotations

import os
import platform
import socket

import models


def versions() -> dict[str, str]:
    """Python and the packages whose versions decide a study's results."""
    return models.versions("ray", "optuna", "pandas", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, object]:
    """The driver machine: CPU model and count, GPUs (names), host name."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return {"cpu": _cpu_model(), "cpus": cpus, "gpus": gpus, "hostname": socket.gethostname(),
            "platform": platform.platform()}
