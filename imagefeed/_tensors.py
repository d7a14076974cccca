"""The whole-tensor path: CIFAR-10/100, synthetic tensors and the embedded sample, held as one uint8 tensor.

Where every image fits in memory (50,000 images of 32 px are 150 MB), the
fastest input pipeline is none: the readers here return the whole training
pool and test set as uint8 NCHW tensors (`RawDataset`), `split_tensors` carves
the validation split out of the pool (`DatasetSplits`), and `BatchAugment`
crops, flips and normalises a whole batch on the device where it lives.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._cifar import IMAGE_SIZE, LAYOUTS, locate, read_official
from ._errors import DatasetError
from ._normalizations import NORMALIZATIONS

log = logging.getLogger(__name__)

SAMPLE_PATH = Path(__file__).parent / "sample_data" / "cifar10_sample.npz"
# Written by scripts/make_sample.py; see sample_data/PROVENANCE.md.
SAMPLE_SHA256 = "d1b2e2b38113a1f94bf0701081caadb5741237e587017a22dfec37c319f3fbf1"
_SAMPLE_REASON = "data.root is not set: the embedded 1,500-image CIFAR-10 sample stands in for the full dataset"
_SAMPLE_HINT = " Or omit data.root to train on the embedded 1,500-image CIFAR-10 sample."

# Fixed, like a real dataset's pixels: `split_seed` varies the split, not the images.
SYNTHETIC_SEED = 0
SYNTHETIC_CLASSES = 10


@dataclass(frozen=True, eq=False)
class RawDataset:
    """What a whole-tensor reader returns: the whole training pool and the shipped test set, before any split."""

    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    source: dict[str, Any]  # name, root, embedded_sample, fallback_reason, and files or sha256
    class_names: tuple[str, ...] = ()  # in label order, where the data names its classes


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """Train/val/test images (uint8 NCHW, shared: never modify in place) and labels (int64), and their origin."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # name, root, embedded_sample, fallback_reason, n_train, n_val, n_test,
    # n_train_pool, num_classes, and sha256 (embedded sample) or files (official layout)
    source: dict[str, Any]
    streamed: bool = False  # StreamedSplits has True: the trainer picks its input path by this


# ------------------------------------------------------------------ loaders
def _from_numpy(train_x, train_y, test_x, test_y, num_classes: int, source: dict[str, Any]) -> RawDataset:
    return RawDataset(torch.from_numpy(np.ascontiguousarray(train_x)), torch.from_numpy(train_y),
                      torch.from_numpy(np.ascontiguousarray(test_x)), torch.from_numpy(test_y),
                      num_classes, source)


def _load_official(name: str, root: str, download: bool, hint: str = "") -> RawDataset:
    layout = LAYOUTS[name]
    folder = locate(Path(root), layout, download, hint)
    arrays = read_official(folder, layout)
    source = {"name": name, "root": str(folder.resolve()), "embedded_sample": False,
              "fallback_reason": None, "files": list(layout.files)}
    return _from_numpy(*arrays, layout.num_classes, source)


def read_embedded_sample() -> RawDataset:
    """The CIFAR-10 sample shipped in the package, after checking its sha256."""
    try:
        content = SAMPLE_PATH.read_bytes()
    except OSError as error:
        raise DatasetError(f"{SAMPLE_PATH}: the embedded sample cannot be read ({error.strerror or error}); "
                           "reinstall resnas or rebuild it with scripts/make_sample.py") from error
    digest = hashlib.sha256(content).hexdigest()
    if digest != SAMPLE_SHA256:
        raise DatasetError(f"{SAMPLE_PATH}: sha256 is {digest}, expected {SAMPLE_SHA256} "
                           "(sample_data/PROVENANCE.md); the embedded sample is corrupt or was changed: "
                           "reinstall resnas or rebuild it with scripts/make_sample.py")
    # The bytes just checked, not a second read; allow_pickle=False: plain numbers only, nothing that runs code.
    with np.load(io.BytesIO(content), allow_pickle=False) as sample:
        arrays = [sample[key] for key in ("train_x", "train_y", "test_x", "test_y")]
    source = {"name": "cifar10", "root": None, "embedded_sample": True,
              "fallback_reason": _SAMPLE_REASON, "sha256": SAMPLE_SHA256}
    return _from_numpy(*arrays, LAYOUTS["cifar10"].num_classes, source)


