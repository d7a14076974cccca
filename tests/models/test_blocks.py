"""models._blocks: explicit keywords (a misspelt one raises) and a swappable norm layer."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from models import ArchSpec, StageSpec, build
from models._blocks import BLOCK_TYPES, Bottleneck, make_shortcut
from models._complexity import Counter


def _spec(block: str, shortcut: str, stem: str) -> ArchSpec:
    # Two stages so the second block of the first stage and the strided first
    # block of the second both exist; 16 channels divide into 4 groups below.
    return ArchSpec(stages=(StageSpec(2, 16, 1), StageSpec(1, 32, 2)), block=block, shortcut=shortcut,
                    stem=stem, stem_width=16, bottleneck_ratio=0.5, num_classes=10)


CASES = [(block, shortcut, stem) for block in BLOCK_TYPES for shortcut in ("B", "C", "D")
         for stem in ("cifar", "deep")]


@pytest.mark.parametrize("block_type", list(BLOCK_TYPES.values()), ids=list(BLOCK_TYPES))
def test_a_misspelt_block_keyword_raises(block_type: type[nn.Module]) -> None:
    extra = {"inner": 4, "groups": 1, "stride_on": "3x3"} if block_type.is_bottleneck else {}
    block_type(8, 16, 2, "B", **extra)  # the right names build
    with pytest.raises(TypeError, match="norm_layr"):
        block_type(8, 16, 2, "B", norm_layr=nn.BatchNorm2d, **extra)
    with pytest.raises(TypeError, match="shortcutt"):
        block_type.count(Counter(), 8, 8, 16, 2, "B", shortcutt="B", **extra)


def test_a_misspelt_bottleneck_keyword_raises_rather_than_falling_back_to_a_default() -> None:
    with pytest.raises(TypeError, match="group"):
        Bottleneck(8, 16, 1, "B", inner=8, group=4)
    with pytest.raises(TypeError, match="inner"):
        Bottleneck(8, 16, 1, "B")  # the inner width has no default


@pytest.mark.parametrize(("block", "shortcut", "stem"), CASES)
def test_group_norm_replaces_every_batch_norm_under_the_same_names(block: str, shortcut: str, stem: str) -> None:
    spec = _spec(block, shortcut, stem)
    default = build(spec)
    grouped = build(spec, norm_layer=partial(nn.GroupNorm, 4))
    batch_norms = {n for n, m in default.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert batch_norms  # the case has norms to swap
    assert not [n for n, m in grouped.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert {n for n, m in grouped.named_modules() if isinstance(m, nn.GroupNorm)} == batch_norms
    assert [n for n, _ in grouped.named_parameters()] == [n for n, _ in default.named_parameters()]
    assert grouped(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_sync_batch_norm_gives_the_same_state_dict_keys_and_shapes() -> None:
    spec = _spec("bottleneck", "D", "deep")
    default = {k: v.shape for k, v in build(spec).state_dict().items()}
    synced = build(spec, norm_layer=nn.SyncBatchNorm)
    assert not [m for m in synced.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {k: v.shape for k, v in synced.state_dict().items()} == default


def test_zero_init_residual_zeroes_the_last_norm_of_any_norm_type() -> None:
    spec = _spec("bottleneck", "B", "cifar").replace(zero_init_residual=True)
    model = build(spec, norm_layer=partial(nn.GroupNorm, 4))
    assert isinstance(model.layer1[1].bn3, nn.GroupNorm) and not model.layer1[1].bn3.weight.any()
    assert model.layer1[1].bn2.weight.eq(1).all()


def test_make_shortcut_passes_the_norm_layer_to_a_projection() -> None:
    projection = make_shortcut("B", 8, 16, 2, norm_layer=partial(nn.GroupNorm, 2))
    assert isinstance(projection[1], nn.GroupNorm)
    assert make_shortcut("A", 8, 16, 2, norm_layer=partial(nn.GroupNorm, 2)) is not None
