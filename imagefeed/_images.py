"""What every streamed dataset kind hands the loader: images by index, their labels and a fingerprint.

The whole-tensor path (CIFAR, synthetic, downsampled ImageNet) holds every
image as one uint8 tensor, which fits 50,000 images of 32 px and cannot fit
1.28 million JPEGs. The streamed kinds (image folders, Tiny-ImageNet, the
packed store) instead give an `ImageSource`: random access to one decoded
image at a time, which DataLoader workers read, decode and augment
(`imagefeed._loader`). A source is plain data (paths and labels, or a file
name), so it pickles cheaply into Ray workers and DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# The ImageNet evaluation convention (Krizhevsky et al. 2012; torchvision's reference recipe): resize the
# shorter side to 256/224 = 1.14x the crop, then take the centre crop. One home for the ratio.
EVAL_RESIZE_RATIO = 256 / 224


@runtime_checkable
class ImageSource(Protocol):
    """Random access to the images of one split: `read(i)` decodes image i to RGB; `labels[i]` is its class."""

    labels: np.ndarray  # int64, one per image

    def __len__(self) -> int: ...

    def read(self, index: int, target_side: int | None = None) -> Any:
        """Image `index` as an RGB PIL image. `target_side`: the shorter side the caller will resize to, so a JPEG
        decoder may scale down in the DCT domain (PIL's `draft`) and never decode more pixels than it needs."""
        ...

    def fingerprint(self) -> str:
        """A short hex digest that changes when the images do (run.json records it; --reuse matches on it)."""
        ...


def to_rgb(image: Any) -> Any:
    """A PIL image as 3-channel RGB: grayscale, palette, CMYK and alpha images are converted, RGB is kept as is."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Composite over white, as a viewer shows it, rather than keeping whatever colour hides under alpha 0.
        from PIL import Image

        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class StreamedSplit:
    """One split of a streamed dataset: which images of `images` it holds (`indices`), in order."""

    images: ImageSource
    indices: np.ndarray  # int64 positions in `images`

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def labels(self) -> np.ndarray:
        return self.images.labels[self.indices]


@dataclass(frozen=True, eq=False)
class StreamedSplits:
    """Train/val/test of a streamed dataset and their origin: the counterpart of the whole-tensor `DatasetSplits`.

    `image_size` is the training crop (`data.image_size`); evaluation resizes
    the shorter side to `eval_resize` (image_size x EVAL_RESIZE_RATIO) and
    takes the centre `image_size` crop. `mean` and `std` normalise on the
    device. `source` is what run.json records (name, root, n_train_pool,
    n_train, n_val, n_test, fingerprint, skipped images).
    """

    train: StreamedSplit
    val: StreamedSplit
    test: StreamedSplit
    num_classes: int
    image_size: int
    eval_resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: dict[str, Any] = field(default_factory=dict)
    streamed: bool = True  # DatasetSplits has False: the trainer picks its input path by this


@dataclass(frozen=True, eq=False)
class StreamedDataset:
    """What a streamed kind's reader returns: the training pool and the shipped held-out set, before any split.

    The streamed counterpart of the whole-tensor `RawDataset`. `test` is the
    split the data ships as held out (`val/`, `val_data`); the study's
    validation split is carved out of `train`. `source` holds name, root,
    fingerprint, skipped_images and skipped_examples (headers that did not
    open at index time).
    """

    train: ImageSource
    test: ImageSource
    num_classes: int
    class_names: tuple[str, ...]  # in label order
    source: dict[str, Any]
