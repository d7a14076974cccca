"""The scoring batches: a few batches of the study's own training images, drawn once, the same for every candidate."""

from __future__ import annotations

import torch

import imagefeed

from ._measures import Batch
from ._proxies import SCORING_BATCH_SIZE


def scoring_batches(splits: imagefeed.DatasetSplits | imagefeed.StreamedSplits, count: int, seed: int,
                    batch_size: int = SCORING_BATCH_SIZE) -> list[Batch]:
    """`count` batches of `batch_size` training images (fewer where the split is smaller), normalised as training does.

    The images are a permutation of the training split seeded by `seed`, with
    neither crop nor flip: every candidate of a screen, and every run of it,
    sees the same pixels (the reference draws an augmented batch; a screen
    that ranks by chance differences in its input would not be reproducible).
    A streamed dataset's images come through its evaluation transform (resize
    and centre crop), read in this process.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"batches: got {count!r}; allowed: an integer >= 1")
    normalize = imagefeed.BatchAugment(crop_padding=0, flip=False, mean=splits.mean, std=splits.std)
    if splits.streamed:
        loader = imagefeed.make_loader(splits.train, imagefeed.eval_transform(splits.image_size, splits.eval_resize),
                                       batch_size=batch_size, seed=seed, train=True, workers=0, persistent=False)
        drawn = []
        for images, labels in loader:
            drawn.append((normalize.normalize_only(images), labels))
            if len(drawn) == count:
                break
        return drawn
    order = torch.randperm(len(splits.train_x), generator=torch.Generator().manual_seed(seed))
    chosen = order[:count * batch_size]
    return [(normalize.normalize_only(splits.train_x[part]), splits.train_y[part])
            for part in chosen.split(batch_size) if len(part)]
