"""The images a trial sees: dataset kinds by name, their readers, splits, fingerprints and augmentation.

    splits = imagefeed.load(study.data_settings())
    splits.streamed     # False: DatasetSplits (uint8 tensors); True: StreamedSplits (image sources)
    splits.source       # what run.json records as "dataset"; --reuse matches on it

`DATASET_KINDS` is the one table of dataset names (space derives the allowed
`data.dataset` values, class counts and natural image sizes from it).
"""

from ._cifar import LAYOUTS, RestrictedUnpickler, read_batch, read_official
from ._downsampled import read_downsampled_file
from ._errors import BadImage, DatasetError
from ._fingerprint import fingerprint_files
from ._folders import IMAGE_EXTENSIONS, FolderImages
from ._images import (EVAL_RESIZE_RATIO, ImageSource, StreamedDataset, StreamedSplit, StreamedSplits, to_rgb)
from ._loader import DEFAULT_PREFETCH, EpochOrder, ImageLoader, loader_workers, make_loader
from ._memory import PeakHostMemory, host_tree_mib, peak_device_mib, reset_peak_device
from ._transforms import EvalCrop, TrainCrop, eval_transform, train_transform
from ._kinds import (AUGMENTATIONS, DATASET_KINDS, DatasetKind, class_names, dataset_kind, eval_resize, load,
                     whole_tensor_kinds)
from ._normalizations import NORMALIZATIONS
from ._tensors import (SAMPLE_PATH, SAMPLE_SHA256, SYNTHETIC_SEED, BatchAugment, DatasetSplits, RawDataset,
                       read_embedded_sample, stratified_split)

__all__ = [
    "load", "class_names", "whole_tensor_kinds", "DATASET_KINDS", "DatasetKind", "dataset_kind", "AUGMENTATIONS",
    "NORMALIZATIONS",
    "DatasetError", "BadImage",
    "make_loader", "ImageLoader", "EpochOrder", "loader_workers", "DEFAULT_PREFETCH",
    "TrainCrop", "EvalCrop", "train_transform", "eval_transform",
    "PeakHostMemory", "host_tree_mib", "peak_device_mib", "reset_peak_device",
    "DatasetSplits", "RawDataset", "BatchAugment", "stratified_split",
    "StreamedSplits", "StreamedSplit", "StreamedDataset", "ImageSource", "FolderImages", "to_rgb",
    "EVAL_RESIZE_RATIO", "eval_resize", "IMAGE_EXTENSIONS", "fingerprint_files",
    "SAMPLE_PATH", "SAMPLE_SHA256", "SYNTHETIC_SEED", "read_embedded_sample",
    "LAYOUTS", "RestrictedUnpickler", "read_batch", "read_official", "read_downsampled_file",
]
