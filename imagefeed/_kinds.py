"""The dataset kinds (`data.dataset`) by name, and `load(data)`, which reads, splits and describes one.

`DATASET_KINDS` is the one table of dataset names: the study schema allows
exactly its keys, and space takes each kind's class count and natural image
size from it (as it takes block names from models). A kind is whole-tensor
(every image in one uint8 tensor: CIFAR, synthetic, downsampled ImageNet) or
streamed (an `ImageSource` that DataLoader workers decode image by image:
image folders, ImageNet, Tiny-ImageNet). Adding a kind touches its reader and
one row here.

In every kind, the held-out split that ships with the data (`test_batch`,
`val/`, `val_data`) is the **test** set, as in the papers that report ImageNet
accuracy; the study's validation split is carved out of the training images by
`stratified_split`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ._downsampled import DOWNSAMPLED_LAYOUT, DOWNSAMPLED_SIZES, read_imagenet_downsampled
from ._errors import DatasetError
from ._folders import IMAGEFOLDER_LAYOUT, IMAGENET_LAYOUT, TINY_IMAGENET_LAYOUT
from ._folders import read_imagefolder, read_imagenet, read_tiny_imagenet
from ._images import EVAL_RESIZE_RATIO, StreamedDataset, StreamedSplit, StreamedSplits
from ._normalizations import NORMALIZATIONS
from ._packed import is_packed, read_packed
from ._tensors import SYNTHETIC_CLASSES, DatasetSplits, RawDataset, read_cifar10, read_cifar100, read_synthetic
from ._tensors import split_tensors, stratified_split

# The training augmentations a kind may name; the input pipeline implements each.
AUGMENTATIONS = {
    # He et al. 2015 (arXiv 1512.03385, sec. 4.2): pad 4 px, random 32x32 crop, flip. `BatchAugment`, on the device.
    "pad_crop_flip": "zero-pad by data.crop_padding, random crop back to full size, random horizontal flip",
    # Szegedy et al. 2015 / torchvision's ImageNet recipe: a random 8%-100% area, 3/4-4/3 aspect crop resized to
    # data.image_size, random flip; evaluation resizes to image_size x 1.14 and takes the centre crop.
    "random_resized_crop_flip": "RandomResizedCrop to data.image_size and a random horizontal flip",
}


@dataclass(frozen=True)
class DatasetKind:
    """One `data.dataset`: its reader and what a study may assume before any image is read."""

    name: str
    title: str
    read: Callable[[Any], RawDataset | StreamedDataset]  # settings-like object -> the unsplit dataset
    streamed: bool           # False: one uint8 tensor (DatasetSplits); True: an ImageSource (StreamedSplits)
    num_classes: int | None  # None: as many as the data has (space.num_classes must then say it)
    image_size: int          # the natural training side, data.image_size's default
    normalize: str           # data.normalize's default: a key of NORMALIZATIONS
    augment: str             # a key of AUGMENTATIONS
    layout: str              # what data.root must hold; refusals quote it
    reads_files: bool = True      # False: generated in memory, so data.root and data.download mean nothing
    downloads: bool = False       # data.download fetches the official archive
    image_sizes: tuple[int, ...] | None = None  # the only sides a whole-tensor kind can have; None: any


DATASET_KINDS: dict[str, DatasetKind] = {kind.name: kind for kind in (
    DatasetKind("cifar10", "CIFAR-10", read_cifar10, streamed=False, num_classes=10, image_size=32,
                normalize="cifar", augment="pad_crop_flip", downloads=True, image_sizes=(32,),
                layout="ROOT/cifar-10-batches-py/ with data_batch_1..5 and test_batch (the official python "
                       "release), or nothing: data.root null trains on the embedded sample"),
    DatasetKind("cifar100", "CIFAR-100", read_cifar100, streamed=False, num_classes=100, image_size=32,
                normalize="cifar", augment="pad_crop_flip", downloads=True, image_sizes=(32,),
                layout="ROOT/cifar-100-python/ with train and test (the official python release)"),
    DatasetKind("synthetic", "synthetic images", read_synthetic, streamed=False, num_classes=SYNTHETIC_CLASSES,
                image_size=32, normalize="cifar", augment="pad_crop_flip", reads_files=False, image_sizes=(32,),
                layout="nothing: the images are generated in memory"),
    DatasetKind("imagenet_downsampled", "downsampled ImageNet (Chrabaszcz et al. 2017)", read_imagenet_downsampled,
                streamed=False, num_classes=1000, image_size=32, normalize="imagenet", augment="pad_crop_flip",
                image_sizes=DOWNSAMPLED_SIZES, layout=DOWNSAMPLED_LAYOUT),
    DatasetKind("imagefolder", "an image folder", read_imagefolder, streamed=True, num_classes=None,
                image_size=224, normalize="imagenet", augment="random_resized_crop_flip",
                layout=IMAGEFOLDER_LAYOUT),
    DatasetKind("tiny_imagenet", "Tiny-ImageNet-200", read_tiny_imagenet, streamed=True, num_classes=200,
                image_size=64, normalize="imagenet", augment="random_resized_crop_flip",
                layout=TINY_IMAGENET_LAYOUT),
    DatasetKind("imagenet", "ImageNet (ILSVRC2012)", read_imagenet, streamed=True, num_classes=1000,
                image_size=224, normalize="imagenet", augment="random_resized_crop_flip",
                layout=IMAGENET_LAYOUT),
)}


def whole_tensor_kinds() -> tuple[str, ...]:
    """The kinds that load as one tensor (not streamed): what seeds packed into one model train on."""
    return tuple(name for name, kind in DATASET_KINDS.items() if not kind.streamed)


def dataset_kind(name: str) -> DatasetKind:
    """The kind `name` names; a DatasetError listing the kinds if none does."""
    try:
        return DATASET_KINDS[name]
    except KeyError:
        raise DatasetError(f"data.dataset: got {name!r}; allowed: {', '.join(DATASET_KINDS)}") from None


# --------------------------------------------------------------------- load
@dataclass(frozen=True)
class _Source:
    """The settings that decide which images are read: a reader's input and a cache key."""

    dataset: str
    root: str | None  # absolute
    download: bool
    synthetic_train: int
    synthetic_test: int
    image_size: int


