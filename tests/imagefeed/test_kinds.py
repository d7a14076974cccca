"""imagefeed's dataset kinds on fixtures in each official layout: indexes, labels, splits, refusals, bad images."""

from __future__ import annotations

import logging
import os
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import imagefeed
from imagefeed import BadImage, DatasetError
from space import DataSettings, StudyError, study_from_dict
from tests.imagefeed import layouts

pytestmark = pytest.mark.skipif(not layouts.MINI_FOLDER.is_dir(), reason=f"{layouts.MINI_FOLDER} is not there")


def _read(dataset: str, root: Path, image_size: int | None = None):
    """The kind's reader called directly: no cache, so every call indexes the folder again."""
    kind = imagefeed.DATASET_KINDS[dataset]
    return kind.read(types.SimpleNamespace(dataset=dataset, root=str(root), download=False,
                                           image_size=image_size or kind.image_size))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return layouts.imagefolder(tmp_path_factory.mktemp("imagefolder"), classes=3, per_class=4, val_per_class=2,
                               size=(200, 150))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return layouts.tiny_imagenet(tmp_path_factory.mktemp("tiny") / "tiny-imagenet-200", per_class=2)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    return layouts.imagenet(tmp_path_factory.mktemp("imagenet"), size=(16, 12))


# ------------------------------------------------------------------ the kinds
def test_imagefolder_index_labels_and_splits(folder):
    splits = imagefeed.load(DataSettings(dataset="imagefolder", root=str(folder), val_fraction=0.25))
    assert splits.streamed and splits.num_classes == 3 and splits.image_size == 224 and splits.eval_resize == 256
    assert (splits.mean, splits.std) == imagefeed.NORMALIZATIONS["imagenet"]
    source = splits.source
    assert (source["n_train_pool"], source["n_train"], source["n_val"], source["n_test"]) == (12, 9, 3, 6)
    assert source["num_classes"] == 3 and source["n_class_names"] == 3 and source["skipped_images"] == 0
    # The shipped val/ is the test set; the validation split comes out of train/, one image per class.
    test = splits.test.images
    assert all(test.paths[i].startswith("val" + os.sep) for i in splits.test.indices)
    assert all(splits.train.images.paths[i].startswith("train" + os.sep) for i in splits.val.indices)
    assert sorted(splits.val.labels.tolist()) == [0, 1, 2]
    # Classes in name order, as torchvision's ImageFolder: airplane, automobile, bird.
    assert imagefeed.class_names(DataSettings(dataset="imagefolder", root=str(folder))) == \
        ("airplane", "automobile", "bird")
    for i in splits.test.indices:
        assert Path(test.paths[i]).parent.name == layouts.CIFAR10_CLASSES[test.labels[i]]
    image = test.read(0)
    assert image.mode == "RGB" and image.size == (200, 150)


def test_read_drafts_a_jpeg_down_but_not_below_the_target(folder):
    images = _read("imagefolder", folder).train
    image = images.read(0, target_side=60)  # 200x150 -> 100x75 (1/2); 1/4 would make the short side 38
    assert image.size == (100, 75)


def test_png_and_jpeg_of_any_size_mix(tmp_path):
    root = layouts.imagefolder(tmp_path, classes=2, per_class=2, size=(37, 53), fmt="PNG")
    layouts.write_image(root / "train" / "airplane" / "big.jpg", layouts.image_of_class(0, 5, (300, 200)))
    dataset = _read("imagefolder", root)
    assert len(dataset.train) == 5 and {dataset.train.read(i).size for i in range(5)} == {(37, 53), (300, 200)}


def test_tiny_imagenet_official_layout(tiny):
    splits = imagefeed.load(DataSettings(dataset="tiny_imagenet", root=str(tiny.parent)))  # the folder above
    assert splits.num_classes == 200 and splits.image_size == 64 and splits.eval_resize == 73
    assert splits.source["n_train_pool"] == 400 and splits.source["n_test"] == 200
    names = imagefeed.class_names(DataSettings(dataset="tiny_imagenet", root=str(tiny)))
    assert names[0] == "name of class 0, synonym 0" and names[199] == "name of class 199, synonym 199"
    # val image k is of class k (one per class), by val_annotations.txt, and train/<wnid>/images/ by wnids.txt.
    test = splits.test.images
    assert test.labels.tolist() == [int(Path(path).stem.split("_")[1]) for path in test.paths]
    train = splits.train.images
    assert all(train.paths[i].split(os.sep)[1] == layouts.wnid(train.labels[i]) for i in range(len(train)))
    assert test.read(0).size == (64, 64)