def read_cifar10(data) -> RawDataset:
    """CIFAR-10 from data.root in the official python layout, or the embedded sample when data.root is None."""
    if data.root is None:
        if data.download:
            log.warning("data.download is true but data.root is not set, so there is nowhere to download "
                        "to: using the embedded CIFAR-10 sample (set data.root for the full dataset)")
        log.info(_SAMPLE_REASON)
        return read_embedded_sample()
    return _load_official("cifar10", data.root, data.download, _SAMPLE_HINT)


def read_cifar100(data) -> RawDataset:
    """CIFAR-100 from data.root in the official python layout (fine labels)."""
    if data.root is None:
        raise DatasetError("data.root: got None; CIFAR-100 has no embedded sample: set data.root "
                           "(or pass --data-root) to a folder holding cifar-100-python/, "
                           "with data.download: true to fetch it there")
    return _load_official("cifar100", data.root, data.download)


def read_synthetic(data) -> RawDataset:
    """Seeded random images, a colour per class under noise: checks that the pipeline runs."""
    generator = torch.Generator().manual_seed(SYNTHETIC_SEED)
    # A colour per class under noise: shapes are right and a model can learn
    # something, so a smoke test can see the loss fall.
    class_colours = torch.randint(48, 208, (SYNTHETIC_CLASSES, 3, 1, 1), generator=generator)

    def draw(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, SYNTHETIC_CLASSES, (count,), generator=generator)
        noise = torch.randint(-48, 49, (count, 3, IMAGE_SIZE, IMAGE_SIZE), generator=generator)
        return (class_colours[labels] + noise).clamp_(0, 255).to(torch.uint8), labels

    train_x, train_y = draw(data.synthetic_train)
    test_x, test_y = draw(data.synthetic_test)
    source = {"name": "synthetic", "root": None, "embedded_sample": False, "fallback_reason": None,
              "seed": SYNTHETIC_SEED}
    return RawDataset(train_x, train_y, test_x, test_y, SYNTHETIC_CLASSES, source)


# -------------------------------------------------------------------- split
def stratified_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of the indices of `labels` into (train, val), each class held out in proportion, in shuffled order."""
    count = len(labels)
    n_val = round(count * val_fraction)
    if n_val >= count:
        raise ValueError(f"data.val_fraction: got {val_fraction}, which leaves no training image of {count}; "
                         "allowed: a number in [0, 1) that keeps at least one")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    per_class = torch.bincount(labels, minlength=1).tolist()
    # Largest remainder, in integers: exactly n_val held out, every class within
    # one image of its share, and no float ties to break differently by platform.
    quota = [(n * n_val // count, n * n_val % count) for n in per_class]
    held = [whole for whole, _ in quota]
    by_remainder = sorted(range(len(quota)), key=lambda c: (-quota[c][1], c))
    for c in by_remainder[:n_val - sum(held)]:
        held[c] += 1

    shuffled_labels = labels[order]
    is_val = torch.zeros(count, dtype=torch.bool)
    for c, n in enumerate(held):
        if n:
            is_val[torch.nonzero(shuffled_labels == c).squeeze(1)[:n]] = True
    return order[~is_val], order[is_val]


def split_tensors(raw: RawDataset, val_fraction: float, split_seed: int, normalize: str,
                  train_limit: int | None) -> DatasetSplits:
    """Carve the validation split out of `raw`'s training pool (stratified, seeded) and describe the result."""
    where = raw.source.get("root") or raw.source["name"]
    for part, labels in (("training", raw.train_y), ("test", raw.test_y)):
        if len(labels) == 0:
            raise DatasetError(f"{where}: the {raw.source['name']} {part} set holds no images; a study needs "
                               "images to train, validate and test on: use the official files")
    try:
        train_index, val_index = stratified_split(raw.train_y, val_fraction, split_seed)
    except ValueError as error:  # too few images to hold any out
        raise DatasetError(f"{where}: {error}") from None
    # The limit applies after the split, so the validation set is the same at every budget.
    if train_limit is not None:
        train_index = train_index[:train_limit]
    mean, std = NORMALIZATIONS[normalize]
    source = {**raw.source, "n_train": len(train_index), "n_val": len(val_index), "n_test": len(raw.test_y),
              "n_train_pool": len(raw.train_y), "num_classes": raw.num_classes,
              "n_class_names": len(raw.class_names)}
    log.info("dataset %s: %d train, %d val, %d test images from %s", source["name"], source["n_train"],
             source["n_val"], source["n_test"],
             "the embedded sample" if source["embedded_sample"] else source["root"] or "generated tensors")
    return DatasetSplits(
        train_x=raw.train_x[train_index], train_y=raw.train_y[train_index],
        val_x=raw.train_x[val_index], val_y=raw.train_y[val_index],
        test_x=raw.test_x, test_y=raw.test_y,
        num_classes=raw.num_classes, image_size=raw.train_x.shape[-1],
        mean=mean, std=std, source=source,
    )


