"""imagefeed._memory: the process tree's memory, its peak, and a streamed run's host memory at 32x the images."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import torch

import imagefeed
from imagefeed import PeakHostMemory, host_tree_mib, peak_device_mib
from models import ArchSpec, StageSpec
from search.train import fit
from space import DataSettings, TrainSettings
from tests.imagefeed import layouts


def test_the_tree_includes_children() -> None:
    alone = host_tree_mib()
    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]);"
                              " import time; time.sleep(5)"])
    try:
        deadline = time.monotonic() + 5
        while host_tree_mib() < alone + 150 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert host_tree_mib() >= alone + 150
    finally:
        child.kill()
        child.wait()


def test_peak_is_kept_after_the_memory_is_freed() -> None:
    with PeakHostMemory(interval_s=0.02) as peak:
        before = host_tree_mib()
        block = np.ones(100 * 2**20, dtype=np.uint8)
        time.sleep(0.1)
        del block
    assert peak.mib >= before + 90
    assert math.isnan(peak_device_mib(torch.device("cpu")))


def _peak_host(root, count_images) -> float:
    splits = imagefeed.load(DataSettings(dataset="imagefolder", root=str(root), image_size=16, val_fraction=0.1))
    spec = ArchSpec(stages=(StageSpec(1, 8, 1),), stem="cifar", stem_width=8, shortcut="B", num_classes=2)
    result = fit(spec, TrainSettings(epochs=1, batch_size=64), DataSettings(), splits=splits, cpus=1,
                 device="cpu")
    assert result["status"] == "complete" and result["images_per_s"] > 0
    return result["peak_host_mib"]


def test_32x_the_images_costs_at_most_1_3x_the_host_memory(tmp_path) -> None:
    """Streamed: 64 and 2,048 small JPEGs of an image folder, one epoch of a tiny net each (item 2 of issue 24)."""
    small, large = tmp_path / "small", tmp_path / "large"
    layouts.imagefolder(small, classes=2, per_class=32, size=(24, 20))
    layouts.imagefolder(large, classes=2, per_class=1024, size=(24, 20))
    _peak_host(small, 64)  # imports and first-run allocations before either measurement
    few, many = _peak_host(small, 64), _peak_host(large, 2048)
    assert many <= 1.3 * few, (few, many)
