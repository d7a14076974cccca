"""--reuse across run-folder versions: what a loader records about its images grows, what picks them does not."""

from __future__ import annotations

import imagefeed
import space
from search._reuse import data_description


def _sample_source() -> dict:
    """run.json's "dataset" of today's embedded-sample run, as the loader records it."""
    return dict(imagefeed.load(space.DataSettings()).source)


def test_a_source_recorded_before_the_descriptive_keys_matches_todays() -> None:
    today = _sample_source()
    assert {"num_classes", "n_class_names"} <= set(today)  # what older folders lack
    earlier = {name: value for name, value in today.items() if name not in ("num_classes", "n_class_names")}
    data = space.DataSettings()
    assert data_description(earlier, data) == data_description(today, data)


def test_a_source_that_picks_other_images_does_not_match() -> None:
    today = _sample_source()
    data = space.DataSettings()
    for name, value in (("sha256", "0" * 64), ("name", "cifar100"), ("n_train_pool", 7)):
        assert data_description({**today, name: value}, data) != data_description(today, data), name
    assert data_description(today, space.DataSettings(split_seed=1)) != data_description(today, data)
