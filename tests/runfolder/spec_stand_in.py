"""A stand-in for models.ArchSpec in the runfolder tests: trial_row needs only flat, key and to_yaml.

runfolder imports neither torch nor models, and its tests keep it that way.
"""

from __future__ import annotations


class SpecStandIn:
    def flat(self) -> dict:
        return {"block": "basic", "depths": "3-3-3"}

    def key(self) -> str:
        return "0123456789abcdef"

    def to_yaml(self) -> str:
        return "block: basic\n"
