"""The streamed kinds that are folders of image files: imagefolder, imagenet and tiny_imagenet.

Indexing a folder lists it with `os.scandir` (one stat per file, which also
gives the fingerprint) and opens each image's header with `PIL.Image.open`,
which reads the first bytes and decodes nothing: a zero-byte file, a file
that is not an image whatever its name, or one that cannot be opened is
skipped there, with a warning naming it, and counted in `source`. A JPEG whose
header is fine but whose data ends early is found only when it is decoded:
`FolderImages.read` raises `BadImage` for it, which the loader turns into a
skip and a count. A class folder with no readable image, or a split with
none, is refused before any trial starts.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import BadImage, DatasetError
from ._fingerprint import fingerprint_files, fingerprint_paths
from ._images import StreamedDataset, to_rgb

log = logging.getLogger(__name__)

# torchvision's IMG_EXTENSIONS: what counts as an image by its name (case-insensitive). Other files (a README,
# Tiny-ImageNet's *_boxes.txt) are not images and are passed over silently.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SKIPPED_EXAMPLES = 5  # how many skipped files run.json names (all are counted)
_WARNED_SKIPS = 20    # how many skipped files the log names one by one

IMAGEFOLDER_LAYOUT = ("ROOT/train/<class>/*.jpg|*.png and ROOT/val/<class>/* (one folder per class, named alike "
                      "in both; val/ is the test set)")
IMAGENET_LAYOUT = ("ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG: ILSVRC2012's 1,000 classes, one folder "
                   "per WordNet id (n01440764, ...); val/ is the test set")
TINY_IMAGENET_LAYOUT = ("ROOT (tiny-imagenet-200/) with wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
                        "val/images/*.JPEG and val/val_annotations.txt, as distributed; val/ is the test set")
IMAGENET_CLASSES = 1000
TINY_IMAGENET_CLASSES = 200
_WNID = re.compile(r"n\d{8}")
# How ILSVRC2012's flat validation folder becomes one folder per class; quoted when val/ is flat.
_FLAT_VAL_HOWTO = (
    "move each image into val/<wnid>/ by the devkit's labels (ILSVRC2012_devkit_t12: "
    "data/ILSVRC2012_validation_ground_truth.txt gives image i's ILSVRC2012_ID and data/meta.mat maps that "
    "id to its wnid), e.g. with torchvision.datasets.ImageNet(ROOT, split='val'), which does this from "
    "ILSVRC2012_devkit_t12.tar.gz, or the widely used valprep.sh"
)


@dataclass(frozen=True, eq=False)
class FolderImages:
    """An `ImageSource` over image files: `paths` relative to `root`, one label each; pickles as plain text."""

    root: str
    paths: tuple[str, ...]
    labels: np.ndarray  # int64
    digest: str

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> str:
        """The absolute path of image `index`."""
        return os.path.join(self.root, self.paths[index])

    def read(self, index: int, target_side: int | None = None) -> Any:
        """Image `index` decoded to RGB; `BadImage` if it cannot be (the loader skips and counts it)."""
        from PIL import Image

        path = self.path(index)
        try:
            with Image.open(path) as image:
                if target_side:
                    # JPEG only (a no-op elsewhere): decode at 1/2, 1/4 or 1/8 scale in the DCT domain while
                    # both sides stay >= target_side, so the shorter side never drops below what is asked.
                    image.draft(None, (target_side, target_side))
                image.load()  # a truncated JPEG raises here ("image file is truncated")
                return to_rgb(image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise BadImage(path, f"{type(error).__name__}: {error}") from None

    def fingerprint(self) -> str:
        """Names, sizes and modification times of the files (`_fingerprint`), hashed when indexed."""
        return self.digest


# ------------------------------------------------------------------ indexing
@dataclass
class _Scan:
    """What one walk found: readable images with labels, every file's identity, and what was skipped."""

    paths: list[str]
    labels: list[int]
    identities: list[tuple[str, int, int]]
    skipped: list[tuple[str, str]]  # (relative path, reason)


def _header_problem(path: str, size: int) -> str | None:
    """Why the image at `path` cannot be used, from its header alone; None if it opens."""
    if size == 0:
        return "empty file"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):  # reads the header; decodes no pixel
            return None
    except UnidentifiedImageError:
        return "not an image PIL can read"
    except PermissionError:
        return "permission denied"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"{type(error).__name__}: {error}"


