"""A cheap fingerprint of a folder of images: names, sizes and modification times, never the bytes.

Hashing 150 GB of ImageNet JPEGs would take longer than many trials, so a
folder is identified as rsync and make identify files: by path, size and
modification time (from the `os.scandir` walk that indexes it anyway). A file
rewritten in place with the same size within the same nanosecond would go
unnoticed; a copied, re-encoded, added, removed or renamed image does not.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable

FINGERPRINT_DIGITS = 16


def file_identity(entry: os.DirEntry, relative: str) -> tuple[str, int, int]:
    """(relative path, size, mtime in ns) of one scanned file: one stat, no read."""
    stat = entry.stat()
    return relative, stat.st_size, stat.st_mtime_ns


def fingerprint_files(identities: Iterable[tuple[str, int, int]]) -> str:
    """A short hex digest of (relative path, size, mtime_ns) triples, in any order."""
    digest = hashlib.sha256()
    for relative, size, mtime_ns in sorted(identities):
        digest.update(f"{relative}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:FINGERPRINT_DIGITS]


def fingerprint_paths(root: str, relatives: Iterable[str]) -> list[tuple[str, int, int]]:
    """The identities of named files under `root` (the few files a layout names: wnids.txt, annotations)."""
    found = []
    for relative in relatives:
        stat = os.stat(os.path.join(root, relative))
        found.append((relative, stat.st_size, stat.st_mtime_ns))
    return found
