"""`python -m search.pack`: a folder in, one packed file out that data.root can name; bad input is exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import imagefeed
from commands import call_main
from imagefeed._packed import open_packed
from search import pack
from space import DataSettings
from tests.imagefeed import layouts

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    layouts.imagefolder(root, classes=3, per_class=3, size=(500, 375))
    return root


def test_pack_end_to_end_then_train_splits_read_from_the_file(folder, tmp_path):
    out = tmp_path / "data.pack"
    done = subprocess.run([sys.executable, "-m", "search.pack", "imagefolder", str(folder), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    store = open_packed(out)
    assert store.fingerprint() in done.stdout and "use it with data.root" in done.stdout
    splits = imagefeed.load(DataSettings(dataset="imagefolder", root=str(out)))
    from_folder = imagefeed.load(DataSettings(dataset="imagefolder", root=str(folder)))
    assert splits.num_classes == from_folder.num_classes == 3
    assert (splits.source["n_train_pool"], splits.source["n_test"]) == \
        (from_folder.source["n_train_pool"], from_folder.source["n_test"])
    assert splits.source["packed_from_fingerprint"] == from_folder.source["fingerprint"]


@pytest.mark.parametrize("args, expected", [
    (["imagefolder", "{missing}", "{out}"], "not a folder; expected ROOT/train/<class>"),
    (["bogus", "{folder}", "{out}"], "data.dataset: got 'bogus'; allowed: "),
    (["synthetic", "{folder}", "{out}"], "generated in memory"),
    (["imagefolder", "{folder}", "{existing}"], "exists; pass --force"),
    (["imagefolder", "{folder}", "{out}", "--max-side", "0"], "max_side: got 0"),
    (["imagefolder", "{folder}", "{out}", "--quality", "101"], "quality: got 101"),
    (["tiny_imagenet", "{folder}", "{out}"], "wnids.txt"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected, folder, tmp_path, capsys):
    existing = tmp_path / "existing.pack"
    existing.write_bytes(b"")
    names = {"missing": tmp_path / "nope", "out": tmp_path / "out.pack", "folder": folder, "existing": existing}
    result = call_main(pack.main, [arg.format(**names) for arg in args], capsys)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not (tmp_path / "out.pack").exists()