@dataclass(frozen=True)
class _Request:
    """The settings that decide the returned splits: a cache key."""

    source: _Source
    val_fraction: float
    split_seed: int
    normalize: str
    train_limit: int | None


def _check(ok: bool, field: str, given: Any, allowed: str) -> None:
    if not ok:  # the text of models.SpecError, which this layer cannot import
        raise DatasetError(f"data.{field}: got {given!r}; allowed: {allowed}")


def _request(data) -> _Request:
    # DataSettings validates these too; repeated here because any object with
    # these attributes is accepted, and a bad value must not reach the cache.
    _check(data.dataset in DATASET_KINDS, "dataset", data.dataset, ", ".join(DATASET_KINDS))
    kind = DATASET_KINDS[data.dataset]
    normalize = getattr(data, "normalize", None) or kind.normalize
    image_size = getattr(data, "image_size", None) or kind.image_size
    _check(normalize in NORMALIZATIONS, "normalize", normalize, ", ".join(NORMALIZATIONS))
    _check(isinstance(image_size, int) and image_size >= 1, "image_size", image_size, "an integer >= 1")
    _check(0 <= data.val_fraction < 1, "val_fraction", data.val_fraction, "a number in [0, 1)")
    _check(data.train_limit is None or (isinstance(data.train_limit, int) and data.train_limit >= 1),
           "train_limit", data.train_limit, "null or an integer >= 1")
    # Resolved, so "data" and "./data" share a cache entry and results name one folder.
    root = None if data.root is None else str(Path(data.root).expanduser().resolve())
    source = _Source(data.dataset, root, bool(data.download), getattr(data, "synthetic_train", 512),
                     getattr(data, "synthetic_test", 128), image_size)
    return _Request(source, data.val_fraction, data.split_seed, normalize, data.train_limit)


@functools.lru_cache(maxsize=2)
def _read(source: _Source) -> RawDataset | StreamedDataset:
    kind = DATASET_KINDS[source.dataset]
    # data.root may name a packed store (`python -m search.pack`) of any kind instead of its official layout.
    if is_packed(source.root):
        return read_packed(source, kind.streamed)
    return kind.read(source)


# Two entries each: the full CIFAR-10 is 180 MB per copy; a process rarely needs more.
@functools.lru_cache(maxsize=2)
def _split(request: _Request) -> DatasetSplits | StreamedSplits:
    raw = _read(request.source)
    if isinstance(raw, StreamedDataset):
        return _split_streamed(raw, request)
    splits = split_tensors(raw, request.val_fraction, request.split_seed, request.normalize, request.train_limit)
    if splits.image_size != request.source.image_size:
        where = raw.source.get("root") or raw.source["name"]
        raise DatasetError(f"{where}: the images are {splits.image_size} px but data.image_size is "
                           f"{request.source.image_size}; a whole-tensor dataset trains at the size it is stored "
                           f"at: set data.image_size: {splits.image_size}")
    return splits


def _split_streamed(raw: StreamedDataset, request: _Request) -> StreamedSplits:
    where = raw.source.get("root") or raw.source["name"]
    for part, images in (("training", raw.train), ("held-out (test)", raw.test)):
        if len(images) == 0:
            raise DatasetError(f"{where}: the {raw.source['name']} {part} split holds no readable image; "
                               f"expected {DATASET_KINDS[raw.source['name']].layout}")
    try:
        train_index, val_index = stratified_split(torch.from_numpy(np.asarray(raw.train.labels)),
                                                  request.val_fraction, request.split_seed)
    except ValueError as error:
        raise DatasetError(f"{where}: {error}") from None
    if request.train_limit is not None:
        train_index = train_index[:request.train_limit]
    mean, std = NORMALIZATIONS[request.normalize]
    image_size = request.source.image_size
    source = {**raw.source, "n_train": len(train_index), "n_val": len(val_index), "n_test": len(raw.test),
              "n_train_pool": len(raw.train), "num_classes": raw.num_classes,
              "n_class_names": len(raw.class_names)}
    return StreamedSplits(
        train=StreamedSplit(raw.train, train_index.numpy()),
        val=StreamedSplit(raw.train, val_index.numpy()),
        test=StreamedSplit(raw.test, np.arange(len(raw.test), dtype=np.int64)),
        num_classes=raw.num_classes, image_size=image_size, eval_resize=eval_resize(image_size),
        mean=mean, std=std, source=source,
    )


def eval_resize(image_size: int) -> int:
    """The shorter side evaluation resizes to before its centre `image_size` crop (256 for 224)."""
    return round(image_size * EVAL_RESIZE_RATIO)


def load(data) -> DatasetSplits | StreamedSplits:
    """Read, split and describe the images `data` (a `space.DataSettings`) names; cached per settings.

    Whole-tensor kinds give `DatasetSplits` (uint8 tensors), streamed kinds
    `StreamedSplits` (image sources and indices); `.streamed` tells them apart.
    """
    splits = _split(_request(data))
    # A fresh source dict per call: a caller that annotates it cannot change the cache.
    return dataclasses.replace(splits, source=dict(splits.source))


def class_names(data) -> tuple[str, ...]:
    """The class names of the data `data` names, in label order (empty where the data does not name them)."""
    return tuple(_read(_request(data).source).class_names)