def test_imagenet_needs_a_thousand_wnid_classes(imagenet, tmp_path):
    splits = imagefeed.load(DataSettings(dataset="imagenet", root=str(imagenet)))
    assert splits.num_classes == 1000 and splits.source["n_test"] == 1000 and splits.image_size == 224
    subset = layouts.imagenet(tmp_path / "subset", classes=3)
    with pytest.raises(DatasetError, match=r"train: 3 class folders; expected .*use data.dataset: imagefolder"):
        _read("imagenet", subset)


def test_imagenet_flat_val_says_how_to_lay_it_out(tmp_path):
    root = tmp_path / "flat"
    layouts.imagenet(root, classes=2, flat_val=True, size=(8, 8))
    with pytest.raises(DatasetError, match=r"val: holds 2 images but no class folders; .*"
                                           r"ILSVRC2012_validation_ground_truth\.txt.*meta\.mat.*wnid"):
        _read("imagenet", root)
    with pytest.raises(DatasetError, match=r"val: holds 2 images but no class folders; .*put each held-out image"):
        _read("imagefolder", root)


@pytest.mark.parametrize("fmt", ["pickle", "npz"])
def test_imagenet_downsampled_reads_planes_and_one_based_labels(tmp_path, fmt):
    root = layouts.imagenet_downsampled(tmp_path, size=32, per_file=10, val_count=20, fmt=fmt)
    splits = imagefeed.load(DataSettings(dataset="imagenet_downsampled", root=str(root)))
    assert not splits.streamed and splits.num_classes == 1000 and splits.image_size == 32
    assert splits.source["n_train_pool"] == 100 and splits.source["n_test"] == 20
    rows, labels = layouts.downsampled_arrays(20, 32, first=100)  # val_data is written 11th
    assert torch.equal(splits.test_x, torch.from_numpy(rows.reshape(-1, 3, 32, 32)))
    assert splits.test_y.tolist() == [label - 1 for label in labels]
    cifar, cifar_labels = layouts.cifar_images()
    assert np.array_equal(splits.test_x[0].permute(1, 2, 0).numpy(), cifar[100])
    assert splits.test_y[0] == cifar_labels[100]


def test_imagenet_downsampled_size_must_match_the_files(tmp_path):
    root = layouts.imagenet_downsampled(tmp_path, size=16, per_file=2, val_count=2)
    with pytest.raises(DatasetError, match=r"rows of 768 values, but data.image_size 32 needs 3072; the file holds "
                                           r"16 px images: set data.image_size: 16"):
        _read("imagenet_downsampled", root)
    assert _read("imagenet_downsampled", root, image_size=16).train_x.shape == (20, 3, 16, 16)
    (root / "val_data").unlink()
    with pytest.raises(DatasetError, match=r"incomplete downsampled ImageNet: missing val_data"):
        _read("imagenet_downsampled", root, image_size=16)


# ------------------------------------------------------------------ refusals
def test_missing_or_partial_layouts_are_refused(tmp_path, folder):
    with pytest.raises(DatasetError, match=rf"{tmp_path / 'absent'}: not a folder; expected ROOT/train/<class>"):
        _read("imagefolder", tmp_path / "absent")
    (tmp_path / "only_val" / "val" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"only_val: no train/ folder \(found val/\); expected ROOT/train/<class>"):
        _read("imagefolder", tmp_path / "only_val")
    loose = tmp_path / "loose"
    layouts.write_image(loose / "train" / "a.jpg", layouts.image_of_class(0, 0))
    (loose / "val").mkdir()
    with pytest.raises(DatasetError, match=r"train: found 1 images but no class folders; expected"):
        _read("imagefolder", loose)
    with pytest.raises(DatasetError, match=r"data.root: got None; an image folder has no embedded sample"):
        imagefeed.DATASET_KINDS["imagefolder"].read(types.SimpleNamespace(root=None))


