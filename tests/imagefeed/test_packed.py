"""The packed store: what goes in comes out, its fingerprint, and every damaged or foreign file refused in one line."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import imagefeed
from imagefeed import _packed
from imagefeed._folders import read_imagefolder
from imagefeed._packed import PackedImages, open_packed
from imagefeed._packing import write_packed
from space import DataSettings
from tests.imagefeed import layouts


def _folder(root: Path, size=(500, 375), per_class=4) -> imagefeed.StreamedDataset:
    layouts.imagefolder(root, classes=3, per_class=per_class, size=size)
    return read_imagefolder(SimpleNamespace(root=str(root), dataset="imagefolder"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> imagefeed.StreamedDataset:
    return _folder(tmp_path_factory.mktemp("folder"))


@pytest.fixture(scope="module")
def packed(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "folder.pack"
    write_packed(out, folder, kind="imagefolder")
    return out


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_round_trip_keeps_labels_class_names_and_images(folder, packed):
    store = open_packed(packed)
    assert (store.kind, store.class_names, store.num_classes) == ("imagefolder", folder.class_names, 3)
    for split, source in (("train", folder.train), ("test", folder.test)):
        images = PackedImages(packed, split)
        assert len(images) == len(source) and np.array_equal(images.labels, source.labels)
        for index in range(len(source)):
            original = source.read(index).resize((256, 192))
            stored = images.read(index)
            assert stored.mode == "RGB" and stored.size == (256, 192)  # longer side 500 -> max_side 256
            # Re-encoding at quality 90 after a Lanczos resize: close, not equal.
            assert np.abs(_pixels(stored) - _pixels(original)).mean() < 6


def test_raw_mode_is_exact_and_small_images_stay_raw(tmp_path):
    small = _folder(tmp_path / "small", size=(40, 30), per_class=2)
    out = tmp_path / "small.pack"
    summary = write_packed(out, small, kind="imagefolder")  # <= 64 px: raw without asking
    assert summary.raw_images == len(small.train) + len(small.test) and summary.jpeg_images == 0
    images = PackedImages(out, "train")
    for index in range(len(small.train)):
        assert np.array_equal(np.asarray(images.read(index)), np.asarray(small.train.read(index)))


def test_whole_tensor_kinds_pack_raw_and_read_back_as_tensors(tmp_path):
    sample = imagefeed.read_embedded_sample()
    out = tmp_path / "cifar.pack"
    write_packed(out, sample, kind="cifar10")
    back = _packed.read_packed(SimpleNamespace(root=str(out), dataset="cifar10"), streamed=False)
    assert np.array_equal(back.train_x.numpy(), sample.train_x.numpy())
    assert np.array_equal(back.test_y.numpy(), sample.test_y.numpy())


def test_a_packed_root_loads_in_place_of_its_folder(folder, packed):
    splits = imagefeed.load(DataSettings(dataset="imagefolder", root=str(packed), val_fraction=0.25))
    assert splits.streamed and splits.num_classes == 3
    assert splits.source["fingerprint"] == open_packed(packed).fingerprint()
    assert splits.source["packed_from_fingerprint"] == folder.source["fingerprint"]
    assert splits.source["n_train_pool"] == len(folder.train)
    # DataLoader workers get the split by pickle: the path, re-mapped there.
    images = pickle.loads(pickle.dumps(splits.train.images))
    assert images.read(0).size == (256, 192)


def test_a_packed_store_of_another_kind_is_refused(packed):
    with pytest.raises(imagefeed.DatasetError, match="a packed imagefolder store, but data.dataset is"):
        _packed.read_packed(SimpleNamespace(root=str(packed), dataset="tiny_imagenet"), streamed=True)


def test_fingerprint_is_stable_and_sensitive(folder, packed, tmp_path):
    again = write_packed(tmp_path / "again.pack", folder, kind="imagefolder")
    assert again.fingerprint == open_packed(packed).fingerprint()
    other = write_packed(tmp_path / "q80.pack", folder, kind="imagefolder", quality=80)
    assert other.fingerprint != again.fingerprint
    relabelled = imagefeed.StreamedDataset(folder.train, folder.test, 3, ("a", "b", "c"), folder.source)
    assert write_packed(tmp_path / "names.pack", relabelled, kind="imagefolder").fingerprint != again.fingerprint
    open_packed(packed).verify()
    # One flipped byte inside an image is found by verify (the stored fingerprint is not re-hashed on open).
    damaged = tmp_path / "damaged.pack"
    content = bytearray(packed.read_bytes())
    content[_packed.PREAMBLE_BYTES + 300] ^= 0xFF
    damaged.write_bytes(bytes(content))
    with pytest.raises(imagefeed.DatasetError, match="corrupt"):
        open_packed(damaged).verify()


def _refusal(path: Path) -> str:
    with pytest.raises(imagefeed.DatasetError) as caught:
        open_packed(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_truncated_foreign_and_out_of_bounds_files_are_refused_in_one_line(packed, tmp_path):
    content = packed.read_bytes()
    cut = tmp_path / "cut.pack"
    cut.write_bytes(content[:len(content) // 2])
    assert "truncated" in _refusal(cut)
    stub = tmp_path / "stub.pack"
    stub.write_bytes(content[:20])
    assert "truncated" in _refusal(stub)
    foreign = tmp_path / "foreign.pack"
    foreign.write_bytes(b"PK\x03\x04" + bytes(200))
    assert "not a packed store" in _refusal(foreign)
    newer = tmp_path / "newer.pack"
    newer.write_bytes(content[:8] + struct.pack("<I", 99) + content[12:])
    assert "format 99" in _refusal(newer)

    # An index that points past the data: the header is rewritten with a record offset beyond the file.
    store = open_packed(packed)
    at = _header(packed)["splits"]["train"]["arrays"]["offsets"]
    hostile = bytearray(content)
    hostile[at:at + 8] = struct.pack("<Q", len(content) + 10)
    evil = tmp_path / "evil.pack"
    evil.write_bytes(bytes(hostile))
    assert "outside the data region" in _refusal(evil)
    assert at >= store.data_end
    # An array the header places outside the index region.
    header = _header(packed)
    header["splits"]["test"]["arrays"]["labels"] = 2**62
    assert "outside the index region" in _refusal(_with_header(content, header, tmp_path / "array.pack"))
    header = _header(packed)
    header["class_names"] = "not a list"
    assert "class_names" in _refusal(_with_header(content, header, tmp_path / "names.pack"))


def _header(path: Path) -> dict:
    import json

    content = path.read_bytes()
    _, _, _, offset, length, _ = struct.unpack_from("<8sIIQQ32s", content)
    return json.loads(content[offset:offset + length])


def _with_header(content: bytes, header: dict, path: Path) -> Path:
    """`content` with `header` in place of its own (the preamble's offset and length updated)."""
    import json

    magic, version, reserved, offset, _, sha256 = struct.unpack_from("<8sIIQQ32s", content)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<8sIIQQ32s", magic, version, reserved, offset, len(encoded), sha256)
                     + content[struct.calcsize("<8sIIQQ32s"):offset] + encoded)
    return path


def test_a_fifo_or_folder_is_not_taken_for_a_packed_store(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert not _packed.is_packed(fifo) and not _packed.is_packed(tmp_path)
    assert "not a regular file" in _refusal(fifo)
