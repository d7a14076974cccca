"""Pack a dataset into one memory-mapped file that `data.root` can name instead of the folder.

    python -m search.pack DATASET ROOT OUT [--max-side 256] [--quality 90] [--raw | --jpeg] [--force]

DATASET is a `data.dataset` kind (imagefolder, imagenet, tiny_imagenet, or a
whole-tensor kind such as cifar10), ROOT what that kind reads, OUT the file to
write. Images are re-encoded with their longer side at most --max-side (JPEG),
or kept as raw pixels where they are at most 64 px (or with --raw); see
`imagefeed._packed` for the format and why. An image that cannot be decoded is
skipped with a warning and counted. The file appears whole or not at all.
Bad input gets one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace

EXIT_BAD_INPUT = 2


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from imagefeed._packed import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_SIDE

    parser = argparse.ArgumentParser(prog="python -m search.pack", description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="the data.dataset kind ROOT holds")
    parser.add_argument("root", help="the folder (or file) that kind reads")
    parser.add_argument("out", help="the packed file to write")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                        help=f"longest side of a stored image, in pixels (default {DEFAULT_MAX_SIDE})")
    parser.add_argument("--quality", type=int, default=DEFAULT_JPEG_QUALITY,
                        help=f"JPEG quality of re-encoded images (default {DEFAULT_JPEG_QUALITY})")
    encoding = parser.add_mutually_exclusive_group()
    encoding.add_argument("--raw", action="store_const", const=True, dest="raw",
                          help="store every image as raw uint8 pixels (default: only images <= 64 px)")
    encoding.add_argument("--jpeg", action="store_const", const=False, dest="raw",
                          help="store every image as JPEG, small ones too")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parse_args(argv)
    import imagefeed
    from imagefeed._packing import write_packed

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    out = Path(args.out)
    try:
        kind = imagefeed.dataset_kind(args.dataset)
        if not kind.reads_files:
            raise imagefeed.DatasetError(f"DATASET: {args.dataset} is generated in memory, there is nothing to "
                                         "pack; allowed: " + ", ".join(k for k, v in imagefeed.DATASET_KINDS.items()
                                                                       if v.reads_files))
        if out.exists() and not args.force:
            raise imagefeed.DatasetError(f"{out}: exists; pass --force to replace it, or name another OUT")
        if out.is_dir():
            raise imagefeed.DatasetError(f"{out}: is a folder; OUT names the file to write")
        root = Path(args.root).expanduser().resolve()
        # What a DatasetKind's reader reads (the fields of imagefeed's settings): no split, no normalisation.
        settings = SimpleNamespace(dataset=args.dataset, root=str(root), download=False,
                                   synthetic_train=0, synthetic_test=0, image_size=kind.image_size)
        started = time.perf_counter()
        dataset = kind.read(settings)
        summary = write_packed(out, dataset, kind=args.dataset, max_side=args.max_side, quality=args.quality,
                               raw=args.raw, progress=lambda done, total: print(
                                   f"packed {done:,} of {total:,} images", file=sys.stderr))
    except imagefeed.DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    counts = ", ".join(f"{count:,} {name}" for name, count in summary.counts.items())
    skipped = f", {summary.skipped_images} unreadable skipped" if summary.skipped_images else ""
    print(f"{summary.path}: {counts} images ({summary.jpeg_images:,} JPEG, {summary.raw_images:,} raw{skipped}), "
          f"{summary.file_bytes / 2**20:.1f} MiB, fingerprint {summary.fingerprint}, "
          f"{time.perf_counter() - started:.1f} s; use it with data.root: {summary.path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
