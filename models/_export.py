"""Export a network to TorchScript, a `torch.export` program or ONNX, and check the file against eager.

Each exported file carries its spec (`arch.yaml`) and a small `resnas.json`
(format, spec key, input shape, where the weights came from, versions): as
`_extra_files` in TorchScript, `extra_files` in a `.pt2` program, and
`metadata_props` in ONNX. After writing, the file is loaded back and run on a
random batch of a different size than the one traced, and its outputs are
compared with the eager model's.

Loading an exported file runs the graph it holds: export for deployment, and
load only files you trust. Checkpoints (`models.load`) are the safe format.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ._checkpoint import versions
from ._network import natural_image_size
from ._spec import ArchSpec

SPEC_ENTRY = "arch.yaml"
INFO_ENTRY = "resnas.json"
TRACE_BATCH = 2
# A different batch size than the traced one, so a baked-in batch size fails the check.
CHECK_BATCH = 3
# Same kernels give identical outputs; the tolerance covers reordered sums
# (ONNX's reference runtime), relative to the largest output, because untrained
# deep nets in eval mode reach outputs of 1e8 (BN is the identity at init).
ATOL = 1e-5
RTOL = 1e-5


class ExportError(RuntimeError):
    """An exported file does not load, or gives other outputs than the eager model."""


class ExportUnavailable(ValueError):
    """The chosen format needs a package that is not installed."""


@dataclass(frozen=True)
class ExportCheck:
    """What `export_model` wrote and how closely the reloaded file matches the eager model."""

    path: Path
    format: str
    input_shape: tuple[int, ...]
    max_abs_diff: float
    tolerance: float


@dataclass(frozen=True)
class ExportedModel:
    """A loaded export: something to call on a batch, its spec, and its resnas.json."""

    run: Callable[[torch.Tensor], torch.Tensor]
    spec: ArchSpec
    info: dict[str, Any]


@contextlib.contextmanager
def _quiet_torch_jit() -> Any:
    # torch 2.13 marks torch.jit deprecated on every call; the user asked for TorchScript.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated")
        yield


# ------------------------------------------------------------------ writers
def _batch_dim() -> dict[str, dict[int, Any]]:
    # Dynamic batch only: the spatial size is fixed at the size exported.
    return {"x": {0: torch.export.Dim("batch", min=1, max=65536)}}


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, extra: dict[str, str]) -> None:
    # trace, not script: scripting rejects the Optional submodules and the
    # getattr loop over stages; every block's control flow is fixed per module,
    # so a trace records it exactly (the check below proves it on another batch).
    with _quiet_torch_jit(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files=extra)


def _read_torchscript(path: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, str]]:
    extra = {SPEC_ENTRY: "", INFO_ENTRY: ""}
    with _quiet_torch_jit():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}


def _write_exported(model: nn.Module, example: torch.Tensor, path: Path, extra: dict[str, str]) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=_batch_dim())
    torch.export.save(program, str(path), extra_files=extra)


def _read_exported(path: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, str]]:
    extra = {SPEC_ENTRY: "", INFO_ENTRY: ""}
    program = torch.export.load(str(path), extra_files=extra)
    return program.module(), extra


def _import_onnx() -> Any:
    try:
        import onnx
        import onnxscript  # noqa: F401  torch.onnx.export(dynamo=True) needs it
    except ImportError:
        raise ExportUnavailable("--format onnx needs the onnx and onnxscript packages: "
                                "pip install onnx onnxscript") from None
    return onnx


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path, extra: dict[str, str]) -> None:
    onnx = _import_onnx()
    captured = io.StringIO()
    # The exporter prints its progress and logs a warning per missing torchvision
    # op; keep the printout for an error message only, and the log quiet.
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["x"],
                              output_names=["logits"], dynamic_shapes=_batch_dim())
    except Exception as error:
        tail = " | ".join(captured.getvalue().strip().splitlines()[-3:])
        raise ExportError(f"{path}: ONNX export failed ({type(error).__name__}: {error}) {tail}") from None
    finally:
        exporter_log.setLevel(level)
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, extra)
    onnx.save(proto, str(path))


def _read_onnx(path: Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, str]]:
    onnx = _import_onnx()
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    extra = {prop.key: prop.value for prop in proto.metadata_props}
    input_name = proto.graph.input[0].name
    try:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        run_numpy = lambda array: session.run(None, {input_name: array})[0]  # noqa: E731
    except ImportError:
        # onnx's own reference runtime (NumPy): slow, but proves the file runs
        # without one more dependency.
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(proto)
        run_numpy = lambda array: evaluator.run(None, {input_name: array})[0]  # noqa: E731

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run_numpy(x.detach().cpu().numpy()))

    return run, extra


# format name -> (file suffix, writer, reader)
EXPORT_FORMATS: dict[str, tuple[str, Callable[..., None], Callable[[Path], tuple[Any, dict[str, str]]]]] = {
    "torchscript": (".torchscript.pt", _write_torchscript, _read_torchscript),
    "exported": (".pt2", _write_exported, _read_exported),
    "onnx": (".onnx", _write_onnx, _read_onnx),
}


def _check_format(format: str) -> None:
    if format not in EXPORT_FORMATS:
        raise ValueError(f"--format: got {format!r}; allowed: {', '.join(EXPORT_FORMATS)}")


def default_export_path(name: str, format: str) -> Path:
    """`<name><suffix>` in the working folder: resnet18.torchscript.pt, trial_0003.pt2, ..."""
    _check_format(format)
    return Path(f"{name}{EXPORT_FORMATS[format][0]}")


def _format_of(path: Path) -> str:
    for name, (suffix, _, _) in EXPORT_FORMATS.items():
        if path.name.endswith(suffix):
            return name
    raise ValueError(f"{path}: unknown export suffix; allowed: "
                     f"{', '.join(s for s, _, _ in EXPORT_FORMATS.values())}")


def load_export(path: str | Path, format: str | None = None) -> ExportedModel:
    """Load an exported file (by its suffix, or `format`) with the spec it carries."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such exported file")
    format = format or _format_of(path)
    _check_format(format)
    run, extra = EXPORT_FORMATS[format][2](path)
    if not extra.get(SPEC_ENTRY):
        raise ValueError(f"{path}: carries no {SPEC_ENTRY}; it was not written by models export")
    info = json.loads(extra[INFO_ENTRY]) if extra.get(INFO_ENTRY) else {}
    return ExportedModel(run=run, spec=ArchSpec.from_yaml(extra[SPEC_ENTRY]), info=info)