def _scan_images(folder: Path, root: Path, label: int, scan: _Scan) -> int:
    """Add every image under `folder` (recursively, in name order) to `scan`; return how many were readable."""
    readable = 0
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except PermissionError:
        raise DatasetError(f"{folder}: cannot be read (permission denied); make the data folder readable "
                           "or point data.root (--data-root) at another folder") from None
    for entry in entries:
        if entry.is_dir():
            readable += _scan_images(Path(entry.path), root, label, scan)
            continue
        if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        relative = os.path.relpath(entry.path, root)
        try:
            stat = entry.stat()
        except OSError as error:
            scan.skipped.append((relative, error.strerror or str(error)))
            continue
        scan.identities.append((relative, stat.st_size, stat.st_mtime_ns))
        problem = _header_problem(entry.path, stat.st_size)
        if problem is not None:
            scan.skipped.append((relative, problem))
            continue
        scan.paths.append(relative)
        scan.labels.append(label)
        readable += 1
    return readable


def _check_root(root: Path, layout: str) -> None:
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; expected {layout}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DatasetError(f"{root}: the data folder cannot be read (permission denied); make it readable "
                           f"(chmod u+rx {root}) or point data.root (--data-root) at another folder")


def _subfolders(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def _loose_images(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder)
                  if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS))


def _split_folder(root: Path, split: str, layout: str) -> Path:
    folder = root / split
    if not folder.is_dir():
        present = ", ".join(f"{name}/" for name in _subfolders(root)) or "no folders"
        raise DatasetError(f"{root}: no {split}/ folder (found {present}); expected {layout}")
    return folder


def _scan_class_folders(root: Path, split: str, classes: list[tuple[str, int]], layout: str, scan: _Scan,
                        below: str = "") -> None:
    """Scan split/<class>/<below> for each (class, label), refusing a class folder with no readable image."""
    for name, label in classes:
        folder = root / split / name / below if below else root / split / name
        if not folder.is_dir():
            raise DatasetError(f"{folder}: missing; expected {layout}")
        if _scan_images(folder, root, label, scan) == 0:
            bad = [path for path, _ in scan.skipped if path.startswith(os.path.relpath(folder, root) + os.sep)]
            what = f"{len(bad)} unreadable, e.g. {bad[0]}" if bad else "no image files"
            raise DatasetError(f"{folder}: no readable image ({what}); every class needs at least one: "
                               "add images or remove the class from every split")


def _report_skips(root: Path, skipped: list[tuple[str, str]]) -> None:
    for relative, reason in skipped[:_WARNED_SKIPS]:
        log.warning("%s: skipped, not a readable image (%s)", root / relative, reason)
    if len(skipped) > _WARNED_SKIPS:
        log.warning("%s: %d more unreadable images skipped (run.json's dataset.skipped_images counts them all)",
                    root, len(skipped) - _WARNED_SKIPS)


def _dataset(name: str, root: Path, train: _Scan, test: _Scan, class_names: tuple[str, ...],
             layout_files: list[str]) -> StreamedDataset:
    """The StreamedDataset of two scans, with the folder's fingerprint and the skipped images in `source`."""
    skipped = train.skipped + test.skipped
    _report_skips(root, skipped)
    digest = fingerprint_files(train.identities + test.identities + fingerprint_paths(str(root), layout_files))

    def images(scan: _Scan) -> FolderImages:
        return FolderImages(str(root), tuple(scan.paths), np.asarray(scan.labels, dtype=np.int64), digest)

    source = {"name": name, "root": str(root), "embedded_sample": False, "fallback_reason": None,
              "fingerprint": digest, "skipped_images": len(skipped),
              "skipped_examples": [path for path, _ in skipped[:SKIPPED_EXAMPLES]]}
    return StreamedDataset(images(train), images(test), len(class_names), class_names, source)


def _needs_root(source: Any, title: str, layout: str) -> Path:
    if source.root is None:
        raise DatasetError(f"data.root: got None; {title} has no embedded sample: set data.root (or pass "
                           f"--data-root) to a folder holding {layout}")
    return Path(source.root)


# ------------------------------------------------------------------ the kinds
def _read_class_folders(source: Any, name: str, title: str, layout: str, flat_val_hint: str) -> StreamedDataset:
    root = _needs_root(source, title, layout)
    _check_root(root, layout)
    train_folder, val_folder = _split_folder(root, "train", layout), _split_folder(root, "val", layout)
    classes = _subfolders(train_folder)
    if not classes:
        loose = _loose_images(train_folder)
        found = f"{len(loose)} images but no class folders" if loose else "nothing"
        raise DatasetError(f"{train_folder}: found {found}; expected {layout}")
    val_classes = _subfolders(val_folder)
    if not val_classes and _loose_images(val_folder):
        raise DatasetError(f"{val_folder}: holds {len(_loose_images(val_folder))} images but no class folders; "
                           f"expected {layout}: {flat_val_hint}")
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise DatasetError(f"{val_folder}: class folders {', '.join(unknown[:5])} are not in train/; "
                           f"expected {layout}")
    if not val_classes:
        raise DatasetError(f"{val_folder}: no class folders and no images; expected {layout}")
    train, test = _Scan([], [], [], []), _Scan([], [], [], [])
    _scan_class_folders(root, "train", [(name, label) for label, name in enumerate(classes)], layout, train)
    label_of = {class_name: label for label, class_name in enumerate(classes)}
    _scan_class_folders(root, "val", [(name, label_of[name]) for name in val_classes], layout, test)
    return _dataset(name, root, train, test, tuple(classes), [])


