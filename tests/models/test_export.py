"""models export: TorchScript, torch.export and ONNX files that reload, carry their spec and match eager."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import models
from commands import CliResult, call_main, run_module
from models import EXPORT_FORMATS, ExportError, export_model, load_export, natural_image_size, preset, presets
from models.__main__ import main as models_cli

# TorchScript for every CIFAR preset but ResNet-1202 (its untrained outputs
# overflow in eval mode, see test_network); torch.export, which takes seconds
# per model on 2 cores, for one net per family. ImageNet nets at 64x64, for time.
# Each preset once per format: ResNet-20's round trips are the CLI tests' below
# (a checkpoint of it, in both formats).
CIFAR_PRESETS = [name for name in presets()
                 if name.startswith("cifar_") and name not in ("cifar_resnet1202", "cifar_resnet20")]
IMAGENET_PRESETS = {"resnet18": 64, "resnext50_32x4d": 64}
PRESET_CASES = ([(name, "torchscript") for name in CIFAR_PRESETS + list(IMAGENET_PRESETS)]
                + [(name, "exported") for name in ("cifar_plain20", "resnet18")])
TORCH_FORMATS = ["torchscript", "exported"]
HAS_ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript"))


def _round_trip(model: torch.nn.Module, path: Path, export_format: str, image_size: int | None = None) -> None:
    check = export_model(model, path, export_format, image_size=image_size)
    assert check.path == path and path.is_file()
    assert check.max_abs_diff <= check.tolerance
    exported = load_export(path)
    assert exported.spec == model.spec
    assert exported.info["spec_key"] == model.spec.key() and exported.info["format"] == export_format
    # Any batch size, not only the traced one.
    size = image_size or natural_image_size(model.spec)
    x = torch.randn(5, model.spec.in_channels, size, size)
    with torch.no_grad():
        torch.testing.assert_close(exported.run(x), model.eval()(x), atol=check.tolerance, rtol=1e-5)


@pytest.mark.parametrize("name, export_format", PRESET_CASES)
def test_preset_round_trip(name: str, export_format: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = models.build(preset(name))
    _round_trip(model, tmp_path / f"{name}{EXPORT_FORMATS[export_format][0]}", export_format,
                IMAGENET_PRESETS.get(name))


@pytest.mark.parametrize("export_format", TORCH_FORMATS)
@pytest.mark.parametrize("index", range(3))
def test_sampled_spec_round_trip(index: int, export_format: str, sampled_specs: list[models.ArchSpec],
                                 tmp_path: Path) -> None:
    spec = sampled_specs[index]
    torch.manual_seed(index)
    model = models.build(spec)
    _round_trip(model, tmp_path / f"spec{index}{EXPORT_FORMATS[export_format][0]}", export_format,
                image_size=32 if spec.stem == "cifar" else 64)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxscript are not installed")
def test_onnx_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    _round_trip(models.build(preset("cifar_resnet20")), tmp_path / "cifar_resnet20.onnx", "onnx")


def test_every_block_and_shortcut_exports(tmp_path: Path) -> None:
    """Shortcut A's padding module and shortcut none, in every block type, survive tracing."""
    base = models.ArchSpec(stages=(models.StageSpec(1, 16, 1), models.StageSpec(1, 32, 2)), stem="cifar",
                           stem_width=16, num_classes=10)
    for block in models.BLOCKS:
        for shortcut in ("A", "none"):
            extra = {"bottleneck_ratio": 1.0} if "bottleneck" in block else {}
            model = models.build(base.replace(block=block, shortcut=shortcut, **extra))
            path = tmp_path / f"{block}_{shortcut}.torchscript.pt"
            check = export_model(model, path, "torchscript")  # raises on any difference
            assert check.max_abs_diff <= check.tolerance and load_export(path).spec == model.spec


def test_non_finite_outputs_are_reported_not_passed(tmp_path: Path) -> None:
    # As an untrained ResNet-1202 in eval mode does, faster.
    model = models.build(preset("cifar_resnet20"))
    with torch.no_grad():
        model.fc.bias.fill_(float("inf"))
    with pytest.raises(ExportError, match="cannot be checked: the eager model's outputs on a random batch are not finite"):
        export_model(model, tmp_path / "overflow.torchscript.pt", "torchscript")