def test_an_empty_class_or_one_of_bad_files_is_refused(tmp_path):
    root = layouts.imagefolder(tmp_path, classes=2, per_class=2, val_per_class=1, size=(16, 16))
    (root / "train" / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"train/empty: no readable image \(no image files\); every class needs"):
        _read("imagefolder", root)
    layouts.zero_byte(root / "train" / "empty" / "a.jpg")
    with pytest.raises(DatasetError, match=r"train/empty: no readable image \(1 unreadable, e.g. train/empty/a.jpg\)"):
        _read("imagefolder", root)


def test_val_class_not_in_train_is_refused(tmp_path):
    root = layouts.imagefolder(tmp_path, classes=2, per_class=1, val_per_class=1, size=(16, 16))
    layouts.write_image(root / "val" / "zebra" / "z.jpg", layouts.image_of_class(0, 0))
    with pytest.raises(DatasetError, match=r"val: class folders zebra are not in train/"):
        _read("imagefolder", root)


def test_tiny_imagenet_partial_layout_is_refused(tmp_path):
    root = layouts.tiny_imagenet(tmp_path / "t", classes=200, per_class=1, val_per_class=1, size=(8, 8))
    for image in (root / "val" / "images").iterdir():
        image.unlink()
    (root / "val" / "images").rmdir()
    with pytest.raises(DatasetError, match=r"val/images: missing; expected ROOT \(tiny-imagenet-200/\) with wnids"):
        _read("tiny_imagenet", root)
    (root / "wnids.txt").write_text("n00000001\n")
    with pytest.raises(DatasetError, match=r"wnids.txt: lists 1 distinct classes; Tiny-ImageNet-200 has 200"):
        _read("tiny_imagenet", root)


def test_a_split_with_no_image_is_refused(tmp_path):
    # Every image in train/ is skipped: the class check refuses it before any trial.
    root = tmp_path / "r"
    layouts.not_an_image(root / "train" / "a" / "x.jpg")
    layouts.write_image(root / "val" / "a" / "y.jpg", layouts.image_of_class(0, 0))
    with pytest.raises(DatasetError, match=r"train/a: no readable image"):
        _read("imagefolder", root)


# ---------------------------------------------------------------- bad images
def test_bad_images_are_skipped_named_and_counted(tmp_path, caplog):
    root = layouts.imagefolder(tmp_path, classes=2, per_class=2, val_per_class=1, size=(32, 24))
    layouts.zero_byte(root / "train" / "airplane" / "empty.jpg")
    layouts.not_an_image(root / "train" / "airplane" / "notes.png")
    layouts.unreadable(root / "val" / "automobile" / "gone.jpg")
    truncated = layouts.truncated_jpeg(root / "train" / "automobile" / "half.jpg")
    (root / "train" / "airplane" / "README.txt").write_text("not an image by its name: passed over\n")
    with caplog.at_level(logging.WARNING, logger="imagefeed"):
        dataset = _read("imagefolder", root)
    skipped = dataset.source["skipped_examples"]
    assert dataset.source["skipped_images"] == 3 and sorted(skipped) == sorted([
        os.path.join("train", "airplane", "empty.jpg"), os.path.join("train", "airplane", "notes.png"),
        os.path.join("val", "automobile", "gone.jpg")])
    for name in ("empty.jpg", "notes.png", "gone.jpg"):
        assert any(name in record.getMessage() and "skipped" in record.getMessage() for record in caplog.records)
    assert "README" not in caplog.text
    # The truncated JPEG's header is whole: it is indexed, and reading it raises BadImage for the loader to skip.
    index = dataset.train.paths.index(os.path.join("train", "automobile", "half.jpg"))
    with pytest.raises(BadImage, match=rf"{truncated}: skipped, not a readable image \(OSError: image file is trunc"):
        dataset.train.read(index)
    assert len(dataset.train) == 5 and len(dataset.test) == 2


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "LA"])
def test_every_image_mode_is_read_as_rgb(tmp_path, mode):
    root = layouts.imagefolder(tmp_path, classes=1, per_class=1, val_per_class=1, size=(16, 16))
    layouts.odd_mode_image(root / "train" / "airplane" / f"odd_{mode}.img.png", mode)
    dataset = _read("imagefolder", root)
    index = next(i for i, p in enumerate(dataset.train.paths) if "odd_" in p)
    image = dataset.train.read(index)
    assert image.mode == "RGB" and image.size == (48, 40)
    if mode == "RGBA":  # the transparent pixel composited over white
        assert image.getpixel((0, 0)) == (255, 255, 255)
    if mode in ("L", "LA"):
        red, green, blue = image.getpixel((5, 5))
        assert red == green == blue