def _compare(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """(largest absolute difference, allowed difference); inf when the shapes differ."""
    if got.shape != want.shape:
        return math.inf, 0.0
    difference = (got.double() - want.double()).abs().max().item()
    return difference, ATOL + RTOL * want.abs().max().item()


def export_model(model: nn.Module, path: str | Path, format: str, image_size: int | None = None,
                 info: dict[str, Any] | None = None) -> ExportCheck:
    """Write `model` (which carries `.spec`) to `path` as `format`, reload it and compare outputs with eager.

    The model is moved to the CPU and put in eval mode. The input is float32
    N x C x `image_size` x `image_size` (default: the stem's natural size) with
    any batch size N. Raises ExportError when the export fails, or when the
    reloaded file's outputs differ by more than 1e-5 + 1e-5 * max|output|
    (the file then stays on disk for inspection).
    """
    _check_format(format)
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ArchSpec):
        raise ValueError("export_model: the model carries no ArchSpec (.spec); build it with models.build")
    size = natural_image_size(spec) if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image_size: got {image_size!r}; allowed: a positive integer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(TRACE_BATCH, spec.in_channels, size, size, generator=generator)
    check = torch.randn(CHECK_BATCH, spec.in_channels, size, size, generator=generator)
    document = {"format": format, "spec_key": spec.key(), "input_shape": ["batch", spec.in_channels, size, size],
                "input": "float32 NCHW, normalised as in training (see source.data_settings)",
                "versions": versions(), "source": info or {}}
    extra = {SPEC_ENTRY: spec.to_yaml(), INFO_ENTRY: json.dumps(document, sort_keys=True, default=str)}
    try:
        EXPORT_FORMATS[format][1](model, example, path, extra)
    except (ExportUnavailable, ExportError):
        raise
    except Exception as error:  # a tracer or exporter that cannot handle the model
        raise ExportError(f"{path}: {format} export failed ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''})") from None
    try:
        exported = load_export(path, format)
        with torch.no_grad():
            got = exported.run(check)
    except (ExportUnavailable, ExportError):
        raise
    except Exception as error:
        raise ExportError(f"{path}: written, but it does not load and run ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if exported.spec != spec:
        raise ExportError(f"{path}: the spec read back (key {exported.spec.key()}) differs from the model's ({spec.key()})")
    with torch.no_grad():
        want = model(check)
    if not torch.isfinite(want).all():
        raise ExportError(f"{path}: written, but it cannot be checked: the eager model's outputs on a random "
                          f"batch are not finite (an untrained deep net in eval mode overflows, because "
                          f"BN is the identity at initialisation); export trained weights instead")
    difference, tolerance = _compare(got, want)
    if not difference <= tolerance:
        raise ExportError(f"{path}: the exported {format} model's outputs differ from the eager model's on a "
                          f"random batch of {CHECK_BATCH}: max abs difference {difference:.3g} > "
                          f"tolerance {tolerance:.3g}; the file is kept for inspection")
    return ExportCheck(path=path, format=format, input_shape=tuple(check.shape),
                       max_abs_diff=difference, tolerance=tolerance)
