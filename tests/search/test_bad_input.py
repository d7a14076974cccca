"""Bad input to the commands that train: each is one line on stderr and exit status 2, before any work.

Before: `--device bogus` and `cuda` on a CPU-only torch, an unreadable data folder
and a training set without images gave tracebacks; a spec file that is not
UTF-8 gave a message without the file name; `models export --out` to a bad place
exited 1; the dry run took `--samples -3` and `--max-concurrent -4`; a network
that needs more memory than the machine has was trained until it ran out.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import imagefeed
import models.__main__ as models_cli
from commands import SMOKE, call_main
from models import _memory
from search import retrain, run, train
from space import DataSettings

CPU_ONLY = not torch.cuda.is_available()


# ------------------------------------------------------------------ devices
@pytest.mark.parametrize("device", ["bogus", "cuda:x", "gpu0"])
def test_a_device_that_is_not_a_name_is_one_line(capsys, device):
    line = call_main(train.main, ["cifar_resnet20", "--epochs", "1", "--device", device], capsys).bad_input_line()
    assert line.startswith(f"error: --device: got {device!r}, which is not a device name; allowed: cpu")


@pytest.mark.skipif(not CPU_ONLY, reason="needs a torch without a CUDA device")
def test_cuda_without_cuda_is_one_line(capsys):
    line = call_main(train.main, ["cifar_resnet20", "--epochs", "1", "--device", "cuda"], capsys).bad_input_line()
    assert line.startswith("error: --device: got 'cuda', which this machine cannot train on; allowed: cpu (")


def test_retrain_s_old_device_flag_says_what_replaced_it(capsys, tmp_path):
    line = call_main(retrain.main, [str(tmp_path), "--top", "1", "--seeds", "1", "--device", "cuda"],
                     capsys).bad_input_line()
    assert line.startswith("error: --device: got 'cuda'; retrain runs through Ray") and "search.resources.gpus" in line


# search.run and search.retrain place trials through Ray: a trial asks for a GPU share or CPUs, and a local
# Ray that could never give them would wait forever.
@pytest.mark.skipif(not CPU_ONLY, reason="needs a machine without a CUDA device")
@pytest.mark.parametrize("field, value, unit", [("gpus", "1", "0 CUDA GPUs"), ("cpus", "4096", "CPU cores")])
def test_a_trial_that_this_machine_cannot_hold_is_one_line_before_anything_is_written(capsys, tmp_path, field, value,
                                                                                     unit):
    out = tmp_path / "run"
    line = call_main(run.main, [str(SMOKE), "--out", str(out), "--set", f"search.resources.{field}={value}"],
                     capsys).bad_input_line()
    assert line.startswith(f"error: search.resources.{field}: got {value} per trial, but this machine has ")
    assert unit in line and "--address" in line
    assert not out.exists()


@pytest.mark.skipif(not CPU_ONLY, reason="needs a machine without a CUDA device")
def test_a_dry_run_notes_a_trial_this_machine_cannot_hold_without_refusing_it(capsys):
    """A dry run on a laptop may be planning a GPU cluster's run: a note, exit 0."""
    result = call_main(run.main, [str(SMOKE), "--dry-run", "--set", "search.resources.gpus=0.25"], capsys)
    assert result.returncode == 0, result.stderr
    assert "note: a run here without --address would be refused: search.resources.gpus: got 0.25 per trial" \
        in result.stdout


def test_pick_device_is_the_one_check():
    assert train.pick_device("cpu") == torch.device("cpu")
    assert train.pick_device(None).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match=r"^device: got 'bogus', which is not a device name; allowed: cpu"):
        train.pick_device("bogus")


# --------------------------------------------------------------------- data
def _official_batch(count: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    # protocol 3: arrays through numpy's _reconstruct, as in the official files, and an empty array's
    # bytes without the builtins call of protocol 2, which the restricted reader refuses.
    return pickle.dumps({b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
                         b"labels": rng.integers(0, 10, count, dtype=np.int64)}, protocol=3)


def _cifar10_folder(root: Path, train_images: int) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for index in range(1, 6):
        (folder / f"data_batch_{index}").write_bytes(_official_batch(train_images, index))
    (folder / "test_batch").write_bytes(_official_batch(20))
    return root


@pytest.fixture
def unreadable(tmp_path, monkeypatch):
    """A data folder with mode 000 (and, as root, whom modes do not stop, os.access saying so)."""
    root = _cifar10_folder(tmp_path / "data", 20)
    root.chmod(0)
    if os.geteuid() == 0:
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == root
                            else real_access(path, mode, **kw))
    yield root
    root.chmod(0o755)


def test_an_unreadable_data_folder_is_a_dataset_error(unreadable):
    with pytest.raises(imagefeed.DatasetError, match=rf"^{unreadable}: the data folder cannot be read \(permission "
                                                    r"denied\); make it readable"):
        imagefeed.load(DataSettings(root=str(unreadable)))


