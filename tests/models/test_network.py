"""models.build: every preset matches the paper/torchvision figures and behaves as its spec says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from models import ArchSpec, build, complexity, natural_image_size, preset, presets

# torchvision's published figures (params exact; "GFLOPS" are MACs) and the
# CIFAR nets of He et al. 2015, Table 6.
REFERENCE = {
    "resnet18": (11_689_512, 1.814e9),
    "resnet34": (21_797_672, 3.664e9),
    "resnet50": (25_557_032, 4.089e9),
    "resnet50_stride_1x1": (25_557_032, 3.858e9),
    "resnet101": (44_549_160, 7.801e9),
    "resnet152": (60_192_808, 11.514e9),
    "resnext50_32x4d": (25_028_904, 4.230e9),
    "resnext101_32x8d": (88_791_336, 16.414e9),
    "wide_resnet50_2": (68_883_240, 11.398e9),
    "wide_resnet101_2": (126_886_696, 22.753e9),
    "cifar_resnet20": (269_722, 40.55e6),
    "cifar_resnet32": (464_154, 68.86e6),
    "cifar_resnet44": (658_586, 97.17e6),
    "cifar_resnet56": (853_018, 125.49e6),
    "cifar_resnet110": (1_727_962, 252.89e6),
    "cifar_resnet1202": (19_421_274, 2.829e9),
    # Option A adds no parameters, so the plain nets count the same as their twins.
    "cifar_plain20": (269_722, 40.55e6),
    "cifar_plain32": (464_154, 68.86e6),
    "cifar_plain44": (658_586, 97.17e6),
    "cifar_plain56": (853_018, 125.49e6),
    "cifar_plain110": (1_727_962, 252.89e6),
}


def test_every_preset_has_a_reference_row_except_resnet50_d() -> None:
    assert set(presets()) - set(REFERENCE) == {"resnet50_d"}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_preset_matches_reference_params_and_macs(name: str) -> None:
    params, macs = REFERENCE[name]
    spec = preset(name)
    with torch.device("meta"):
        model = build(spec)
    assert sum(p.numel() for p in model.parameters()) == params
    figures = complexity(spec)
    assert figures.params == params
    assert abs(figures.macs - macs) / macs < 1e-3
    assert figures.flops == 2 * figures.macs


@pytest.mark.parametrize("name", presets())
def test_every_preset_runs_forward_without_nan(name: str) -> None:
    spec = preset(name)
    torch.manual_seed(0)
    # Training mode: at initialisation BN's running statistics are the identity,
    # and 600 un-normalised residual additions (ResNet-1202) overflow in eval mode.
    model = build(spec).train()
    # ImageNet nets at 64 px, not 224 (12x fewer MACs): every layer still sees a
    # map of 2x2 or more, and the head pools whatever size arrives. The exact
    # 224 px figures are test_preset_matches_reference_params_and_macs's.
    size = min(natural_image_size(spec), 64)
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()


def _cifar(shortcut: str, **changes: object) -> ArchSpec:
    return preset("cifar_resnet20").replace(shortcut=shortcut, **changes)


def test_shortcut_a_has_no_shortcut_parameters() -> None:
    model = build(_cifar("A"))
    assert not [n for n, _ in model.named_parameters() if "downsample" in n]
    assert sum(p.numel() for p in model.parameters()) == REFERENCE["cifar_resnet20"][0]


def test_shortcut_a_subsamples_and_zero_pads_half_before_half_after() -> None:
    block = build(_cifar("A")).layer2[0]
    x = torch.randn(2, 16, 8, 8)
    out = block.downsample(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()


def test_shortcut_b_projects_only_where_dimensions_change() -> None:
    model = build(_cifar("B"))
    projected = {n.split(".downsample")[0] for n, _ in model.named_parameters() if "downsample" in n}
    assert projected == {"layer2.0", "layer3.0"}


def test_shortcut_c_projects_in_every_block() -> None:
    model = build(_cifar("C"))
    blocks = [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    for name in blocks:
        block = model.get_submodule(name)
        assert isinstance(block.downsample[0], nn.Conv2d) and block.downsample[0].kernel_size == (1, 1)


def test_shortcut_d_average_pools_before_an_unstrided_projection() -> None:
    block = build(_cifar("D")).layer2[0]
    pool, conv, bn = block.downsample
    assert isinstance(pool, nn.AvgPool2d) and conv.stride == (1, 1) and isinstance(bn, nn.BatchNorm2d)


def test_plain_net_has_no_addition() -> None:
    """With shortcut 'none' the block output is relu(branch) exactly: no identity added."""
    block = build(_cifar("none")).layer1[0].eval()
    x = torch.randn(2, 16, 8, 8)
    branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    assert torch.allclose(block(x), torch.relu(branch))
    residual = build(_cifar("A")).layer1[0].eval()
    residual.load_state_dict(block.state_dict())
    assert torch.allclose(residual(x), torch.relu(branch + x))


def test_zero_init_makes_every_block_start_as_identity() -> None:
    model = build(_cifar("B", zero_init_residual=True)).eval()
    block = model.layer1[1]
    x = torch.rand(2, 16, 8, 8)  # non-negative, like a post-ReLU input
    assert torch.allclose(block(x), x)
    assert not build(_cifar("B")).layer1[1].bn2.weight.eq(0).any()


def test_stride_placement_in_bottlenecks() -> None:
    v15 = build(preset("resnet50")).layer2[0]
    paper = build(preset("resnet50_stride_1x1")).layer2[0]
    assert v15.conv1.stride == (1, 1) and v15.conv2.stride == (2, 2)
    assert paper.conv1.stride == (2, 2) and paper.conv2.stride == (1, 1)


def test_resnext_groups_and_inner_width() -> None:
    block = build(preset("resnext50_32x4d")).layer1[0]
    assert block.conv2.groups == 32 and block.conv2.in_channels == 128 and block.conv3.out_channels == 256


def test_preact_cifar_net_goes_from_conv_to_blocks_and_ends_in_bn() -> None:
    spec = _cifar("B", block="preact_basic")
    model = build(spec)
    assert isinstance(model.bn1, nn.Identity)
    assert isinstance(model.final_bn, nn.BatchNorm2d)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_init_follows_torchvision() -> None:
    torch.manual_seed(0)
    conv = build(preset("resnet18")).layer3[0].conv2
    fan_out = conv.out_channels * 9
    expected_std = (2.0 / fan_out) ** 0.5
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.02


def test_build_reads_no_global_state() -> None:
    spec = preset("cifar_resnet20")
    torch.manual_seed(1)
    a = build(spec).state_dict()
    torch.manual_seed(1)
    b = build(spec).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert build(spec).spec is spec


def test_build_rejects_a_non_spec() -> None:
    with pytest.raises(TypeError, match="ArchSpec"):
        build({"stages": []})  # type: ignore[arg-type]


GOLDEN = Path(__file__).parent / "golden" / "torchvision_state_dicts.json"


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                  "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
                                  "wide_resnet101_2"])
def test_state_dict_names_and_shapes_equal_torchvision(name: str) -> None:
    """The golden file was written by torchvision itself (see golden/README.md)."""
    golden = json.loads(GOLDEN.read_text())["models"][name]
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in build(preset(name)).state_dict().items()}
    # Same names, same shapes, same order (the order matters to shape-matching loaders).
    assert list(ours.items()) == list(golden.items())
