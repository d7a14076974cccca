"""The trainer's GPU code paths, bf16 autocast and channels_last, run every day on the CPU (torch has both there).

On CUDA `train.amp: auto` autocasts to bf16 and `train.channels_last` feeds
the convolutions NHWC tensors; on the CPU `auto` stays fp32, so these paths
would otherwise run first on a GPU machine. Here they run on the CPU through
the explicit settings `amp: bf16` and `channels_last: true`, and the same
tests run on CUDA where there is one (marked gpu; bench/gpu_check.sh).

Tolerances, from the same two epochs (4 steps at lr 0.1) of a tiny ResNet on
real CIFAR-10 images (the embedded sample), against fp32 in the contiguous
layout; measured on the CPU: bf16 moved the training loss by 2.6e-4,
channels_last by 1.6e-5.
- bf16 autocast: the training loss within 0.01 of fp32's. bf16 keeps 8
  significant bits (a relative rounding of 2^-9 = 0.2% per operation; fp32's
  master weights and the loss in fp32 keep it from piling up over 4 steps),
  so 0.01 (0.4% of a loss of about 2.3) is about 40x what was measured and
  far below a broken cast (a loss of NaN, or one that stops falling).
- channels_last: the same fp32 arithmetic summed in another order, so the
  loss agrees to 1e-3 (about 60x the measured gap, which grows with
  training), and the accuracies to within one image.
"""

from __future__ import annotations


import pytest
import torch

import imagefeed
from models import ArchSpec, StageSpec, build
from search.train import _autocast, fit, uses_bf16
from space import TrainSettings

from cifar_sample import DATA, exact_fp32, splits  # noqa: F401 (the fixtures)

TINY = ArchSpec(stages=(StageSpec(1, 8, 1), StageSpec(1, 16, 2)), stem="cifar", stem_width=8, shortcut="B",
                num_classes=10)
FP32 = TrainSettings(epochs=2, batch_size=64, lr=0.1, schedule="cosine", amp="off", channels_last=False)
BF16_LOSS_TOLERANCE = 0.01
CHANNELS_LAST_LOSS_TOLERANCE = 1e-3

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _trained(splits: imagefeed.DatasetSplits, device: str, **changes) -> tuple[list[dict], dict]:
    curve: list[dict] = []
    result = fit(TINY, FP32.replace(**changes), DATA, report=curve.append, splits=splits, device=device)
    assert result["status"] == "complete", result
    return curve, result


_FP32_RUNS: dict[str, tuple[list[dict], dict]] = {}


def _fp32(splits: imagefeed.DatasetSplits, device: str) -> tuple[list[dict], dict]:
    """The fp32, contiguous run both comparisons measure against, trained once per device."""
    if device not in _FP32_RUNS:
        _FP32_RUNS[device] = _trained(splits, device)
    return _FP32_RUNS[device]


def test_bf16_is_explicit_on_the_cpu_and_automatic_on_cuda() -> None:
    assert not uses_bf16(torch.device("cpu"), "auto"), "auto must never turn bf16 on silently on the CPU"
    assert uses_bf16(torch.device("cpu"), "bf16") and uses_bf16(torch.device("cuda"), "auto")
    assert not uses_bf16(torch.device("cuda"), "off")


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_runs_the_network_in_bf16(device: str) -> None:
    model = build(TINY).to(device)
    x = torch.randn(4, 3, 32, 32, device=device)
    with _autocast(torch.device(device), "bf16"):
        assert model(x).dtype == torch.bfloat16
    with _autocast(torch.device(device), "off"):
        assert model(x).dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_batches_reach_the_network_in_nhwc(device: str, splits) -> None:
    augment = imagefeed.BatchAugment(4, True, mean=splits.mean, std=splits.std)
    images = splits.train_x[:8].to(device)
    batch = augment(images, torch.Generator(device=device).manual_seed(0), memory_format=torch.channels_last)
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_training_follows_fp32_within_tolerance(device: str, splits) -> None:
    fp32_curve, _ = _fp32(splits, device)
    bf16_curve, bf16 = _trained(splits, device, amp="bf16")
    fp32_losses = [e["train_loss"] for e in fp32_curve]
    bf16_losses = [e["train_loss"] for e in bf16_curve]
    assert bf16_losses != fp32_losses, "bf16 gave fp32's losses bit for bit: the autocast did not run"
    assert bf16_losses == pytest.approx(fp32_losses, abs=BF16_LOSS_TOLERANCE)
    assert bf16_losses[-1] < bf16_losses[0], "training in bf16 did not lower the loss"
    assert 0 <= bf16["test_acc"] <= 1


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_training_follows_contiguous_within_tolerance(device: str, splits) -> None:
    contiguous_curve, contiguous = _fp32(splits, device)
    nhwc_curve, nhwc = _trained(splits, device, channels_last=True)
    assert [e["train_loss"] for e in nhwc_curve] == pytest.approx(
        [e["train_loss"] for e in contiguous_curve], abs=CHANNELS_LAST_LOSS_TOLERANCE)
    one_image = 1 / len(splits.val_x), 1 / len(splits.test_x)
    assert [e["val_acc"] for e in nhwc_curve] == pytest.approx(
        [e["val_acc"] for e in contiguous_curve], abs=one_image[0] * 1.01)
    assert nhwc["test_acc"] == pytest.approx(contiguous["test_acc"], abs=one_image[1] * 1.01)
