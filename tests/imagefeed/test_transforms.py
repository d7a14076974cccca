"""imagefeed._transforms: RandomResizedCrop + flip and resize + centre crop, on real JPEG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagefeed import EvalCrop, FolderImages, TrainCrop


def _folder(root: Path, sizes: list[tuple[int, int]]) -> FolderImages:
    """One JPEG per size: a left-to-right ramp in red, so a crop's position shows in its pixels."""
    names = []
    for i, (width, height) in enumerate(sizes):
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
        pixels = np.stack([ramp, np.full_like(ramp, 128), 255 - ramp], axis=-1).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.jpg", quality=95)
        names.append(f"{i}.jpg")
    return FolderImages(str(root), tuple(names), np.zeros(len(names), dtype=np.int64), "fixture")


class _Recording:
    """Wraps a source and records the target_side each read asked for."""

    def __init__(self, images: FolderImages):
        self.images, self.labels, self.sides = images, images.labels, []

    def __len__(self) -> int:
        return len(self.images)

    def read(self, index: int, target_side: int | None = None):
        self.sides.append(target_side)
        return self.images.read(index, target_side)


def test_train_crop_gives_uint8_chw_of_the_crop_size_and_is_seeded(tmp_path: Path) -> None:
    images = _folder(tmp_path, [(500, 375), (120, 300)])
    crop = TrainCrop(64)
    for index in range(2):
        first = crop(images, index, np.random.default_rng(7))
        again = crop(images, index, np.random.default_rng(7))
        other = crop(images, index, np.random.default_rng(8))
        assert first.shape == (3, 64, 64) and first.dtype == torch.uint8
        assert torch.equal(first, again)
        assert not torch.equal(first, other)


def test_train_crop_boxes_follow_torchvision_bounds() -> None:
    crop = TrainCrop(32)
    rng = np.random.default_rng(0)
    for _ in range(500):
        left, top, right, bottom = crop.box(400, 300, rng)
        width, height = right - left, bottom - top
        assert 0 <= left < right <= 400 and 0 <= top < bottom <= 300
        # Area within scale (0.08, 1) (rounding aside), aspect within (3/4, 4/3) or the centre fallback.
        assert 0.07 * 400 * 300 <= width * height <= 400 * 300
        assert 0.74 <= width / height <= 1.34


def test_train_crop_flips_about_half_the_images() -> None:
    crop = TrainCrop(32)
    rng = np.random.default_rng(1)
    flips = sum(crop.flips(rng) for _ in range(400))
    assert 150 < flips < 250
    assert not any(TrainCrop(32, flip=False).flips(rng) for _ in range(50))


def test_decode_size_never_undersamples_the_crop(tmp_path: Path) -> None:
    """The side asked of the decoder keeps at least image_size source pixels across every crop."""
    images = _Recording(_folder(tmp_path, [(2000, 1500)]))
    crop = TrainCrop(64)
    rng = np.random.default_rng(3)
    for _ in range(20):
        first = crop.draw(rng)
        side = crop.target_side(first)
        decoded = images.read(0, side)
        left, top, right, bottom = crop.box(decoded.width, decoded.height, rng, first)
        if (right - left, bottom - top) != (decoded.width, decoded.height):  # not the fallback
            assert min(right - left, bottom - top) >= 64 * 0.99
    assert max(images.sides) < 1500  # some draws did let the decoder scale down


def test_eval_crop_is_the_centre_after_the_resize(tmp_path: Path) -> None:
    images = _Recording(_folder(tmp_path, [(400, 200)]))
    crop = EvalCrop(32, 36)
    out = crop(images, 0)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert images.sides == [36]
    # Resized to 72x36, the centre 32 columns span source columns 20/72..52/72 of the width: the red ramp's middle.
    assert crop.box(400, 200) == pytest.approx((20 / 0.18, 2 / 0.18, 52 / 0.18, 34 / 0.18))
    red = out[0].float().mean(0)
    assert abs(red.mean().item() - 127.5) < 12
    assert red[0] < red[-1]  # the ramp still runs left to right: not flipped
    assert torch.equal(out, crop(images, 0))


def test_bad_sizes_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="image_size: got 0"):
        TrainCrop(0)
    with pytest.raises(ValueError, match="1 <= image_size <= resize"):
        EvalCrop(64, 32)
