"""The official CIFAR python files: a restricted reader, and fetching the archive once.

The official files are python-2 pickles. A pickle can call any importable
function while it loads, so they are read with an unpickler that resolves only
the few numpy globals an array needs; everything else is refused before it can
run. The archive is checked against its published md5 before it is unpacked.
"""

from __future__ import annotations

import _codecs
import gzip
import hashlib
import http.client
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SIZE = 32
_PIXELS_PER_IMAGE = 3 * IMAGE_SIZE * IMAGE_SIZE
# Long enough for a slow mirror to answer, short enough that an offline machine
# fails in seconds rather than minutes.
_DOWNLOAD_TIMEOUT_S = 30
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class OfficialLayout:
    """Where one dataset's files live in the official python release, and where to fetch it."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    url: str
    md5: str

    @property
    def archive(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files


# URLs and md5 sums as published on https://www.cs.toronto.edu/~kriz/cifar.html.
LAYOUTS: dict[str, OfficialLayout] = {
    "cifar10": OfficialLayout(
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        num_classes=10,
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": OfficialLayout(
        title="CIFAR-100",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        # The 100 fine classes; `coarse_labels` (20 superclasses) is not used.
        label_key="fine_labels",
        num_classes=100,
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
    ),
}


def _numpy_multiarray_reconstruct():
    # numpy 2 moved numpy.core to numpy._core and warns on the old name; the
    # official files, written by numpy 1 under python 2, name numpy.core.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# Everything a pickled numpy array needs, and nothing else.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_multiarray_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_multiarray_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # A file re-pickled under python 3 with protocol 2 stores bytes as
    # _codecs.encode(text, "latin1"); it only converts text to bytes.
    ("_codecs", "encode"): _codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy array reconstruction and refuses every other global."""

    def __init__(self, file, path: Path):
        # encoding="bytes": python-2 `str` objects (keys and raw array data)
        # stay bytes instead of being decoded as text.
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise DatasetError(
                f"{self._path}: refused to load: the pickle references the global "
                f"{module}.{name}, which an official dataset file never does (allowed: {allowed})"
            ) from None


def field_of(batch: dict, key: str):
    # Official files have bytes keys; a file re-pickled under python 3 may have str keys.
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def read_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one official batch file as (uint8 images N×3×32×32, int64 labels), validating its structure."""
    try:
        with open(path, "rb") as file:
            batch = RestrictedUnpickler(file, path).load()
    except DatasetError:
        raise
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error.strerror or error})") from error
    except Exception as error:  # truncated or garbled bytes surface as many types
        raise DatasetError(
            f"{path}: not a readable CIFAR batch file ({type(error).__name__}: {error}); "
            "the file is truncated or corrupt: delete it and fetch the official archive again"
        ) from error

    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a dict with 'data' and '{label_key}', got {type(batch).__name__}")
    data, labels = field_of(batch, "data"), field_of(batch, label_key)
    if data is None or labels is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in batch)
        raise DatasetError(f"{path}: expected the keys 'data' and '{label_key}', found {keys}")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _PIXELS_PER_IMAGE):
        described = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape (N, {_PIXELS_PER_IMAGE}), got a {described}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{path}: '{label_key}' must be a list of integers, got {labels.dtype} of shape {labels.shape}")
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(labels)} entries in '{label_key}'")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{path}: '{label_key}' holds values from {labels.min()} to {labels.max()}; allowed: 0 to {num_classes - 1}"
        )
    # The official rows are channel-major (1024 red, 1024 green, 1024 blue), i.e. CHW.
    return data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE), labels.astype(np.int64)


def read_official(folder: Path, layout: OfficialLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read (train_x, train_y, test_x, test_y) from a folder in the official layout."""
    def read(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_batch(folder / name, layout.label_key, layout.num_classes) for name in names]
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    return (*read(layout.train_files), *read(layout.test_files))


def _check_readable(folder: Path) -> None:
    """A folder that cannot be listed or entered is reported as such, not as a missing dataset."""
    if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
        raise DatasetError(f"{folder}: the data folder cannot be read (permission denied); make it readable "
                           f"(chmod u+rx {folder}) or point data.root (--data-root) at another folder")


def locate(root: Path, layout: OfficialLayout, download: bool, hint: str = "") -> Path:
    """Return the folder holding the official files under `root`, unpacking or downloading the archive if needed.

    `root` may be the folder that contains `layout.folder` or `layout.folder`
    itself. `hint` is appended to the "missing" messages (say what else works).
    """
    try:
        return _locate(root.expanduser(), layout, download, hint)
    except PermissionError as error:  # a folder on the way that cannot be entered
        where = error.filename or root
        raise DatasetError(f"{where}: cannot be read (permission denied); make the data folder readable "
                           "or point data.root (--data-root) at another folder") from error


