"""The two ways data fails: a dataset that cannot be used at all, and one image that cannot be decoded."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset that is missing, corrupt or unsafe to read; the message says which file and what to do."""


class BadImage(DatasetError):
    """One image that cannot be decoded (truncated, empty, not an image, unreadable): the loader skips and counts it.

    Raised by `ImageSource.read`; the index check reads only headers, so a JPEG
    whose header is fine but whose data ends early is found only when decoded.
    `path` names the file (or the packed record) for the warning and run.json.
    """

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: skipped, not a readable image ({reason})")
        self.path = path
        self.reason = reason