def read_imagefolder(source: Any) -> StreamedDataset:
    """`imagefolder`: ROOT/train/<class>/* and ROOT/val/<class>/*, classes in name order (as torchvision's)."""
    return _read_class_folders(source, "imagefolder", "an image folder", IMAGEFOLDER_LAYOUT,
                               "put each held-out image in val/<class>/, named as in train/")


def read_imagenet(source: Any) -> StreamedDataset:
    """`imagenet`: an image folder with ILSVRC2012's 1,000 wnid classes; a flat val/ gets the devkit recipe."""
    root = _needs_root(source, "ImageNet", IMAGENET_LAYOUT)
    _check_root(root, IMAGENET_LAYOUT)
    classes = _subfolders(_split_folder(root, "train", IMAGENET_LAYOUT))
    val_folder = _split_folder(root, "val", IMAGENET_LAYOUT)
    if not _subfolders(val_folder) and _loose_images(val_folder):  # the archive's 50,000 files, before all else
        raise DatasetError(f"{val_folder}: holds {len(_loose_images(val_folder))} images but no class folders; "
                           f"expected {IMAGENET_LAYOUT}: {_FLAT_VAL_HOWTO}")
    not_wnids = [name for name in classes if not _WNID.fullmatch(name)]
    if not_wnids or (classes and len(classes) != IMAGENET_CLASSES):
        what = (f"class folders not named by wnid ({', '.join(not_wnids[:3])}, ...)" if not_wnids
                else f"{len(classes)} class folders")
        raise DatasetError(f"{root / 'train'}: {what}; expected {IMAGENET_LAYOUT}. For a subset of the classes "
                           "or another folder dataset use data.dataset: imagefolder")
    return _read_class_folders(source, "imagenet", "ImageNet", IMAGENET_LAYOUT, _FLAT_VAL_HOWTO)


def _read_lines(path: Path, layout: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing; expected {layout}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot be read ({error}); expected {layout}") from None


def read_tiny_imagenet(source: Any) -> StreamedDataset:
    """`tiny_imagenet`: Tiny-ImageNet-200 as distributed; classes in wnids.txt order, named from words.txt."""
    layout = TINY_IMAGENET_LAYOUT
    root = _needs_root(source, "Tiny-ImageNet", layout)
    if (root / "tiny-imagenet-200").is_dir():  # the folder that holds the unpacked archive
        root = root / "tiny-imagenet-200"
    _check_root(root, layout)
    wnids = [line.strip() for line in _read_lines(root / "wnids.txt", layout) if line.strip()]
    if len(wnids) != TINY_IMAGENET_CLASSES or len(set(wnids)) != len(wnids):
        raise DatasetError(f"{root / 'wnids.txt'}: lists {len(set(wnids))} distinct classes; Tiny-ImageNet-200 has "
                           f"{TINY_IMAGENET_CLASSES}. For another folder dataset use data.dataset: imagefolder")
    words = dict(line.split("\t", 1) for line in _read_lines(root / "words.txt", layout) if "\t" in line)
    missing_words = [wnid for wnid in wnids if wnid not in words]
    if missing_words:
        raise DatasetError(f"{root / 'words.txt'}: no name for {', '.join(missing_words[:3])}; expected {layout}")
    _split_folder(root, "train", layout)
    train = _Scan([], [], [], [])
    _scan_class_folders(root, "train", [(wnid, label) for label, wnid in enumerate(wnids)], layout, train,
                        below="images")

    annotations = root / "val" / "val_annotations.txt"
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    val_labels: dict[str, int] = {}
    for number, line in enumerate(_read_lines(annotations, layout), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise DatasetError(f"{annotations}:{number}: expected 'FILE<TAB>WNID<TAB>box', a wnid of wnids.txt, "
                               f"got {line[:80]!r}")
        val_labels[fields[0]] = label_of[fields[1]]
    test = _Scan([], [], [], [])
    images = root / "val" / "images"
    if not images.is_dir():
        raise DatasetError(f"{images}: missing; expected {layout}")
    _scan_images(images, root, -1, test)
    unlabelled = [path for path in test.paths if os.path.basename(path) not in val_labels]
    if unlabelled:
        raise DatasetError(f"{annotations}: no line for {unlabelled[0]} ({len(unlabelled)} images unlabelled); "
                           f"expected {layout}")
    test.labels = [val_labels[os.path.basename(path)] for path in test.paths]
    class_names = tuple(words[wnid].strip() for wnid in wnids)
    return _dataset("tiny_imagenet", root, train, test, class_names,
                    ["wnids.txt", "words.txt", os.path.join("val", "val_annotations.txt")])

