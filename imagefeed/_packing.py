"""Writing the packed store (`python -m search.pack`): the images re-encoded, the index, the fingerprint.

The file format (its preamble, index arrays, header and their limits) is
`imagefeed._packed`'s, which reads it; this module only writes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._errors import BadImage, DatasetError
from ._images import to_rgb
from ._packed import (_ARRAYS, _MAX_SIDE_LIMIT, _PREAMBLE, DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE, FORMAT_VERSION,
                      JPEG, MAGIC, PREAMBLE_BYTES, RAW, RAW_MAX_SIDE, log)


@dataclass(frozen=True)
class PackSummary:
    """What `write_packed` wrote: the file, its fingerprint, and the counts and bytes per split."""

    path: Path
    fingerprint: str
    counts: dict[str, int]
    raw_images: int
    jpeg_images: int
    skipped_images: int  # unreadable when packed (BadImage), beside those the reader skipped when indexing
    file_bytes: int


def _resize_to(image: Any, max_side: int) -> Any:
    """`image` with its longer side at most `max_side` (aspect kept); smaller images are left as they are."""
    from PIL import Image

    width, height = image.size
    longer = max(width, height)
    if longer <= max_side:
        return image
    scale = max_side / longer
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # reducing_gap: a box pre-shrink then Lanczos, as Pillow's thumbnail(); same look, a fraction of the time.
    return image.resize(size, Image.LANCZOS, reducing_gap=3.0)


def _encode(image: Any, max_side: int, quality: int, raw: bool | None) -> tuple[bytes, int, int, int]:
    """One image's stored bytes, height, width and encoding."""
    image = _resize_to(to_rgb(image), max_side)
    width, height = image.size
    if raw or (raw is None and max(width, height) <= RAW_MAX_SIDE):
        return image.tobytes(), height, width, RAW
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue(), height, width, JPEG


def _images_of(split: Any) -> tuple[int, Callable[[int], Any], np.ndarray]:
    """(count, index -> PIL image, labels) of an `ImageSource` or of uint8 NCHW tensors with labels."""
    from PIL import Image

    if isinstance(split, tuple):  # whole-tensor (x, y)
        images, labels = split
        pixels = np.asarray(images)
        if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.dtype != np.uint8:
            raise DatasetError(f"expected uint8 images of shape (N, 3, H, W), got {pixels.dtype} {pixels.shape}")
        return len(pixels), lambda i: Image.fromarray(np.ascontiguousarray(pixels[i].transpose(1, 2, 0))), \
            np.asarray(labels, dtype=np.int64)
    return len(split), split.read, np.asarray(split.labels, dtype=np.int64)


def _align(handle: Any, alignment: int = 8) -> int:
    position = handle.tell()
    padding = -position % alignment
    handle.write(b"\0" * padding)
    return position + padding


def write_packed(out: str | os.PathLike, dataset: Any, *, kind: str, max_side: int = DEFAULT_MAX_SIDE,
                 quality: int = DEFAULT_JPEG_QUALITY, raw: bool | None = None,
                 progress: Callable[[int, int], None] | None = None) -> PackSummary:
    """Pack `dataset` (a reader's `StreamedDataset` or `RawDataset`) into the file `out`, atomically.

    `raw`: None keeps images of at most RAW_MAX_SIDE px raw and re-encodes the
    others as JPEG; True keeps every image raw (after the resize), False makes
    every image a JPEG. `progress(done, total)` is called now and then.
    """
    from runfolder import atomic_write_with

    if not 1 <= max_side <= _MAX_SIDE_LIMIT:
        raise DatasetError(f"max_side: got {max_side}; allowed: an integer in [1, {_MAX_SIDE_LIMIT}]")
    if not 1 <= quality <= 95:  # Pillow: above 95 the files grow with no visible gain
        raise DatasetError(f"quality: got {quality}; allowed: an integer in [1, 95]")
    if hasattr(dataset, "train_x"):
        splits = {"train": (dataset.train_x, dataset.train_y), "test": (dataset.test_x, dataset.test_y)}
    else:
        splits = {"train": dataset.train, "test": dataset.test}
    class_names = [str(name) for name in getattr(dataset, "class_names", ())]
    num_classes = int(dataset.num_classes)
    # Where the images came from, for run.json (the origin's own fingerprint, its skipped images); plain values only.
    origin = {key: value for key, value in dict(dataset.source).items()
              if isinstance(value, (str, int, float, bool)) or value is None
              or isinstance(value, list) and all(isinstance(item, str) for item in value)}
    content = {"kind": kind, "num_classes": num_classes, "class_names": class_names,
               "max_side": max_side, "jpeg_quality": quality}
    out = Path(out)
    summary: dict[str, Any] = {}

    def write(temporary: str) -> None:
        digest = hashlib.sha256()
        counts = {JPEG: 0, RAW: 0}
        skipped: list[str] = []
        with open(temporary, "wb") as handle:
            handle.write(b"\0" * PREAMBLE_BYTES)
            indexes: dict[str, dict[str, np.ndarray]] = {}
            total = sum(_images_of(split)[0] for split in splits.values())
            done = 0
            for name, split in splits.items():
                count, read, labels = _images_of(split)
                arrays = {key: np.zeros(count, dtype) for key, dtype in _ARRAYS.items()}
                arrays["labels"][:] = labels
                kept = np.zeros(count, bool)
                for index in range(count):
                    done += 1
                    try:
                        image = read(index)
                    except BadImage as error:  # found only when decoded (a truncated JPEG): skipped and counted
                        log.warning("%s", error)
                        skipped.append(error.path)
                        continue
                    data, height, width, encoding = _encode(image, max_side, quality, raw)
                    arrays["offsets"][index] = handle.tell()
                    arrays["sizes"][index] = len(data)
                    arrays["heights"][index], arrays["widths"][index] = height, width
                    arrays["encodings"][index] = encoding
                    kept[index] = True
                    counts[encoding] += 1
                    handle.write(data)
                    digest.update(data)
                    if progress is not None and (done % 1000 == 0 or done == total):
                        progress(done, total)
                indexes[name] = {key: array[kept] for key, array in arrays.items()}
            data_end = handle.tell()
            layout: dict[str, Any] = {}
            for name, arrays in indexes.items():
                layout[name] = {"count": len(arrays["offsets"]), "arrays": {}}
                for key, array in arrays.items():
                    layout[name]["arrays"][key] = _align(handle)
                    handle.write(array.tobytes())
                    digest.update(key.encode() + array.tobytes())
            digest.update(json.dumps(content, sort_keys=True).encode())
            sha256 = digest.digest()
            origin["skipped_images"] = int(origin.get("skipped_images") or 0) + len(skipped)
            origin["skipped_while_packing"] = skipped[:5]
            header = {"format_version": FORMAT_VERSION, **content, "data": [PREAMBLE_BYTES, data_end],
                      "splits": layout, "origin": origin, "fingerprint": sha256.hex()}
            header_offset = _align(handle)
            encoded = json.dumps(header, ensure_ascii=False).encode("utf-8")
            handle.write(encoded)
            handle.seek(0)
            handle.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, header_offset, len(encoded), sha256))
            handle.flush()
            os.fsync(handle.fileno())
        summary.update(fingerprint=sha256.hex()[:16], counts={name: len(a["offsets"]) for name, a in indexes.items()},
                       raw_images=counts[RAW], jpeg_images=counts[JPEG], skipped_images=len(skipped),
                       file_bytes=os.path.getsize(temporary))

    atomic_write_with(out, write)
    return PackSummary(path=out, **summary)


# ------------------------------------------------------------------ reading
