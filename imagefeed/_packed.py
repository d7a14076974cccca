"""The packed store: one memory-mapped file holding a dataset's images pre-resized, its labels and a fingerprint.

Decoding a JPEG costs about its pixel count, and an ImageNet original is
about 500x375 px (110 KB) for a 224 px crop. FFCV's insight (Leclerc et al.
2023, arXiv 2306.12517) is to pay the resize once: `write_packed` re-encodes
every image with its longer side at most `max_side` (JPEG, quality 90) or keeps
small images (<= `RAW_MAX_SIDE`) as raw uint8 pixels, and puts them in one file
that a reader maps into memory and slices, with no file system walk, no
`open()` per image and no directory to list. `PackedImages` is the reader: an
`ImageSource` over one split of the file.

The layout, version `FORMAT_VERSION` (little-endian throughout):

    offset 0    preamble, 64 bytes: MAGIC (8), format version u32, reserved u32,
                header offset u64, header length u64, sha256 of the content (32)
    offset 64   the records: each image's bytes (JPEG, or raw H x W x 3 uint8), back to back
    ...         per split (train, then test): offsets u64[n], sizes u64[n],
                labels i64[n], heights u16[n], widths u16[n], encodings u8[n]
                (0 = JPEG, 1 = raw), each at an 8-aligned offset the header gives
    header      UTF-8 JSON at the end of the file: kind, class names, how the
                images were encoded, each split's count and array offsets, and
                where the data came from (its root and fingerprint)

The header is written last, once the offsets are known, and the preamble is
filled in then; the whole file goes through a temporary file and a rename, so
a reader sees a complete store or none. The content sha256 covers every
record's bytes, the index arrays and the header's content fields (kind, class
names, encoding), but not where the data came from: the same images packed
from a moved folder have the same fingerprint.

The file is untrusted input: the reader checks the magic and the version, caps
the header's size, reads it as JSON (never pickle), checks every field's
type, and checks every array and every record against the file's length before
it slices anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import BadImage, DatasetError
from ._images import to_rgb

__all__ = [
    "FORMAT_VERSION", "MAGIC", "PackedImages", "PackedStore", "is_packed", "open_packed", "read_packed",
]

MAGIC = b"RESNASPK"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIIQQ32s")  # magic, version, reserved, header offset, header length, sha256
PREAMBLE_BYTES = _PREAMBLE.size  # 64
# 1,000 ImageNet class names are ~30 KB of JSON; ImageNet-21k's 21,841 about 1 MB. 64 MiB bounds a hostile header.
MAX_HEADER_BYTES = 64 * 2**20
# FFCV's ImageNet default (max_resolution 256): a 224 crop still has its pixels, and decode falls ~4x vs 500x375.
DEFAULT_MAX_SIDE = 256
# Quality 90 keeps the re-encoding loss well below what RandomResizedCrop's interpolation does (FFCV uses 90).
DEFAULT_JPEG_QUALITY = 90
# At 64 px a raw image is 12 KB and decodes for free; a JPEG would save ~10 KB and cost a decode per read.
RAW_MAX_SIDE = 64
# A record's side is stored as u16; the header's JSON caps nothing else that could be huge.
_MAX_SIDE_LIMIT = 65535

log = logging.getLogger(__name__)

JPEG, RAW = 0, 1
SPLITS = ("train", "test")
# The index arrays of a split, in file order, with the dtype the reader imposes (never the file's word).
_ARRAYS: dict[str, np.dtype] = {
    "offsets": np.dtype("<u8"), "sizes": np.dtype("<u8"), "labels": np.dtype("<i8"),
    "heights": np.dtype("<u2"), "widths": np.dtype("<u2"), "encodings": np.dtype("u1"),
}

try:  # libjpeg-turbo through a thinner wrapper than PIL: measured faster in bench/input_pipeline.py
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - PIL decodes the same bytes, a little slower
    _simplejpeg = None


def is_packed(path: str | os.PathLike | None) -> bool:
    """Whether `path` is a regular file that starts with the packed store's magic bytes."""
    # isfile first: opening a FIFO or a device to peek at it could block or have effects.
    if path is None or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _refuse(path: Path, problem: str) -> DatasetError:
    return DatasetError(f"{path}: {problem}; expected a packed image store written by `python -m search.pack` "
                        f"(format {FORMAT_VERSION})")


