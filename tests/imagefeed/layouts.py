"""Small datasets in each official layout, made from real CIFAR-10 images, for the tests of every engineer.

    from tests.imagefeed import layouts   # the checkout is on pytest's pythonpath
    root = layouts.imagefolder(tmp_path / "folder", classes=3, per_class=4, size=(500, 375))

Every image is a CIFAR-10 image (from ../shared/data/cifar10-mini, read with
the project's restricted unpickler) resized to `size`, and folder class c holds
images of CIFAR class c % 10, so a model can learn the fixture. Writers return
the root to point `data.root` at. The bad-file helpers make each case the
input pipeline must skip: a truncated JPEG, a zero-byte file, a text file
with an image's name, an unreadable file.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
from pathlib import Path

import numpy as np

from imagefeed import read_batch

MINI_FOLDER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-mini" / "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGENET_SIZE = (500, 375)  # a typical ILSVRC2012 JPEG (about 110 KB at quality 90)


@functools.lru_cache(maxsize=1)
def cifar_images() -> tuple[np.ndarray, np.ndarray]:
    """The images (N, 32, 32, 3) uint8 and labels of data_batch_1 of the mini set."""
    images, labels = read_batch(MINI_FOLDER / "data_batch_1", "labels", 10)
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)), labels


def image_of_class(cifar_class: int, nth: int, size: tuple[int, int] = (32, 32), mode: str = "RGB"):
    """The `nth` CIFAR-10 image of `cifar_class` as a PIL image of `size` (W, H) and `mode`."""
    from PIL import Image

    images, labels = cifar_images()
    where = np.flatnonzero(labels == cifar_class)
    image = Image.fromarray(images[where[nth % len(where)]])
    if image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BILINEAR)
    return image if mode == "RGB" else image.convert(mode)


def write_image(path: Path, image, fmt: str = "JPEG") -> Path:
    """Save `image` at `path` (folders made) in `fmt`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return path


def _suffix(fmt: str) -> str:
    return {"JPEG": ".JPEG", "PNG": ".png"}.get(fmt, "." + fmt.lower())


def _class_folders(root: Path, split: str, names: list[str], per_class: int, size: tuple[int, int],
                   fmt: str, first: int = 0) -> None:
    for c, name in enumerate(names):
        for i in range(per_class):
            write_image(root / split / name / f"{name}_{first + i}{_suffix(fmt)}",
                        image_of_class(c % 10, first + i, size), fmt)


def imagefolder(root: Path, classes: int = 3, per_class: int = 4, size: tuple[int, int] = IMAGENET_SIZE,
                fmt: str = "JPEG", val_per_class: int = 2, names: list[str] | None = None) -> Path:
    """root/train/<class>/* and root/val/<class>/*, classes named after CIFAR-10's (then class_10, ...)."""
    names = names or [CIFAR10_CLASSES[c] if c < 10 else f"class_{c}" for c in range(classes)]
    _class_folders(root, "train", names, per_class, size, fmt)
    _class_folders(root, "val", names, val_per_class, size, fmt, first=per_class)
    return root


def wnid(c: int) -> str:
    """A WordNet-id-shaped name for class c (n00000000, n00000001, ...)."""
    return f"n{c:08d}"


def imagenet(root: Path, classes: int = 1000, per_class: int = 1, size: tuple[int, int] = (40, 30),
             val_per_class: int = 1, flat_val: bool = False) -> Path:
    """ILSVRC2012's layout: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, or val/ flat as the archive unpacks."""
    names = [wnid(c) for c in range(classes)]
    _class_folders(root, "train", names, per_class, size, "JPEG")
    if not flat_val:
        _class_folders(root, "val", names, val_per_class, size, "JPEG", first=per_class)
        return root
    number = 0
    for c in range(classes):
        for i in range(val_per_class):
            number += 1
            write_image(root / "val" / f"ILSVRC2012_val_{number:08d}.JPEG", image_of_class(c % 10, per_class + i, size))
    return root


