"""Per-channel normalisation constants, by the name `data.normalize` gives."""

from __future__ import annotations

# DataSettings.normalize -> per-channel (mean, std) in 0..1 pixel units.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # The CIFAR-10 training set's pixel mean and std, also used for CIFAR-100.
    # The often-copied std (0.2023, 0.1994, 0.2010) is the mean of per-image
    # stds, not the std of the pixels; it normalises to a std of about 1.2.
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    # ImageNet statistics: what torchvision models and many released CIFAR
    # checkpoints (e.g. the ResNet-20 in ../shared/data/README.md) expect.
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
