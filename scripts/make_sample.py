"""Build the embedded CIFAR-10 sample (imagefeed/sample_data/) from the official files.

    .venv/bin/python scripts/make_sample.py [--source ../shared/data/cifar10-mini/cifar-10-batches-py]

Takes, in file order, the first 30 images of every class from each of
data_batch_1..5 (1,500 training images, 150 per class) and the first 50 of
every class from test_batch (500 test images). Writes cifar10_sample.npz
(uint8 NCHW images, int64 labels, and where each image came from) and
PROVENANCE.md, and prints the sha256 that imagefeed/_tensors.py must hold. The
output is byte-for-byte reproducible: the zip entries carry a fixed timestamp.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imagefeed._cifar import LAYOUTS, read_batch  # noqa: E402

TRAIN_PER_CLASS_PER_BATCH = 30
TEST_PER_CLASS = 50
NUM_CLASSES = 10
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "cifar10-mini" / "cifar-10-batches-py"
DEFAULT_OUT = REPO / "imagefeed" / "sample_data"
# zip's earliest representable time: fixed, so the archive's bytes depend on the data only.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices, in file order, of the first `per_class` images of every class."""
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in range(NUM_CLASSES)]
    short = [c for c, idx in enumerate(chosen) if len(idx) < per_class]
    if short:
        raise SystemExit(f"classes {short} have fewer than {per_class} images; cannot build a balanced sample")
    return np.sort(np.concatenate(chosen))


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed zip timestamps so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="a cifar-10-batches-py folder (official layout)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    layout = LAYOUTS["cifar10"]

    train_x, train_y, train_origin = [], [], []
    for number, name in enumerate(layout.train_files, start=1):
        images, labels = read_batch(args.source / name, layout.label_key, NUM_CLASSES)
        keep = first_per_class(labels, TRAIN_PER_CLASS_PER_BATCH)
        train_x.append(images[keep])
        train_y.append(labels[keep])
        train_origin.append(np.stack([np.full(len(keep), number), keep], axis=1))
    images, labels = read_batch(args.source / "test_batch", layout.label_key, NUM_CLASSES)
    test_keep = first_per_class(labels, TEST_PER_CLASS)

    arrays = {
        "train_x": np.concatenate(train_x), "train_y": np.concatenate(train_y).astype(np.int64),
        # (data_batch number 1..5, index of the image in that file)
        "train_origin": np.concatenate(train_origin).astype(np.int64),
        "test_x": images[test_keep], "test_y": labels[test_keep].astype(np.int64),
        # index of the image in test_batch
        "test_origin": test_keep.astype(np.int64),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    npz = args.out / "cifar10_sample.npz"
    write_npz(npz, arrays)

    source_sums = {name: sha256(args.source / name) for name in (*layout.files, "batches.meta")
                   if (args.source / name).is_file()}
    train_counts = np.bincount(arrays["train_y"], minlength=NUM_CLASSES)
    test_counts = np.bincount(arrays["test_y"], minlength=NUM_CLASSES)
    per_batch = {n: np.bincount(arrays["train_origin"][:, 0], minlength=6)[n] for n in range(1, 6)}
    lines = [
        "# The embedded CIFAR-10 sample",
        "",
        "`cifar10_sample.npz` is a small, real, class-balanced subset of CIFAR-10",
        "(Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009,",
        "https://www.cs.toronto.edu/~kriz/cifar.html). `imagefeed.load` uses it",
        "for `dataset: cifar10` when `root` is not set, and every result says so",
        "(`source.embedded_sample: true`). It is for smoke runs and CPU budgets, not",
        "for numbers to compare with papers.",
        "",
        "## Contents",
        "",
        "| array | dtype | shape | meaning |",
        "| --- | --- | --- | --- |",
        *(f"| `{k}` | {v.dtype} | {tuple(v.shape)} | {m} |" for (k, v), m in zip(arrays.items(), [
            "training images, channel-major (C, H, W), RGB",
            "training labels 0..9 (the official class order)",
            "(data_batch number 1..5, index in that file) of each training image",
            "test images",
            "test labels",
            "index in test_batch of each test image",
        ])),
        "",
        f"sha256 of `cifar10_sample.npz`: `{sha256(npz)}` (checked on every load).",
        "",
        "## Which images",
        "",
        f"- Training: from each of data_batch_1 … data_batch_5, in file order, the first",
        f"  {TRAIN_PER_CLASS_PER_BATCH} images of every class; kept in file order, batch 1 first.",
        f"  {len(arrays['train_y'])} images: " + ", ".join(f"{per_batch[n]} from data_batch_{n}" for n in range(1, 6)) + ".",
        f"- Test: from test_batch, in file order, the first {TEST_PER_CLASS} images of every class;",
        f"  {len(arrays['test_y'])} images.",
        "- Pixels and labels are unchanged. The official files' leading images are the",
        "  leading images of `../shared/data/cifar10-mini` (a prefix of every official",
        "  file), so the same script on the full official files gives the same sample.",
        "",
        "Class balance (classes 0..9: airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck):",
        "",
        f"- train: {train_counts.tolist()}",
        f"- test: {test_counts.tolist()}",
        "",
        "## Source",
        "",
        f"`{_shown(args.source)}` (see ../shared/data/README.md), files and sha256:",
        "",
        *(f"    {digest}  {name}" for name, digest in source_sums.items()),
        "",
        "## How it was made",
        "",
        "    .venv/bin/python scripts/make_sample.py",
        "",
        "The script reads the files with the restricted unpickler of `imagefeed/_cifar.py`",
        "and writes this file and the `.npz`; rerunning it reproduces both byte for byte.",
        "`tests/imagefeed/test_tensors.py` checks every sample image against the source.",
        "",
    ]
    (args.out / "PROVENANCE.md").write_text("\n".join(lines))
    print(f"wrote {npz} ({npz.stat().st_size / 1e6:.2f} MB)")
    print(f"sha256 {sha256(npz)}  (imagefeed/_tensors.py: SAMPLE_SHA256)")
    print(f"train per class {train_counts.tolist()}, test per class {test_counts.tolist()}")


def _shown(path: Path) -> str:
    # Record the source relative to the repository when it is beside it, not a home directory.
    try:
        return "../" + path.resolve().relative_to(REPO.parent).as_posix()
    except ValueError:
        return str(path)


if __name__ == "__main__":
    main()
