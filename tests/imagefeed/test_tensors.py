"""imagefeed's whole-tensor path: the CIFAR reader, its refusals, the embedded sample, splits and BatchAugment."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import imagefeed as datasets
from imagefeed import BatchAugment, DatasetError, _cifar, _tensors
from space import DataSettings

MINI_ROOT = Path(__file__).parents[2].parent / "shared" / "data" / "cifar10-mini"
MINI_FOLDER = MINI_ROOT / "cifar-10-batches-py"
CIFAR10 = _cifar.LAYOUTS["cifar10"]

needs_mini = pytest.mark.skipif(not MINI_FOLDER.is_dir(), reason=f"{MINI_FOLDER} is not there")


def _mini_pool() -> tuple[torch.Tensor, torch.Tensor]:
    train_x, train_y, _, _ = _cifar.read_official(MINI_FOLDER, CIFAR10)
    return torch.from_numpy(train_x), torch.from_numpy(train_y)


# ------------------------------------------------------------- the mini set
@needs_mini
def test_mini_set_shapes_labels_and_split():
    splits = datasets.load(DataSettings(root=str(MINI_ROOT)))
    assert len(splits.train_y) + len(splits.val_y) == 5085
    assert splits.test_x.shape == (1017, 3, 32, 32) and splits.test_x.dtype == torch.uint8
    assert splits.train_x.shape[1:] == (3, 32, 32) and splits.train_y.dtype == torch.int64
    assert splits.num_classes == 10 and splits.image_size == 32
    for labels in (splits.train_y, splits.val_y, splits.test_y):
        assert labels.min() == 0 and labels.max() == 9
    assert abs(len(splits.val_y) - 0.1 * 5085) <= 1
    assert splits.source["embedded_sample"] is False and splits.source["n_val"] == len(splits.val_y)
    assert (splits.mean, splits.std) == datasets.NORMALIZATIONS["cifar"]

    # The split is the seeded stratified one, over the images in file order.
    pool_x, pool_y = _mini_pool()
    train_index, val_index = datasets.stratified_split(pool_y, 0.1, seed=0)
    assert torch.equal(splits.train_x, pool_x[train_index]) and torch.equal(splits.val_y, pool_y[val_index])


@needs_mini
@pytest.mark.parametrize("name", CIFAR10.files)
def test_mini_set_files_hold_every_class(name):
    images, labels = _cifar.read_batch(MINI_FOLDER / name, "labels", 10)
    assert images.shape == (1017, 3, 32, 32)
    counts = np.bincount(labels, minlength=10)
    assert counts.min() >= 83 and counts.max() <= 120, counts


@needs_mini
def test_root_may_be_the_batches_folder_itself():
    outer = datasets.load(DataSettings(root=str(MINI_ROOT)))
    inner = datasets.load(DataSettings(root=str(MINI_FOLDER)))
    assert torch.equal(outer.val_x, inner.val_x) and outer.source["root"] == inner.source["root"]


def test_split_is_deterministic_disjoint_and_stratified():
    labels = torch.arange(1000) % 7
    train, val = datasets.stratified_split(labels, 0.1, seed=3)
    again_train, again_val = datasets.stratified_split(labels, 0.1, seed=3)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert len(val) == 100 and len(train) == 900
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    shares = torch.bincount(labels[val], minlength=7)
    expected = torch.bincount(labels, minlength=7) * 0.1
    assert (shares - expected).abs().max() < 1
    other_train, _ = datasets.stratified_split(labels, 0.1, seed=4)
    assert not torch.equal(train, other_train)


def test_train_limit_keeps_the_validation_set():
    full = datasets.load(DataSettings(dataset="synthetic"))
    limited = datasets.load(DataSettings(dataset="synthetic", train_limit=100))
    assert torch.equal(limited.train_x, full.train_x[:100])
    assert torch.equal(limited.val_x, full.val_x) and limited.source["n_train"] == 100


def test_load_is_cached_but_source_is_a_fresh_dict():
    settings = DataSettings(dataset="synthetic")
    first, second = datasets.load(settings), datasets.load(settings)
    assert first.train_x is second.train_x
    first.source["note"] = "changed by a caller"
    assert "note" not in datasets.load(settings).source


def test_settings_names_match_the_tables():
    # space validates names before a trial starts; each must have a loader here.
    import space._settings as settings
    assert set(settings.DATASET_NAMES) == set(datasets.DATASET_KINDS)
    assert settings.NORMALIZATIONS is datasets.NORMALIZATIONS


def test_unknown_dataset_lists_the_valid_ones():
    settings = types.SimpleNamespace(**{**DataSettings().to_dict(), "dataset": "imagenet21k"})
    with pytest.raises(ValueError, match="data.dataset: got 'imagenet21k'; allowed: cifar10, cifar100, synthetic, imagenet_downsampled"):
        datasets.load(settings)


# --------------------------------------------------- refusals and bad files
class _RunsACommand:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_unpickler_refuses_os_system_and_runs_nothing(tmp_path):
    marker = tmp_path / "executed"
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": _RunsACommand(f"touch {marker}"), b"labels": [0]}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_1: refused to load.*(posix|os)\.system"):
        _cifar.read_batch(batch, "labels", 10)
    assert not marker.exists()


@needs_mini
def test_truncated_batch_names_the_file(tmp_path):
    truncated = tmp_path / "data_batch_3"
    truncated.write_bytes((MINI_FOLDER / "data_batch_3").read_bytes()[:100_000])
    with pytest.raises(DatasetError, match=f"{truncated}: not a readable CIFAR batch file"):
        _cifar.read_batch(truncated, "labels", 10)


@pytest.mark.parametrize("batch, complaint", [
    ([1, 2, 3], "expected a dict"),
    ({b"data": np.zeros((2, 3072), np.uint8)}, "expected the keys 'data' and 'labels'"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "'data' must be a uint8 array"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 entries"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "allowed: 0 to 9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["cat", "dog"]}, "must be a list of integers"),
])
def test_malformed_batch_says_what_is_wrong(tmp_path, batch, complaint):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=complaint) as caught:
        _cifar.read_batch(path, "labels", 10)
    assert str(path) in str(caught.value)


# ------------------------------------------------- missing data and download
def _fake_batch(count: int, label_key: str = "labels", num_classes: int = 10, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                         label_key.encode(): rng.integers(0, num_classes, count).tolist()}, protocol=2)


def _write_fake_official(folder: Path, layout: _cifar.OfficialLayout, count: int = 20) -> None:
    folder.mkdir(parents=True)
    for seed, name in enumerate(layout.files):
        (folder / name).write_bytes(_fake_batch(count, layout.label_key, layout.num_classes, seed))


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _fake_cifar10_archive() -> bytes:
    return _tar_gz({f"cifar-10-batches-py/{name}": _fake_batch(20, seed=i) for i, name in enumerate(CIFAR10.files)})


def _serve(monkeypatch, content: bytes) -> list[str]:
    requested = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return io.BytesIO(content)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


def test_missing_root_names_the_path_and_the_ways_out(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as caught:
        datasets.load(DataSettings(root=str(missing)))
    message = str(caught.value)
    assert f"CIFAR-10 not found at {missing}" in message
    assert "cifar-10-python.tar.gz" in message and "--data-root" in message and "embedded" in message


def test_incomplete_folder_lists_the_missing_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_fake_official(folder, CIFAR10)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match="incomplete CIFAR-10 folder: missing data_batch_4"):
        datasets.load(DataSettings(root=str(tmp_path)))


def test_offline_download_fails_with_one_clear_message(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError) as caught:
        datasets.load(DataSettings(root=str(tmp_path), download=True))
    message = str(caught.value)
    assert f"CIFAR-10 is missing at {tmp_path}" in message
    assert "download from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz failed" in message
    assert "name resolution" in message and "--data-root" in message
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_checksum_mismatch_unpacks_nothing(tmp_path, monkeypatch):
    _serve(monkeypatch, _fake_cifar10_archive())  # a valid archive, but not the official bytes
    with pytest.raises(DatasetError, match=f"md5 is [0-9a-f]{{32}}, not the published {CIFAR10.md5}"):
        datasets.load(DataSettings(root=str(tmp_path), download=True))
    assert list(tmp_path.iterdir()) == []


def test_download_with_the_right_checksum_is_unpacked_and_read(tmp_path, monkeypatch):
    archive = _fake_cifar10_archive()
    monkeypatch.setitem(_cifar.LAYOUTS, "cifar10",
                        dataclasses.replace(CIFAR10, md5=hashlib.md5(archive).hexdigest()))
    requested = _serve(monkeypatch, archive)
    splits = datasets.load(DataSettings(root=str(tmp_path), download=True))
    assert requested == [CIFAR10.url]
    assert len(splits.train_y) + len(splits.val_y) == 100 and len(splits.test_y) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]


def test_an_archive_put_in_root_is_used_without_network(tmp_path, monkeypatch):
    archive = _fake_cifar10_archive()
    monkeypatch.setitem(_cifar.LAYOUTS, "cifar10",
                        dataclasses.replace(CIFAR10, md5=hashlib.md5(archive).hexdigest()))
    requested = _serve(monkeypatch, b"")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive)
    splits = datasets.load(DataSettings(root=str(tmp_path)))
    assert requested == [] and len(splits.test_y) == 20


def test_an_archive_escaping_its_folder_is_refused(tmp_path, monkeypatch):
    archive = _tar_gz({"../escaped": b"x", **{f"cifar-10-batches-py/{n}": b"" for n in CIFAR10.files}})
    monkeypatch.setitem(_cifar.LAYOUTS, "cifar10",
                        dataclasses.replace(CIFAR10, md5=hashlib.md5(archive).hexdigest()))
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "cifar-10-python.tar.gz").write_bytes(archive)
    with pytest.raises(DatasetError, match="cannot unpack"):
        datasets.load(DataSettings(root=str(tmp_path / "root")))
    assert not (tmp_path / "escaped").exists()


def test_cifar100_reads_fine_labels(tmp_path):
    _write_fake_official(tmp_path / "cifar-100-python", _cifar.LAYOUTS["cifar100"], count=200)
    splits = datasets.load(DataSettings(dataset="cifar100", root=str(tmp_path)))
    assert splits.num_classes == 100 and len(splits.test_y) == 200
    assert splits.train_y.max() < 100


def test_cifar100_without_root_says_so():
    with pytest.raises(DatasetError, match="CIFAR-100 has no embedded sample"):
        datasets.load(DataSettings(dataset="cifar100"))


# ------------------------------------------------------- the embedded sample
def test_embedded_sample_is_the_default_and_says_so():
    splits = datasets.load(DataSettings())
    assert splits.source["embedded_sample"] is True and splits.source["fallback_reason"]
    assert (splits.source["n_train"], splits.source["n_val"], splits.source["n_test"]) == (1350, 150, 500)
    assert hashlib.sha256(datasets.SAMPLE_PATH.read_bytes()).hexdigest() == datasets.SAMPLE_SHA256
    assert torch.bincount(splits.val_y).tolist() == [15] * 10
    assert torch.bincount(splits.test_y).tolist() == [50] * 10
    assert datasets.SAMPLE_PATH.stat().st_size <= 6_000_000


@needs_mini
def test_every_sample_image_is_the_source_image_it_claims():
    with np.load(datasets.SAMPLE_PATH, allow_pickle=False) as sample:
        arrays = {key: sample[key] for key in sample.files}
    assert np.bincount(arrays["train_y"]).tolist() == [150] * 10
    for number, name in enumerate(CIFAR10.train_files, start=1):
        images, labels = _cifar.read_batch(MINI_FOLDER / name, "labels", 10)
        mine = arrays["train_origin"][:, 0] == number
        index = arrays["train_origin"][mine, 1]
        # The documented rule: the first 30 of every class, in file order.
        expected = np.sort(np.concatenate([np.flatnonzero(labels == c)[:30] for c in range(10)]))
        assert np.array_equal(index, expected)
        assert np.array_equal(arrays["train_x"][mine], images[index])
        assert np.array_equal(arrays["train_y"][mine], labels[index])
    images, labels = _cifar.read_batch(MINI_FOLDER / "test_batch", "labels", 10)
    assert np.array_equal(arrays["test_x"], images[arrays["test_origin"]])
    assert np.array_equal(arrays["test_y"], labels[arrays["test_origin"]])


def test_corrupt_sample_is_refused(tmp_path, monkeypatch):
    damaged = bytearray(datasets.SAMPLE_PATH.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    copy = tmp_path / "cifar10_sample.npz"
    copy.write_bytes(bytes(damaged))
    monkeypatch.setattr(_tensors, "SAMPLE_PATH", copy)
    with pytest.raises(DatasetError, match=f"{copy}: sha256 is [0-9a-f]{{64}}, expected {datasets.SAMPLE_SHA256}"):
        datasets.read_embedded_sample()


# ---------------------------------------------------------------- synthetic
def test_synthetic_shapes_and_determinism():
    settings = DataSettings(dataset="synthetic", synthetic_train=300, synthetic_test=50)
    splits = datasets.load(settings)
    assert splits.train_x.shape == (270, 3, 32, 32) and splits.val_x.shape == (30, 3, 32, 32)
    assert splits.test_x.shape == (50, 3, 32, 32) and splits.train_x.dtype == torch.uint8
    assert splits.num_classes == 10 and int(splits.train_y.max()) <= 9
    again = datasets.DATASET_KINDS["synthetic"].read(settings)
    first = datasets.DATASET_KINDS["synthetic"].read(settings)
    assert torch.equal(again.train_x, first.train_x) and torch.equal(again.test_y, first.test_y)


# ------------------------------------------------------------- BatchAugment
def _matching_crops(image: torch.Tensor, output: torch.Tensor, pad: int) -> list[tuple[int, int, bool]]:
    """Every (dy, dx, flipped) for which the reference definition gives `output`."""
    padded = F.pad(image, (pad, pad, pad, pad))
    height, width = image.shape[1:]
    found = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + height, dx:dx + width]
            found += [(dy, dx, flipped) for flipped, candidate in ((False, crop), (True, crop.flip(-1)))
                      if torch.equal(candidate, output)]
    return found


def test_crop_and_flip_equal_the_per_image_reference():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    augment = BatchAugment(crop_padding=4, flip=True, mean=(0, 0, 0), std=(1, 1, 1))
    output = augment.crop_and_flip(images, torch.Generator().manual_seed(0))
    choices = []
    for image, out in zip(images, output):
        matches = _matching_crops(image, out, pad=4)
        assert len(matches) == 1, matches
        choices.append(matches[0])
    # Offsets and flips really vary across the batch.
    assert len({(dy, dx) for dy, dx, _ in choices}) > 20
    assert 10 < sum(flipped for _, _, flipped in choices) < 54


def test_augment_is_deterministic_for_a_seeded_generator():
    images = datasets.load(DataSettings(dataset="synthetic")).train_x[:32]
    augment = BatchAugment.from_settings(DataSettings())
    first = augment(images, torch.Generator().manual_seed(7))
    assert torch.equal(first, augment(images, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, augment(images, torch.Generator().manual_seed(8)))


def test_flip_only_and_no_augmentation():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    flipped = BatchAugment(crop_padding=0, flip=True, mean=(0, 0, 0), std=(1, 1, 1)).crop_and_flip(
        images, torch.Generator().manual_seed(0))
    for image, out in zip(images, flipped):
        assert torch.equal(out, image) or torch.equal(out, image.flip(-1))
    same = BatchAugment(crop_padding=0, flip=False, mean=(0, 0, 0), std=(1, 1, 1)).crop_and_flip(images)
    assert torch.equal(same, images)


@pytest.mark.parametrize("normalize", sorted(datasets.NORMALIZATIONS))
def test_normalisation_values_and_memory_format(normalize):
    mean, std = datasets.NORMALIZATIONS[normalize]
    augment = BatchAugment(mean=mean, std=std)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    images[0], images[1] = 0, 255
    mean_, std_ = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    expected = (images.double() / 255 - mean_.view(1, 3, 1, 1)) / std_.view(1, 3, 1, 1)
    output = augment.normalize_only(images)
    assert output.dtype == torch.float32 and torch.allclose(output.double(), expected, atol=1e-5)
    assert torch.allclose(output[0, :, 0, 0].double(), -mean_ / std_, atol=1e-5)
    assert torch.allclose(output[1, :, 0, 0].double(), (1 - mean_) / std_, atol=1e-5)
    last = augment.normalize_only(images, memory_format=torch.channels_last)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, output)
    seeded = augment(images, torch.Generator().manual_seed(0), memory_format=torch.channels_last)
    assert seeded.is_contiguous(memory_format=torch.channels_last)


def test_augment_refuses_float_images():
    with pytest.raises(ValueError, match=r"images: got a torch.float32 tensor of shape \(2, 3, 32, 32\)"):
        BatchAugment(mean=(0, 0, 0), std=(1, 1, 1))(torch.zeros(2, 3, 32, 32))