def test_mismatch_is_an_export_error_and_cli_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    suffix, write, read = EXPORT_FORMATS["torchscript"]

    def write_other_weights(model, example, path, extra):
        other = models.build(model.spec).eval()  # fresh random weights
        write(other, example, path, extra)

    monkeypatch.setitem(EXPORT_FORMATS, "torchscript", (suffix, write_other_weights, read))
    out = tmp_path / "wrong.torchscript.pt"
    assert models_cli(["export", "cifar_resnet20", "--format", "torchscript", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "outputs differ from the eager model's" in error and "kept for inspection" in error
    assert len(error.strip().splitlines()) == 1


# ------------------------------------------------------------------ CLI
@pytest.fixture
def export_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """`python -m models export ARGS` in this process, run from tmp_path (where default outputs land)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> CliResult:
        return call_main(models_cli, ["export", *args], capsys)
    return run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint folder of a briefly trained-looking model (random BN statistics)."""
    torch.manual_seed(0)
    model = models.build(preset("cifar_resnet20"))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("ckpt") / "trial_0007"
    models.save_checkpoint(folder, model, metrics={"test_acc": 0.5})
    return folder


def test_cli_exports_a_checkpoint_quietly_with_its_spec(checkpoint: Path, tmp_path: Path) -> None:
    # `python -m models` as a user runs it, from another folder, warnings shown; the other CLI tests call main().
    result = run_module("models", "export", str(checkpoint), "--format", "torchscript", cwd=tmp_path,
                        python_options=("-W", "default"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "trial_0007.torchscript.pt"
    assert f"wrote {out.name} (torchscript, input N x 3x32x32" in result.stdout
    assert "max abs difference 0 " in result.stdout
    # torch.jit's deprecation warnings are the tool's business, not the user's.
    assert "deprecated" not in result.stderr
    exported = load_export(out)
    assert exported.spec == preset("cifar_resnet20")
    assert exported.info["spec_key"] == exported.spec.key() and exported.info["format"] == "torchscript"
    assert exported.info["source"]["checkpoint"] == str(checkpoint)
    assert exported.info["source"]["metrics"] == {"test_acc": 0.5}
    x = torch.randn(5, 3, 32, 32)  # any batch size, not only the traced one
    with torch.no_grad():
        assert torch.equal(exported.run(x), models.load(checkpoint)(x))


def test_cli_exported_program_carries_spec(checkpoint: Path, tmp_path: Path, export_cli) -> None:
    """ResNet-20's torch.export round trip: the file reloads with its spec and runs any batch as eager does."""
    out = tmp_path / "net.pt2"
    result = export_cli(str(checkpoint), "--format", "exported", "--out", str(out))
    assert result.returncode == 0, result.stderr
    extra = {"arch.yaml": "", "resnas.json": ""}
    program = torch.export.load(str(out), extra_files=extra)
    assert models.ArchSpec.from_yaml(extra["arch.yaml"]) == preset("cifar_resnet20")
    info = json.loads(extra["resnas.json"])
    assert info["input_shape"] == ["batch", 3, 32, 32]
    assert (info["spec_key"], info["format"]) == (preset("cifar_resnet20").key(), "exported")
    reference = models.load(checkpoint)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(program.module()(x), reference(x))


@pytest.mark.parametrize("args, expected", [
    (["no_such_thing", "--format", "torchscript"], "no such checkpoint folder, run folder or spec file"),
    (["resnet18", "--format", "torchscript", "--rank", "0"], "--rank and --trial pick a trial of a run folder"),
    (["resnet18", "--format", "pickle"], "invalid choice: 'pickle'"),
    (["cifar_resnet20", "--format", "torchscript", "--image-size", "0"], "image_size: got 0; allowed: a positive integer"),
])
def test_cli_bad_input_is_one_line_and_status_2(args: list[str], expected: str, tmp_path: Path, export_cli) -> None:
    assert expected in export_cli(*args).bad_input_line()
    assert not list(tmp_path.iterdir())


def test_cli_broken_checkpoint_is_status_2(checkpoint: Path, tmp_path: Path, export_cli) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "arch.yaml").write_text((checkpoint / "arch.yaml").read_text())
    (broken / "model.safetensors").write_bytes((checkpoint / "model.safetensors").read_bytes()[:100])
    assert "corrupt or truncated" in export_cli(str(broken), "--format", "torchscript").bad_input_line()
