"""Architecture specs, the ResNet generator, presets and complexity counting."""

from ._checkpoint import CheckpointError, save_checkpoint
from ._complexity import Complexity
from ._network import ResNet, build, complexity, natural_image_size
from ._presets import preset, presets
from ._spec import BLOCKS, BOTTLENECK_STRIDES, SHORTCUTS, STEMS, ArchSpec, StageSpec

__all__ = [
    "ArchSpec", "StageSpec", "BLOCKS", "SHORTCUTS", "STEMS", "BOTTLENECK_STRIDES",
    "ResNet", "build", "complexity", "natural_image_size", "Complexity",
    "preset", "presets", "save_checkpoint", "CheckpointError",
]
