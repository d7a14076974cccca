"""Downsampled ImageNet (Chrabaszcz, Loshchilov & Hutter 2017, arXiv 1707.08819): 1.28 M images at 8-64 px.

The official files are `train_data_batch_1` ... `train_data_batch_10` and
`val_data`, as python pickles (Imagenet32_train/, Imagenet32_val/) or .npz
(Imagenet32_train_npz/, Imagenet32_val_npz/). Each holds `data`, N x 3*S*S
uint8 in R, G, B planes as CIFAR's, and `labels`, 1-based. At 32 px the whole
training set is 3.9 GB of uint8, so it is read whole, on the CIFAR path:
`val_data` is the test set, the validation split is carved from the training
batches.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._cifar import RestrictedUnpickler, field_of
from ._errors import DatasetError
from ._tensors import RawDataset

log = logging.getLogger(__name__)

DOWNSAMPLED_CLASSES = 1000
DOWNSAMPLED_SIZES = (8, 16, 32, 64)  # the resolutions the authors published
TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
TEST_FILE = "val_data"
DOWNSAMPLED_LAYOUT = ("ROOT with train_data_batch_1..10 and val_data, as pickles or .npz (or ROOT holding "
                      "Imagenet32_train/ and Imagenet32_val/, or their _npz forms, as unpacked); data N x 3*S*S "
                      "uint8 in R, G, B planes, labels 1..1000; val_data is the test set")


def _candidates(root: Path, name: str) -> list[Path]:
    """Where file `name` may be under `root`: flat, or in the folders the official archives unpack to."""
    folders = [root] + sorted(p for p in root.glob("Imagenet*_*") if p.is_dir())
    return [folder / f"{name}{suffix}" for folder in folders for suffix in ("", ".npz")]


def _find(root: Path, name: str) -> Path | None:
    return next((path for path in _candidates(root, name) if path.is_file()), None)


def read_downsampled_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data N x 3*S*S uint8, labels 1-based) of one official file, pickle or .npz, by its content."""
    try:
        with open(path, "rb") as file:
            if file.read(4) == b"PK\x03\x04":  # an .npz is a zip archive, whatever its name
                file.seek(0)
                with np.load(file, allow_pickle=False) as arrays:
                    return np.asarray(arrays["data"]), np.asarray(arrays["labels"])
            file.seek(0)
            batch = RestrictedUnpickler(file, path).load()
    except DatasetError:
        raise
    except KeyError as error:
        raise DatasetError(f"{path}: the .npz has no {error} array; expected 'data' and 'labels'") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error.strerror or error})") from error
    except Exception as error:  # garbled bytes surface as many types (BadZipFile, UnpicklingError, EOFError)
        raise DatasetError(f"{path}: not a readable downsampled-ImageNet file ({type(error).__name__}: {error}); "
                           "it is truncated or corrupt: fetch the official file again") from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    data, labels = field_of(batch, "data"), field_of(batch, "labels")
    if data is None or labels is None:
        raise DatasetError(f"{path}: expected the keys 'data' and 'labels'")
    return np.asarray(data), np.asarray(labels)


def _check(path: Path, data: np.ndarray, labels: np.ndarray, image_size: int) -> None:
    width = 3 * image_size * image_size
    if not (data.dtype == np.uint8 and data.ndim == 2):
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape (N, 3*S*S), got {data.dtype} "
                           f"of shape {data.shape}")
    if data.shape[1] != width:
        sizes = {3 * s * s: s for s in DOWNSAMPLED_SIZES}
        stored = sizes.get(data.shape[1])
        hint = (f"the file holds {stored} px images: set data.image_size: {stored}" if stored
                else f"allowed: rows of 3*S*S for S in {DOWNSAMPLED_SIZES}")
        raise DatasetError(f"{path}: rows of {data.shape[1]} values, but data.image_size {image_size} needs "
                           f"{width}; {hint}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise DatasetError(f"{path}: 'labels' must be {len(data)} integers, got {labels.dtype} of shape {labels.shape}")
    if len(labels) and (labels.min() < 1 or labels.max() > DOWNSAMPLED_CLASSES):
        raise DatasetError(f"{path}: 'labels' holds values from {labels.min()} to {labels.max()}; allowed: 1 to "
                           f"{DOWNSAMPLED_CLASSES} (the official files count from 1)")


def _read_files(paths: list[Path], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    parts = []
    for path in paths:
        data, labels = read_downsampled_file(path)
        _check(path, data, labels, image_size)
        parts.append((data, labels))
    count = sum(len(labels) for _, labels in parts)
    # One allocation for the pool (3.9 GB at 32 px), filled file by file, instead of a concatenated copy.
    images = torch.empty((count, 3, image_size, image_size), dtype=torch.uint8)
    targets = torch.empty(count, dtype=torch.int64)
    start = 0
    for data, labels in parts:
        images[start:start + len(data)] = torch.from_numpy(data.reshape(-1, 3, image_size, image_size))
        targets[start:start + len(data)] = torch.from_numpy(labels.astype(np.int64) - 1)
        start += len(data)
    return images, targets


def read_imagenet_downsampled(source: Any) -> RawDataset:
    """`imagenet_downsampled`: the ten training batches and val_data (the test set) as whole uint8 tensors."""
    if source.root is None:
        raise DatasetError("data.root: got None; downsampled ImageNet has no embedded sample: set data.root (or "
                           f"pass --data-root) to {DOWNSAMPLED_LAYOUT}")
    root = Path(source.root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; expected {DOWNSAMPLED_LAYOUT}")
    found = {name: _find(root, name) for name in (*TRAIN_FILES, TEST_FILE)}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise DatasetError(f"{root}: incomplete downsampled ImageNet: missing {', '.join(missing)} "
                           f"(expected {DOWNSAMPLED_LAYOUT})")
    train_x, train_y = _read_files([found[name] for name in TRAIN_FILES], source.image_size)
    test_x, test_y = _read_files([found[TEST_FILE]], source.image_size)
    files = [str(found[name].relative_to(root)) for name in (*TRAIN_FILES, TEST_FILE)]
    source_dict = {"name": "imagenet_downsampled", "root": str(root), "embedded_sample": False,
                   "fallback_reason": None, "files": files}
    return RawDataset(train_x, train_y, test_x, test_y, DOWNSAMPLED_CLASSES, source_dict)