def tiny_imagenet(root: Path, classes: int = 200, per_class: int = 2, val_per_class: int = 1,
                  size: tuple[int, int] = (64, 64)) -> Path:
    """Tiny-ImageNet-200 as distributed: wnids.txt, words.txt, train/<wnid>/images/, val/images/ + annotations."""
    names = [wnid(c) for c in range(classes)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{name}\n" for name in names))
    # words.txt names many more wnids than the 200 (all of WordNet's), in its own order.
    lines = [f"{wnid(c)}\tname of class {c}, synonym {c}\n" for c in reversed(range(classes + 5))]
    (root / "words.txt").write_text("".join(lines))
    for c, name in enumerate(names):
        for i in range(per_class):
            write_image(root / "train" / name / "images" / f"{name}_{i}.JPEG", image_of_class(c % 10, i, size))
        (root / "train" / name / f"{name}_boxes.txt").write_text(f"{name}_0.JPEG\t0\t0\t63\t63\n")
    annotations = []
    number = 0
    for c, name in enumerate(names):
        for i in range(val_per_class):
            file = f"val_{number}.JPEG"
            write_image(root / "val" / "images" / file, image_of_class(c % 10, per_class + i, size))
            annotations.append(f"{file}\t{name}\t0\t0\t63\t63\n")
            number += 1
    (root / "val" / "val_annotations.txt").write_text("".join(annotations))
    return root


def downsampled_arrays(count: int, size: int, first: int = 0) -> tuple[np.ndarray, list[int]]:
    """`count` CIFAR images at `size` px as downsampled ImageNet rows (R, G, B planes) and 1-based labels."""
    from PIL import Image

    images, labels = cifar_images()
    rows = np.empty((count, 3 * size * size), np.uint8)
    chosen = [(first + i) % len(images) for i in range(count)]
    for row, index in enumerate(chosen):
        image = Image.fromarray(images[index])
        if size != 32:
            image = image.resize((size, size), Image.Resampling.BOX)
        rows[row] = np.asarray(image).transpose(2, 0, 1).reshape(-1)
    # 1-based, as the official files; CIFAR class c stands for ImageNet class c + 1.
    return rows, [int(labels[index]) + 1 for index in chosen]


def imagenet_downsampled(root: Path, size: int = 32, per_file: int = 20, val_count: int = 30,
                         fmt: str = "pickle") -> Path:
    """train_data_batch_1..10 and val_data in ROOT, as python pickles (dicts) or .npz files."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]
    for number, name in enumerate(names):
        count = val_count if name == "val_data" else per_file
        data, labels = downsampled_arrays(count, size, first=number * per_file)
        if fmt == "npz":
            np.savez(root / f"{name}.npz", data=data, labels=np.asarray(labels))
        else:
            with open(root / name, "wb") as file:
                pickle.dump({"data": data, "labels": labels, "mean": data.mean(0)}, file, protocol=2)
    return root


# ------------------------------------------------------------ bad and odd files
def truncated_jpeg(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """A JPEG whose header is whole but whose data stops at half: it opens, and fails only when decoded."""
    buffer = io.BytesIO()
    image_of_class(0, 0, size).save(buffer, format="JPEG", quality=90)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    return path


def zero_byte(path: Path) -> Path:
    """An empty file with an image's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def not_an_image(path: Path) -> Path:
    """A text file with an image's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not an image\n")
    return path


def unreadable(path: Path) -> Path:
    """A file that cannot be opened: a link to nowhere (chmod 000 does not stop root, which CI may run as)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(path.parent / "nothing-here", path)
    return path


def odd_mode_image(path: Path, mode: str, size: tuple[int, int] = (48, 40)) -> Path:
    """A CIFAR image saved in `mode` (L, CMYK, RGBA, P, LA): JPEG for L and CMYK, PNG otherwise."""
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    image = image_of_class(1, 0, size, mode)
    if mode == "RGBA":  # a transparent corner, so the composite over white shows
        image.putpixel((0, 0), (10, 20, 30, 0))
    return write_image(path, image, fmt)