def _field(header: dict, key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = header.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise _refuse(path, f"its header's {key!r} is {type(value).__name__}, not {getattr(kind, '__name__', kind)}")
    return value


class PackedStore:
    """A packed file, opened and checked: its header, and each split's index arrays (in memory)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            # O_NONBLOCK and a regular-file check after fstat: a FIFO or device is refused, never waited on.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as error:
            raise DatasetError(f"{self.path}: cannot be opened ({error.strerror or error}); expected a packed "
                               "image store written by `python -m search.pack`") from None
        try:
            status = os.fstat(fd)
            import stat

            if not stat.S_ISREG(status.st_mode):
                raise _refuse(self.path, "not a regular file")
            self.file_bytes = status.st_size
            if self.file_bytes < PREAMBLE_BYTES:
                if os.pread(fd, len(MAGIC), 0) == MAGIC:
                    raise _refuse(self.path, f"truncated: {self.file_bytes} bytes, shorter than the "
                                             f"{PREAMBLE_BYTES}-byte preamble")
                raise _refuse(self.path, "not a packed store (no RESNASPK magic bytes at its start)")
            self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        magic, version, _, header_offset, header_length, sha256 = _PREAMBLE.unpack_from(self._map, 0)
        if magic != MAGIC:
            raise _refuse(self.path, "not a packed store (no RESNASPK magic bytes at its start)")
        if version != FORMAT_VERSION:
            raise DatasetError(f"{self.path}: packed store format {version}; this resnas reads format "
                               f"{FORMAT_VERSION} only: re-pack it with this version's `python -m search.pack`")
        if header_offset == 0 and header_length == 0:
            raise _refuse(self.path, "unfinished: its writer stopped before the header was written")
        if header_length > MAX_HEADER_BYTES:
            raise _refuse(self.path, f"its header claims {header_length} bytes, over the {MAX_HEADER_BYTES} cap")
        if header_offset < PREAMBLE_BYTES or header_offset + header_length != self.file_bytes:
            raise _refuse(self.path, f"truncated or extended: the header at {header_offset} + {header_length} "
                                     f"bytes should end the file, which has {self.file_bytes} bytes")
        try:
            header = json.loads(bytes(self._map[header_offset:header_offset + header_length]).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise _refuse(self.path, f"its header is not UTF-8 JSON ({error})") from None
        if not isinstance(header, dict):
            raise _refuse(self.path, "its header is not a JSON object")
        self.sha256 = sha256.hex()
        if header.get("fingerprint") != self.sha256:
            raise _refuse(self.path, "its header's fingerprint differs from the preamble's")
        self.kind = _field(header, "kind", str, self.path)
        self.num_classes = _field(header, "num_classes", int, self.path)
        names = _field(header, "class_names", list, self.path)
        if not all(isinstance(name, str) for name in names) or names and len(names) != self.num_classes:
            raise _refuse(self.path, f"its class_names are not {self.num_classes} strings")
        self.class_names = tuple(names)
        self.max_side = _field(header, "max_side", int, self.path)
        self.jpeg_quality = _field(header, "jpeg_quality", int, self.path)
        origin = header.get("origin", {})
        self.origin = origin if isinstance(origin, dict) else {}
        data = _field(header, "data", list, self.path)
        if len(data) != 2 or not all(isinstance(x, int) for x in data) or \
                not PREAMBLE_BYTES <= data[0] <= data[1] <= header_offset:
            raise _refuse(self.path, f"its data region {data} is not inside the file's [64, {header_offset}]")
        self.data_start, self.data_end = data
        splits = _field(header, "splits", dict, self.path)
        self.index: dict[str, dict[str, np.ndarray]] = {}
        for name in SPLITS:
            self.index[name] = self._read_index(name, splits.get(name), header_offset)

    def _read_index(self, name: str, layout: Any, header_offset: int) -> dict[str, np.ndarray]:
        where = f"split {name!r}"
        if not isinstance(layout, dict) or not isinstance(layout.get("count"), int) or layout["count"] < 0 \
                or not isinstance(layout.get("arrays"), dict):
            raise _refuse(self.path, f"its {where} has no count and arrays")
        count, offsets = layout["count"], layout["arrays"]
        arrays = {}
        for key, dtype in _ARRAYS.items():
            at = offsets.get(key)
            end = at + count * dtype.itemsize if isinstance(at, int) else -1
            if not isinstance(at, int) or at < self.data_end or end > header_offset:
                raise _refuse(self.path, f"its {where} {key} array at {at!r} ({count} x {dtype.itemsize} bytes) "
                                         f"lies outside the index region [{self.data_end}, {header_offset}]")
            arrays[key] = np.frombuffer(self._map, dtype, count, at).copy()
        sizes, starts = arrays["sizes"], arrays["offsets"]
        pixels = arrays["heights"].astype(np.uint64) * arrays["widths"].astype(np.uint64) * np.uint64(3)
        bad = (starts < self.data_start) | (starts > self.data_end) | (sizes > self.data_end - starts) \
            | (arrays["encodings"] > RAW) | ((arrays["encodings"] == RAW) & (sizes != pixels)) \
            | (arrays["heights"] == 0) | (arrays["widths"] == 0)
        if np.any(bad):
            first = int(np.argmax(bad))
            raise _refuse(self.path, f"its {where} record {first} (offset {starts[first]}, {sizes[first]} bytes, "
                                     f"{arrays['heights'][first]}x{arrays['widths'][first]}) lies outside the "
                                     f"data region [{self.data_start}, {self.data_end}] or does not match its "
                                     "encoding")
        labels = arrays["labels"]
        if count and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise _refuse(self.path, f"its {where} has labels outside [0, {self.num_classes})")
        return arrays

    def fingerprint(self) -> str:
        """The first 16 hex digits of the content sha256 the writer computed (not re-hashed: see `verify`)."""
        return self.sha256[:16]

    def verify(self) -> None:
        """Re-hash every record and the index and compare with the stored sha256; a DatasetError if they differ."""
        digest = hashlib.sha256()
        for name in SPLITS:
            arrays = self.index[name]
            for start, size in zip(arrays["offsets"].tolist(), arrays["sizes"].tolist()):
                digest.update(self._map[start:start + size])
        for name in SPLITS:
            for key, array in self.index[name].items():
                digest.update(key.encode() + array.tobytes())
        content = {"kind": self.kind, "num_classes": self.num_classes, "class_names": list(self.class_names),
                   "max_side": self.max_side, "jpeg_quality": self.jpeg_quality}
        digest.update(json.dumps(content, sort_keys=True).encode())
        if digest.hexdigest() != self.sha256:
            raise _refuse(self.path, f"its content hashes to {digest.hexdigest()[:16]}, not the "
                                     f"{self.fingerprint()} it was written with: the file is corrupt")

    def record(self, split: str, index: int) -> tuple[memoryview, int, int, int]:
        """(bytes, height, width, encoding) of image `index` of `split`, sliced from the map without a copy."""
        arrays = self.index[split]
        start, size = int(arrays["offsets"][index]), int(arrays["sizes"][index])
        if start + size > len(self._map):  # the file was cut after it was opened
            raise BadImage(f"{self.path}[{split}][{index}]", "record beyond the end of the file")
        return (memoryview(self._map)[start:start + size], int(arrays["heights"][index]),
                int(arrays["widths"][index]), int(arrays["encodings"][index]))

    def close(self) -> None:
        """Unmap the file."""
        self._map.close()


def open_packed(path: str | os.PathLike) -> PackedStore:
    """Open and check a packed store: a DatasetError naming the file and the problem if it is not one."""
    return PackedStore(path)


def _decode_jpeg(data: memoryview, target_side: int | None, where: str) -> Any:
    from PIL import Image

    try:
        if _simplejpeg is not None:
            # min_height/min_width: libjpeg-turbo's DCT-domain downscale, never below what the caller needs.
            side = target_side or 0
            pixels = _simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=side, min_width=side)
            return Image.fromarray(pixels)
        image = Image.open(io.BytesIO(data))
        if target_side:
            image.draft("RGB", (target_side, target_side))
        return to_rgb(image.convert("RGB") if image.mode != "RGB" else image)
    except (OSError, ValueError, SyntaxError) as error:
        raise BadImage(where, str(error)) from None


class PackedImages:
    """One split of a packed store as an `ImageSource`; pickles as its path, so DataLoader workers re-map the file."""

    def __init__(self, path: str | os.PathLike, split: str, store: PackedStore | None = None):
        if split not in SPLITS:
            raise ValueError(f"split: got {split!r}; allowed: {', '.join(SPLITS)}")
        self.path = Path(path)
        self.split = split
        self._store = store if store is not None else open_packed(self.path)
        self._fingerprint = self._store.fingerprint()
        self.labels = self._store.index[split]["labels"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "split": self.split, "fingerprint": self._fingerprint}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["split"])
        if self._fingerprint != state["fingerprint"]:
            raise DatasetError(f"{self.path}: changed while in use (fingerprint {self._fingerprint}, was "
                               f"{state['fingerprint']}); re-run with the new file")

    def read(self, index: int, target_side: int | None = None) -> Any:
        """Image `index` as an RGB PIL image; a JPEG is decoded at the smallest DCT scale with shorter side >= target_side."""
        from PIL import Image

        if not 0 <= index < len(self.labels):
            raise IndexError(f"{self.path}: {self.split} image {index} of {len(self.labels)}")
        data, height, width, encoding = self._store.record(self.split, index)
        if encoding == RAW:
            return Image.frombuffer("RGB", (width, height), bytes(data), "raw", "RGB", 0, 1)
        return _decode_jpeg(data, target_side, f"{self.path}[{self.split}][{index}]")

    def read_array(self, index: int, target_side: int | None = None) -> np.ndarray:
        """Image `index` as a uint8 (H, W, 3) array: `read` without the PIL image (the training crop's fast path)."""
        if not 0 <= index < len(self.labels):
            raise IndexError(f"{self.path}: {self.split} image {index} of {len(self.labels)}")
        data, height, width, encoding = self._store.record(self.split, index)
        if encoding == RAW:
            return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3).copy()  # writable, off the map
        if _simplejpeg is None:
            return np.asarray(_decode_jpeg(data, target_side, f"{self.path}[{self.split}][{index}]"))
        try:
            side = target_side or 0
            return _simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=side, min_width=side)
        except (OSError, ValueError) as error:
            raise BadImage(f"{self.path}[{self.split}][{index}]", str(error)) from None

    def fingerprint(self) -> str:
        """The store's content fingerprint (the same for both splits)."""
        return self._fingerprint

    def raw_tensor(self) -> np.ndarray | None:
        """Every image as one uint8 (N, 3, H, W) array if all are raw and one size; None otherwise."""
        arrays = self._store.index[self.split]
        if len(self) == 0 or np.any(arrays["encodings"] != RAW) or len(set(arrays["heights"].tolist())) != 1 \
                or len(set(arrays["widths"].tolist())) != 1:
            return None
        height, width = int(arrays["heights"][0]), int(arrays["widths"][0])
        images = np.empty((len(self), height, width, 3), np.uint8)
        for index, (start, size) in enumerate(zip(arrays["offsets"].tolist(), arrays["sizes"].tolist())):
            images[index] = np.frombuffer(self._store._map, np.uint8, size, start).reshape(height, width, 3)
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def read_packed(source: Any, streamed: bool) -> Any:
    """The dataset a packed file holds, for `imagefeed.load`: a `StreamedDataset`, or a `RawDataset` where the
    packed kind is whole-tensor (`streamed` False: every image raw and one size). `source.dataset` must match the
    file's kind; `streamed` is that kind's (the caller, `_kinds`, owns the table: importing it here is a circle)."""
    import torch

    from ._images import StreamedDataset
    from ._tensors import RawDataset

    store = open_packed(source.root)
    if source.dataset != store.kind:
        raise DatasetError(f"{store.path}: a packed {store.kind} store, but data.dataset is {source.dataset!r}: "
                           f"set data.dataset: {store.kind}")
    train, test = PackedImages(store.path, "train", store), PackedImages(store.path, "test", store)
    info = {"name": store.kind, "root": str(store.path), "embedded_sample": False, "fallback_reason": None,
            "fingerprint": store.fingerprint(), "packed": True, "packed_from": store.origin.get("root"),
            "packed_from_fingerprint": store.origin.get("fingerprint"),
            "skipped_images": store.origin.get("skipped_images", 0),
            "skipped_examples": store.origin.get("skipped_examples", [])}
    if not streamed:
        train_x, test_x = train.raw_tensor(), test.raw_tensor()
        if train_x is None or test_x is None:
            raise _refuse(store.path, f"a {store.kind} store must hold raw images of one size")
        return RawDataset(torch.from_numpy(train_x), torch.from_numpy(train.labels.copy()),
                          torch.from_numpy(test_x), torch.from_numpy(test.labels.copy()),
                          store.num_classes, info, store.class_names)
    return StreamedDataset(train, test, store.num_classes, store.class_names, info)