# --------------------------------------------------------------- fingerprint
def test_fingerprint_changes_with_the_files_and_only_then(tmp_path):
    root = layouts.imagefolder(tmp_path, classes=2, per_class=2, val_per_class=1, size=(16, 16))
    first = _read("imagefolder", root).source["fingerprint"]
    assert _read("imagefolder", root).source["fingerprint"] == first  # indexed again, nothing changed
    image = root / "train" / "airplane" / "airplane_0.JPEG"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = _read("imagefolder", root).source["fingerprint"]
    assert touched != first
    layouts.write_image(root / "val" / "airplane" / "new.jpg", layouts.image_of_class(0, 9, (16, 16)))
    added = _read("imagefolder", root).source["fingerprint"]
    assert added not in (first, touched)
    dataset = _read("imagefolder", root)
    assert dataset.train.fingerprint() == dataset.test.fingerprint() == added


def test_tiny_imagenet_fingerprint_covers_the_annotations(tmp_path):
    root = layouts.tiny_imagenet(tmp_path / "t", per_class=1, val_per_class=1, size=(8, 8))
    first = _read("tiny_imagenet", root).source["fingerprint"]
    annotations = root / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines(keepends=True)
    annotations.write_text("".join(lines[1:] + lines[:1]))  # same size, same content in another order
    os.utime(annotations, ns=(0, annotations.stat().st_mtime_ns + 5_000_000_000))
    assert _read("tiny_imagenet", root).source["fingerprint"] != first


# ------------------------------------------------------------------ settings
@pytest.mark.parametrize(("dataset", "size", "normalize"), [
    ("cifar10", 32, "cifar"), ("synthetic", 32, "cifar"), ("imagenet_downsampled", 32, "imagenet"),
    ("tiny_imagenet", 64, "imagenet"), ("imagefolder", 224, "imagenet"), ("imagenet", 224, "imagenet")])
def test_settings_default_to_the_kind(dataset, size, normalize):
    data = DataSettings(dataset=dataset)
    assert (data.image_size, data.normalize) == (size, normalize)
    assert DataSettings.from_dict(data.to_dict()) == data


def test_a_whole_tensor_kind_keeps_its_stored_size():
    with pytest.raises(ValueError, match=r"image_size: got 64; allowed: one of 32 \(CIFAR-10 is stored at that size"):
        DataSettings(image_size=64)
    assert DataSettings(dataset="imagenet_downsampled", image_size=64).image_size == 64
    assert DataSettings(dataset="imagefolder", image_size=160).image_size == 160
    assert imagefeed.eval_resize(224) == 256 and imagefeed.eval_resize(64) == 73


def test_an_imagefolder_study_must_state_its_class_count():
    study = {"name": "t", "question": "q", "data": {"dataset": "imagefolder", "root": "/data/imagenette"},
             "space": {"base": "resnet18"}}
    with pytest.raises(StudyError, match=r"space.num_classes: missing \(dataset imagefolder has as many classes"):
        study_from_dict(study)
    study["space"]["num_classes"] = 10
    loaded = study_from_dict(study)
    assert loaded.search_space.arch["num_classes"] == 10 and loaded.search_space.image_size == 224
    study["data"]["image_size"] = 128
    assert study_from_dict(study).search_space.image_size == 128
