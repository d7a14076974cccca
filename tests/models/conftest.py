"""Shared fixtures for the models tests: a seeded stream of random valid specs."""

from __future__ import annotations

import random

import pytest

from models import ArchSpec, StageSpec


def random_specs(count: int, seed: int = 0) -> list[ArchSpec]:
    """`count` random valid specs over every block, shortcut and stem (invalid draws are skipped)."""
    rng = random.Random(seed)
    specs: list[ArchSpec] = []
    while len(specs) < count:
        block = rng.choice(["basic", "bottleneck", "preact_basic", "preact_bottleneck"])
        stem = rng.choice(["cifar", "imagenet", "deep"])
        stem_width = rng.choice([8, 16, 24])
        widths = sorted(rng.choice([8, 16, 24, 32, 48, 64]) for _ in range(rng.randint(1, 4)))
        stages = tuple(
            StageSpec(depth=rng.randint(1, 3), width=w, stride=rng.choice([1, 2]))
            for w in widths
        )
        try:
            specs.append(ArchSpec(
                stages=stages, block=block, stem=stem, stem_width=stem_width,
                shortcut=rng.choice(["A", "B", "C", "D", "none"]),
                bottleneck_ratio=rng.choice([0.25, 0.5, 1.0]),
                groups=rng.choice([1, 1, 2, 4]) if "bottleneck" in block else 1,
                bottleneck_stride=rng.choice(["3x3", "1x1"]) if "bottleneck" in block else "3x3",
                num_classes=rng.choice([10, 100]),
                in_channels=rng.choice([1, 3]),
            ))
        except ValueError:
            continue
    return specs


@pytest.fixture(scope="session")
def sampled_specs() -> list[ArchSpec]:
    """Forty random valid specs, the same in every run."""
    return random_specs(40)
