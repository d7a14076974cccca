"""A per-stage table of an architecture: what `python -m models describe` prints."""

from __future__ import annotations

from pathlib import Path

from ._network import count_parts, natural_image_size
from ._presets import preset, presets
from ._spec import ArchSpec


def format_count(value: float, unit: str = "") -> str:
    """Human units: 40.55 M, 4.089 G."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {suffix}{unit}".rstrip()
    return f"{value:.0f} {unit}".rstrip()


def read_spec_text(path: Path, error_type: type[Exception]) -> str:
    """The UTF-8 text of a spec file; `error_type` naming the file if it cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise error_type(f"{path}: not a spec file: not UTF-8 text (byte {error.start}: "
                         f"{error.object[error.start:error.start + 1]!r}); a spec is YAML or JSON text") from None
    except OSError as error:
        raise error_type(f"{path}: cannot be read ({error.strerror or error})") from None


def spec_from_name_or_file(name_or_path: str) -> ArchSpec:
    """A preset name, or a YAML/JSON file holding one ArchSpec."""
    if name_or_path in presets():
        return preset(name_or_path)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ValueError(f"{path}: no such spec file; give a preset ({', '.join(presets())}) or a spec YAML")
        text = read_spec_text(path, ValueError)
        try:
            if path.suffix == ".json":
                return ArchSpec.from_json(text)
            return ArchSpec.from_yaml(text)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        except Exception as error:  # yaml syntax errors carry their own position
            raise ValueError(f"{path}: not a valid spec file ({type(error).__name__}: {error})".replace("\n", " ")) from None
    raise ValueError(f"{name_or_path!r}: not a preset and not a file; presets: {', '.join(presets())}")


def describe(spec: ArchSpec, image_size: int | None = None) -> str:
    """The table: stage, blocks, width, stride, output size, params, MACs, then totals."""
    size = natural_image_size(spec) if image_size is None else image_size
    parts = count_parts(spec, size)
    stem, stages, head = parts[0], parts[1:-1], parts[-1]
    rows = [("stage", "blocks", "width", "stride", "output", "params", "MACs"),
            (stem.name, "-", str(spec.stem_width), "-", f"{stem.output_size}x{stem.output_size}",
             format_count(stem.params), format_count(stem.macs))]
    for stage, part in zip(spec.stages, stages):
        rows.append((part.name, str(stage.depth), str(stage.width), str(stage.stride),
                     f"{part.output_size}x{part.output_size}", format_count(part.params),
                     format_count(part.macs)))
    rows.append((head.name, "-", str(spec.num_classes), "-", "1x1", format_count(head.params),
                 format_count(head.macs)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"{spec.block} blocks, shortcut {spec.shortcut}, {spec.num_layers} layers, "
             f"input {spec.in_channels}x{size}x{size}, key {spec.key()}"]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w)
                               for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    params, macs = sum(p.params for p in parts), sum(p.macs for p in parts)
    lines.append(f"total: {params:,} params, {macs:,} MACs "
                 f"({format_count(macs)} MACs = {format_count(2 * macs)} FLOPs at 2 per MAC)")
    return "\n".join(lines)