def test_an_unreadable_data_folder_exits_2(capsys, unreadable):
    line = call_main(train.main, ["cifar_resnet20", "--epochs", "1", "--data-root", str(unreadable)],
                     capsys).bad_input_line()
    assert line.startswith(f"error: {unreadable}: the data folder cannot be read")


def test_a_training_set_without_images_is_a_dataset_error(tmp_path):
    root = _cifar10_folder(tmp_path / "data", 0)
    with pytest.raises(imagefeed.DatasetError, match=r"the cifar10 training set holds no images"):
        imagefeed.load(DataSettings(root=str(root)))


def test_a_training_set_without_images_exits_2_in_search_run(capsys, tmp_path):
    root = _cifar10_folder(tmp_path / "data", 0)
    out = tmp_path / "run"
    result = call_main(run.main, [str(SMOKE), "--out", str(out), "--set", "data.dataset=cifar10",
                                  "--set", f"data.root={root}"], capsys)
    assert "the cifar10 training set holds no images" in result.bad_input_line()
    assert not out.exists()  # refused before the run folder is made (and before Ray starts)


def test_too_few_images_to_hold_any_out_is_a_dataset_error(tmp_path):
    root = _cifar10_folder(tmp_path / "data", 0)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(_official_batch(1))
    with pytest.raises(imagefeed.DatasetError, match=r"leaves no training image of 1"):
        imagefeed.load(DataSettings(root=str(root), val_fraction=0.9))


# --------------------------------------------------------------- spec files
def test_a_spec_file_that_is_not_utf8_is_named(capsys, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"stages:\n  - {depth: 1, width: 8}\nstem: \xff\xfe\n")
    expected = f"error: {path}: not a spec file: not UTF-8 text (byte 39: b'\\xff'); a spec is YAML or JSON text"
    assert call_main(train.main, [str(path), "--epochs", "1"], capsys).bad_input_line() == expected
    assert call_main(models_cli.main, ["describe", str(path)], capsys).bad_input_line() == expected
    import models

    with pytest.raises(models.CheckpointError, match=rf"^{path}: not a spec file: not UTF-8 text"):
        models.load_spec(path)


# ------------------------------------------------------------------- export
@pytest.mark.parametrize("out, message", [
    ("{tmp}", "is a folder; give a file name, e.g. {tmp}/model.torchscript.pt"),
    ("{tmp}/a_file/model.pt", "{tmp}/a_file is a file, not a folder"),
    ("/proc/resnas_model.pt", "cannot be written"),
])
def test_export_to_a_bad_place_exits_2(capsys, tmp_path, out, message):
    (tmp_path / "a_file").write_text("x")
    out, message = out.format(tmp=tmp_path), message.format(tmp=tmp_path)
    line = call_main(models_cli.main, ["export", "cifar_resnet20", "--format", "torchscript", "--out", out],
                     capsys).bad_input_line()
    assert line.startswith(f"error: --out {out}: ") and message in line


# ------------------------------------------------------------------- memory
@pytest.fixture
def small_machine(monkeypatch):
    monkeypatch.setattr(_memory, "host_memory", lambda: 1 * 2**30)


def test_search_train_refuses_a_network_that_does_not_fit(capsys, small_machine):
    line = call_main(train.main, ["cifar_resnet20", "--epochs", "1", "--batch-size", "4096", "--device", "cpu"],
                     capsys).bad_input_line()
    assert line.startswith("error: cifar_resnet20: needs about 6.")
    assert line.endswith("to train, more than the 1 GiB (this machine's 1 GiB) it may use; "
                         "allowed: a smaller --batch-size or a smaller network")


def test_models_export_refuses_a_network_that_does_not_fit(capsys, small_machine, tmp_path):
    path = tmp_path / "wide.yaml"
    path.write_text("stages:\n  - {depth: 4, width: 4096}\nstem: cifar\nnum_classes: 10\n")
    line = call_main(models_cli.main, ["export", str(path), "--format", "torchscript", "--out",
                                       str(tmp_path / "wide.pt")], capsys).bad_input_line()
    assert line.startswith(f"error: {path}: exporting it needs about ") and "to run, more than the 1 GiB" in line
    assert not (tmp_path / "wide.pt").exists()


# ------------------------------------------------------------------- dry run
@pytest.mark.parametrize("flags, message", [
    (["--samples", "-3"], "error: --samples: got -3; allowed: an integer in [0, 1000]"),
    (["--max-concurrent", "-4"], "error: --max-concurrent: got -4; allowed: an integer >= 1"),
])
def test_the_dry_run_refuses_negative_counts(capsys, flags, message):
    assert call_main(run.main, [str(SMOKE), "--dry-run", *flags], capsys).bad_input_line() == message
