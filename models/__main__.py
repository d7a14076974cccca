"""`python -m models describe NAME|SPEC.yaml` and `python -m models export PATH --format FORMAT`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import OneLineParser
from ._describe import describe, spec_from_name_or_file

EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2
# An export holds the weights three times: the eager model, the exported program
# (TorchScript and torch.export keep their own constants) and the reloaded file.
EXPORT_WEIGHT_COPIES = 3


def _describe_command(args: argparse.Namespace) -> None:
    spec = spec_from_name_or_file(args.spec)
    print(describe(spec, args.image_size))


def _check_export_memory(spec: object, image_size: int | None, named: str) -> None:
    """Refuse, before building it, a network whose export would not fit this machine's memory."""
    from ._export import CHECK_BATCH
    from ._memory import device_memory_budget, inference_memory

    estimate = inference_memory(spec, image_size, batch_size=CHECK_BATCH, copies=EXPORT_WEIGHT_COPIES)
    refusal = device_memory_budget("cpu").refusal(estimate)
    if refusal is not None:
        raise ValueError(f"{named}: exporting it {refusal}; allowed: a smaller network")


def _check_out(out: Path, format: str) -> None:
    """--out must name a file in a folder that can be written (checked before anything is built)."""
    import runfolder

    from ._export import default_export_path

    if out.is_dir():
        example = out / default_export_path("model", format).name
        raise ValueError(f"--out {out}: is a folder; give a file name, e.g. {example}")
    reason = runfolder.unwritable_reason(out)
    if reason is not None:
        raise ValueError(f"--out {out}: {reason}; give a file in a folder you can write")


def _try_create(out: Path) -> None:
    """Create `out` (and its folders) empty, as the export will: a place that refuses it fails here, exit 2."""
    existed = out.exists()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "ab"):
            pass
    except OSError as error:
        raise ValueError(f"--out {out}: cannot be written ({error.strerror or error}); "
                         "give a file in a folder you can write") from None
    if not existed:
        out.unlink()


def _model_to_export(args: argparse.Namespace) -> tuple[object, str, dict]:
    """(model, default file name, source info) for PATH: a checkpoint/run folder, a preset or a spec file."""
    import torch

    from ._loading import load, load_spec
    from ._network import build
    from ._presets import presets

    path = Path(args.path)
    if path.is_dir():
        _check_export_memory(load_spec(path, rank=args.rank, trial=args.trial), args.image_size, args.path)
        model = load(path, rank=args.rank, trial=args.trial)
        meta = model.checkpoint_meta
        trial = meta.get("trial", {})
        name = trial.get("trial_id") or path.resolve().name
        source = {"checkpoint": meta.get("path"), "trial": trial, "metrics": meta.get("metrics"),
                  "data_settings": meta.get("data_settings")}
        return model, name, source
    if args.rank is not None or args.trial is not None:
        raise ValueError(f"{path}: --rank and --trial pick a trial of a run folder; this is not a folder")
    if not path.exists() and args.path not in presets():
        raise ValueError(f"{path}: no such checkpoint folder, run folder or spec file, and not a preset "
                         f"({', '.join(presets())})")
    spec = spec_from_name_or_file(args.path)
    _check_export_memory(spec, args.image_size, args.path)
    # Untrained: seeded, so two exports of a preset hold the same weights.
    torch.manual_seed(0)
    return build(spec), Path(args.path).stem, {"untrained": True, "spec_from": args.path}


def _export_command(args: argparse.Namespace) -> int:
    from ._export import ExportError, default_export_path, export_model

    if args.out:
        _check_out(Path(args.out), args.format)
    model, name, source = _model_to_export(args)
    out = Path(args.out) if args.out else default_export_path(name, args.format)
    _try_create(out)
    try:
        check = export_model(model, out, args.format, image_size=args.image_size, info=source)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_MISMATCH
    shape = "x".join(str(d) for d in check.input_shape[1:])
    print(f"wrote {check.path} ({check.format}, input N x {shape}, spec {model.spec.key()})")
    print(f"reloaded and checked against the eager model on a random batch of {check.input_shape[0]}: "
          f"max abs difference {check.max_abs_diff:.3g} (tolerance {check.tolerance:.3g})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    from ._export import EXPORT_FORMATS

    parser = OneLineParser(prog="python -m models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    describe_parser = commands.add_parser("describe", help="print an architecture as a table")
    describe_parser.add_argument("spec", help="a preset name or a spec YAML/JSON file")
    describe_parser.add_argument("--image-size", type=int, default=None,
                                 help="input side in pixels (default: the stem's natural size)")
    describe_parser.set_defaults(run=_describe_command)

    export_parser = commands.add_parser(
        "export", help="write a TorchScript, torch.export or ONNX file and check it against eager")
    export_parser.add_argument("path", help="a checkpoint folder, a run folder (with --rank/--trial), "
                                            "or a preset name or spec file (exported untrained)")
    which = export_parser.add_mutually_exclusive_group()
    which.add_argument("--rank", type=int, default=None,
                       help="in a run folder: the k-th best trial by val_acc_best with kept weights (0 = best)")
    which.add_argument("--trial", default=None, help="in a run folder: a trial id, e.g. trial_0003")
    export_parser.add_argument("--format", required=True, choices=list(EXPORT_FORMATS))
    export_parser.add_argument("--out", default=None,
                               help="output file (default: ./<name>.torchscript.pt, .pt2 or .onnx)")
    export_parser.add_argument("--image-size", type=int, default=None,
                               help="input side the export expects (default: the stem's natural size)")
    export_parser.set_defaults(run=_export_command)

    args = parser.parse_args(argv)
    try:
        status = args.run(args)
    except ValueError as error:  # CheckpointError and a missing ONNX package are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
