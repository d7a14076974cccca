"""Architecture specs, the ResNet generator, presets and complexity counting."""

from ._checkpoint import CheckpointError, save_checkpoint
from ._complexity import Complexity
from ._export import EXPORT_FORMATS, ExportCheck, ExportError, ExportedModel, export_model, load_export
from ._loading import load, load_spec, load_state_dict_by_shape
from ._network import ResNet, build, complexity, natural_image_size
from ._presets import preset, presets
from ._spec import BLOCKS, BOTTLENECK_STRIDES, SHORTCUTS, STEMS, ArchSpec, StageSpec

__all__ = [
    "ArchSpec", "StageSpec", "BLOCKS", "SHORTCUTS", "STEMS", "BOTTLENECK_STRIDES",
    "ResNet", "build", "complexity", "natural_image_size", "Complexity",
    "preset", "presets", "save_checkpoint", "CheckpointError",
    "load", "load_spec", "load_state_dict_by_shape",
    "export_model", "load_export", "EXPORT_FORMATS", "ExportCheck", "ExportError", "ExportedModel",
]