def _locate(root: Path, layout: OfficialLayout, download: bool, hint: str) -> Path:
    _check_readable(root)
    if (root / layout.folder).is_dir():
        folder = root / layout.folder
    elif root.name == layout.folder or any((root / name).exists() for name in layout.files):
        folder = root
    else:
        folder = None
    if folder is not None and folder.is_dir():
        _check_readable(folder)
        missing = [name for name in layout.files if not (folder / name).is_file()]
        if missing:
            raise DatasetError(
                f"{folder}: incomplete {layout.title} folder: missing {', '.join(missing)} "
                f"(the official python layout has {', '.join(layout.files)})"
            )
        return folder

    # Absent: unpack an archive someone put there, or download one.
    parent = root.parent if root.name == layout.folder else root
    archive = parent / layout.archive
    expected = f"{root / layout.folder}{os.sep} with {', '.join(layout.files)}"
    how_to_get = (
        f"put the official archive {layout.archive} (from {layout.url}, md5 {layout.md5}) in {parent} "
        f"and it is checked and unpacked on the next run, or pass --data-root (data.root) "
        f"pointing at a folder that holds {layout.folder}{os.sep}.{hint}"
    )
    if archive.is_file():
        _check_md5(archive, layout.md5, what=f"{archive}", remedy="delete it and fetch the official archive again")
        return _unpack(archive, parent, layout)
    if not download:
        raise DatasetError(
            f"{layout.title} not found at {root} (expected {expected}). "
            f"To get it: set data.download: true (needs network), or {how_to_get}"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"cannot create the data folder {parent}: {error.strerror or error}") from error
    partial = _download(layout, parent, how_to_get, root)
    try:
        return _unpack(partial, parent, layout)
    finally:
        partial.unlink(missing_ok=True)


def _download(layout: OfficialLayout, parent: Path, how_to_get: str, root: Path) -> Path:
    # A uniquely named partial file, so parallel workers never read each
    # other's half-written download.
    handle, partial_name = tempfile.mkstemp(prefix=f".{layout.archive}.", suffix=".part", dir=parent)
    partial = Path(partial_name)
    md5 = hashlib.md5(usedforsecurity=False)
    log.warning("%s is missing at %s: downloading %s", layout.title, root, layout.url)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(layout.url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK_BYTES):
                md5.update(chunk)
                out.write(chunk)
    except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, resets, a full disk
        partial.unlink(missing_ok=True)
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise DatasetError(
            f"{layout.title} is missing at {root} and the download from {layout.url} failed "
            f"({type(error).__name__}: {reason}). To get it: {how_to_get}"
        ) from error
    if md5.hexdigest() != layout.md5:
        partial.unlink(missing_ok=True)
        raise DatasetError(
            f"downloaded {layout.url} but its md5 is {md5.hexdigest()}, not the published {layout.md5}; "
            f"the download was deleted and nothing was unpacked. Retry, or {how_to_get}"
        )
    return partial


def _check_md5(path: Path, expected: str, what: str, remedy: str) -> None:
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK_BYTES):
            md5.update(chunk)
    if md5.hexdigest() != expected:
        raise DatasetError(f"{what}: md5 is {md5.hexdigest()}, but the published md5 is {expected}; {remedy}")


def _unpack(archive: Path, parent: Path, layout: OfficialLayout) -> Path:
    # Unpack beside the destination, then rename: a reader never sees a
    # half-unpacked folder, and of two workers unpacking at once one wins.
    staging = Path(tempfile.mkdtemp(prefix=f".{layout.folder}.", dir=parent))
    destination = parent / layout.folder
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                # filter="data" refuses absolute paths, "..", links out of the
                # destination and device files (PEP 706).
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise DatasetError(f"{archive}: cannot unpack ({type(error).__name__}: {error})") from error
        unpacked = staging / layout.folder
        missing = [name for name in layout.files if not (unpacked / name).is_file()]
        if missing:
            raise DatasetError(f"{archive}: the archive has no {layout.folder}/{', '.join(missing)}")
        try:
            unpacked.rename(destination)
        except OSError:
            if not destination.is_dir():  # not "another worker was faster"
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.warning("%s unpacked into %s", layout.title, destination)
    return destination