# -------------------------------------------------------------- augmentation
class BatchAugment:
    """Random crop with zero padding and random horizontal flip of a uint8 batch, on its device, then normalisation.

    The augmentation of He et al. 2015 (arXiv 1512.03385, sec. 4.2): "4 pixels
    are padded on each side, and a 32×32 crop is randomly sampled from the
    padded image or its horizontal flip". For image i with offsets (dy, dx):
    output[i] = padded[i, :, dy:dy+H, dx:dx+W], mirrored left-right when its
    flip is drawn.
    """

    def __init__(self, crop_padding: int = 4, flip: bool = True, *,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        if not (isinstance(crop_padding, int) and crop_padding >= 0):
            raise ValueError(f"crop_padding: got {crop_padding!r}; allowed: an integer >= 0")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean, std: got {mean!r}, {std!r}; allowed: one value per channel each, std > 0")
        self.crop_padding = crop_padding
        self.flip = flip
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_settings(cls, data) -> BatchAugment:
        """The augmentation a `space.DataSettings` asks for."""
        mean, std = NORMALIZATIONS[data.normalize]
        return cls(crop_padding=data.crop_padding, flip=data.flip, mean=mean, std=std)

    def __repr__(self) -> str:
        return (f"BatchAugment(crop_padding={self.crop_padding}, flip={self.flip}, "
                f"mean={self.mean}, std={self.std})")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """Crop, flip and normalise uint8 `images` (N, C, H, W) into float32; deterministic for a seeded `generator`."""
        return self.normalize_only(self.crop_and_flip(images, generator), memory_format)

    def crop_and_flip(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The random crop and flip alone, still uint8."""
        self._check_images(images)
        if self.crop_padding == 0 and not self.flip:
            return images
        count, channels, height, width = images.shape
        pad = self.crop_padding
        device = images.device
        # Draw on the generator's device, so one CPU generator gives the same
        # augmentation whichever device holds the batch.
        draw_on = generator.device if generator is not None else device
        offsets = torch.randint(0, 2 * pad + 1, (2, count), generator=generator, device=draw_on).to(device)
        rows = offsets[0, :, None] + torch.arange(height, device=device)   # (N, H)
        cols = offsets[1, :, None] + torch.arange(width, device=device)    # (N, W)
        if self.flip:
            flips = torch.randint(0, 2, (count,), generator=generator, device=draw_on).to(device, torch.bool)
            cols = torch.where(flips[:, None], cols.flip(1), cols)
        padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
        padded_width = width + 2 * pad
        # One gather over flattened pixels: every image its own window, no Python loop.
        index = (rows[:, :, None] * padded_width + cols[:, None, :]).view(count, 1, height * width)
        flat = padded.reshape(count, channels, -1)
        return flat.gather(2, index.expand(count, channels, height * width)).view(count, channels, height, width)

    def normalize_only(self, images: torch.Tensor,
                       memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """uint8 `images` to float32 ((x / 255) - mean) / std, with no augmentation (for evaluation)."""
        self._check_images(images)
        scale, shift = self._device_constants(images.device)
        # Re-lay out while each value is one byte, not four.
        out = images.contiguous(memory_format=memory_format).to(torch.float32)
        # x * (1 / (255 std)) - mean / std: two in-place passes, which keep the memory format.
        return out.mul_(scale).sub_(shift)

    def _device_constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._constants:
            mean = torch.tensor(self.mean, dtype=torch.float64)
            std = torch.tensor(self.std, dtype=torch.float64)
            scale = (1.0 / (255.0 * std)).to(torch.float32).view(1, -1, 1, 1)
            shift = (mean / std).to(torch.float32).view(1, -1, 1, 1)
            self._constants[device] = (scale.to(device), shift.to(device))
        return self._constants[device]

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != len(self.mean):
            raise ValueError(f"images: got a {images.dtype} tensor of shape {tuple(images.shape)}; "
                             f"allowed: uint8 (N, {len(self.mean)}, H, W)")
