"""Architecture specs, the ResNet generator, presets and complexity counting."""

from ._checkpoint import CheckpointError, save_checkpoint, versions
from ._complexity import Complexity
from ._describe import spec_from_name_or_file
from ._export import EXPORT_FORMATS, ExportCheck, ExportError, ExportedModel, export_model, load_export
from ._loading import load, load_spec, load_state_dict_by_shape
from ._memory import (MemoryBudget, MemoryEstimate, device_memory_budget, inference_memory, training_memory,
                      trial_memory_budget)
from ._network import ResNet, build, complexity, natural_image_size
from ._presets import preset, presets
from ._spec import (BLOCKS, BOTTLENECK_BLOCKS, BOTTLENECK_STRIDES, SHORTCUTS, STEMS, ArchSpec, SpecError,
                    StageSpec)

__all__ = [
    "ArchSpec", "StageSpec", "SpecError", "BLOCKS", "SHORTCUTS", "STEMS", "BOTTLENECK_STRIDES", "BOTTLENECK_BLOCKS",
    "ResNet", "build", "complexity", "natural_image_size", "Complexity",
    "training_memory", "inference_memory", "MemoryEstimate", "MemoryBudget", "trial_memory_budget",
    "device_memory_budget",
    "preset", "presets", "spec_from_name_or_file", "save_checkpoint", "CheckpointError", "versions",
    "load", "load_spec", "load_state_dict_by_shape",
    "export_model", "load_export", "EXPORT_FORMATS", "ExportCheck", "ExportError", "ExportedModel",
]
