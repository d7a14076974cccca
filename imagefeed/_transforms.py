"""Per-image augmentation of the streamed kinds: a crop box in source pixels, then one PIL resize into the batch size.

Training is torchvision's `RandomResizedCrop` (Szegedy et al. 2015, "Going
deeper with convolutions", sec. 6: a crop of 8%-100% of the area with aspect
3/4-4/3, resized to the training side) and a horizontal flip; evaluation
resizes the shorter side to `eval_resize` and takes the centre crop
(torchvision's `Resize` + `CenterCrop`). Both produce a uint8 CHW tensor;
normalisation happens later, on the device, on the whole batch.

Each transform splits into geometry (`box`: which source rectangle becomes
the output) and execution. The CPU path crops and resizes in one
`PIL.Image.resize(box=...)`, and first tells the source the shorter side it
needs (`target_side`), so a JPEG is decoded scaled down in the DCT domain
(PIL's `draft`) when the crop allows: decode cost falls with the pixel count.
A GPU decoder (`imagefeed._loader`, nvJPEG) applies the same boxes to
images it decoded itself.

Why PIL and not torchvision.transforms.v2 here: the torchvision wheels the
package index serves are built against CUDA torch, and fail to import beside
the CPU torch this project pins; PIL's `draft` + a box resize also decodes
fewer pixels than decode-then-crop (bench/input_pipeline.py measures it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._images import ImageSource

# torchvision.transforms.RandomResizedCrop's defaults (the Inception recipe that ResNet training uses).
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
# torchvision draws 10 crops before it falls back to the centre crop; kept so the distribution is the same.
_CROP_ATTEMPTS = 10

Box = tuple[float, float, float, float]  # (left, top, right, bottom) in source pixels, PIL's convention


def to_chw_tensor(image: Any) -> torch.Tensor:
    """An RGB PIL image as a uint8 (3, H, W) tensor (a copy: PIL's buffer is read-only)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)


@dataclass(frozen=True)
class TrainCrop:
    """RandomResizedCrop(image_size, scale, ratio) and a random horizontal flip, drawn from the caller's RNG."""

    image_size: int
    flip: bool = True
    scale: tuple[float, float] = CROP_SCALE
    ratio: tuple[float, float] = CROP_RATIO

    def __post_init__(self) -> None:
        if not (isinstance(self.image_size, int) and self.image_size >= 1):
            raise ValueError(f"image_size: got {self.image_size!r}; allowed: an integer >= 1")
        if not (0 < self.scale[0] <= self.scale[1] <= 1) or not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"scale, ratio: got {self.scale}, {self.ratio}; allowed: "
                             "0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]")

    def draw(self, rng: np.random.Generator) -> tuple[float, float]:
        """One (area fraction, aspect ratio) draw, as torchvision's `get_params` makes it."""
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        return float(rng.uniform(*self.scale)), math.exp(rng.uniform(*log_ratio))

    def target_side(self, first: tuple[float, float]) -> int:
        """The shorter side to decode at so that the crop of draw `first` is never upsampled.

        A crop of area fraction s and aspect a has shorter side sqrt(s) *
        min(sqrt a, 1/sqrt a) * sqrt(area); the image's shorter side is at most
        sqrt(area), so decoding the shorter side at image_size / that factor
        keeps at least image_size source pixels across the crop.
        """
        scale, aspect = first
        fraction = math.sqrt(scale) * min(math.sqrt(aspect), 1 / math.sqrt(aspect))
        return math.ceil(self.image_size / fraction)

    def box(self, width: int, height: int, rng: np.random.Generator,
            first: tuple[float, float] | None = None) -> Box:
        """torchvision's RandomResizedCrop.get_params on a width x height image, as a PIL box.

        `first` is the draw already made to choose the decode size; the crop
        geometry is relative, so it means the same at any decoded scale.
        """
        area = width * height
        for attempt in range(_CROP_ATTEMPTS):
            scale, aspect = first if attempt == 0 and first is not None else self.draw(rng)
            crop_w = int(round(math.sqrt(area * scale * aspect)))
            crop_h = int(round(math.sqrt(area * scale / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = int(rng.integers(0, height - crop_h + 1))
                left = int(rng.integers(0, width - crop_w + 1))
                return (left, top, left + crop_w, top + crop_h)
        # Fallback to the central crop at the nearest allowed aspect (torchvision's).
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            crop_w, crop_h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            crop_w, crop_h = int(round(height * self.ratio[1])), height
        else:
            crop_w, crop_h = width, height
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return (left, top, left + crop_w, top + crop_h)

    def flips(self, rng: np.random.Generator) -> bool:
        """Whether this image is mirrored left-right (p = 0.5 when flip is on)."""
        return self.flip and bool(rng.integers(0, 2))

    def __call__(self, images: ImageSource, index: int, rng: np.random.Generator,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        """Image `index` of `images`, cropped, resized to image_size and maybe flipped: uint8 (3, S, S), into `out`.

        The crop is a slice of the decoded pixels (its box is whole pixels)
        and the resize torch's uint8 bilinear kernel with antialiasing, the
        one torchvision's v2 `Resize` uses on tensors and that matches PIL's
        to within a level or so: 0.15 ms for a 224 px output where PIL's
        box resize and its copy out take 0.49 (/tmp-style micro-benchmark in
        bench/RESULTS.md). A source that offers `read_array` skips the PIL
        image altogether.
        """
        first = self.draw(rng)
        target = self.target_side(first)
        read_array = getattr(images, "read_array", None)
        pixels = read_array(index, target) if read_array is not None else np.array(images.read(index, target))
        height, width = pixels.shape[:2]
        left, top, right, bottom = (int(v) for v in self.box(width, height, rng, first))
        crop = torch.from_numpy(pixels[top:bottom, left:right]).permute(2, 0, 1).unsqueeze(0)
        # channels_last: the layout the uint8 kernel is vectorised for (an (H, W, 3) slice already is).
        side = self.image_size
        resized = F.interpolate(crop.contiguous(memory_format=torch.channels_last), size=(side, side),
                                mode="bilinear", antialias=True, align_corners=False)[0]
        if self.flips(rng):
            resized = resized.flip(-1)
        if out is None:
            return resized.contiguous()
        out.copy_(resized)
        return out


@dataclass(frozen=True)
class EvalCrop:
    """Resize the shorter side to `resize`, then the centre image_size crop (torchvision's Resize + CenterCrop)."""

    image_size: int
    resize: int

    def __post_init__(self) -> None:
        if not (isinstance(self.image_size, int) and 1 <= self.image_size <= self.resize):
            raise ValueError(f"image_size, resize: got {self.image_size!r}, {self.resize!r}; "
                             "allowed: integers with 1 <= image_size <= resize")

    def target_side(self) -> int:
        """The shorter side to decode at: the resize target itself."""
        return self.resize

    def box(self, width: int, height: int, rng: np.random.Generator | None = None) -> Box:
        """The source rectangle that resize-then-centre-crop maps onto the output, as a PIL box."""
        factor = self.resize / min(width, height)
        # torchvision's Resize(int): the shorter side becomes `resize`, the longer keeps the aspect (truncated).
        resized_w = self.resize if width <= height else int(self.resize * width / height)
        resized_h = self.resize if height <= width else int(self.resize * height / width)
        side = self.image_size
        # torchvision's CenterCrop offsets.
        top = int(round((resized_h - side) / 2.0))
        left = int(round((resized_w - side) / 2.0))
        return (left / factor, top / factor, (left + side) / factor, (top + side) / factor)

    def __call__(self, images: ImageSource, index: int, rng: np.random.Generator | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        """Image `index` of `images`, resized and centre-cropped: uint8 (3, S, S), into `out` if given.

        PIL here, not the training crop's torch kernel: the box is fractional
        (the centre crop of the resized image, in source pixels), which
        PIL's resize takes exactly, and evaluation is a small share of the
        images an epoch reads.
        """
        from PIL import Image

        image = images.read(index, target_side=self.target_side())
        side = self.image_size
        resized = to_chw_tensor(image.resize((side, side), Image.Resampling.BILINEAR,
                                             box=self.box(image.width, image.height)))
        if out is None:
            return resized
        out.copy_(resized)
        return out


def train_transform(image_size: int, flip: bool = True) -> TrainCrop:
    """The training augmentation of the streamed kinds (`random_resized_crop_flip`)."""
    return TrainCrop(image_size, flip=flip)


def eval_transform(image_size: int, eval_resize: int) -> EvalCrop:
    """The evaluation transform of the streamed kinds: resize to `eval_resize`, centre crop `image_size`."""
    return EvalCrop(image_size, eval_resize)
