"""Atomic writes keep the user's umask, and a folder is written whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

import runfolder


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_umask_is_read_without_changing_it(umask: int) -> None:
    assert runfolder.current_umask() == umask
    assert runfolder.current_umask() == umask
    assert runfolder.new_file_mode() == 0o666 & ~umask


def test_files_the_run_writes_keep_the_umask(tmp_path: Path, umask: int) -> None:
    runfolder.write_run_json(tmp_path, {"study": "x"})
    runfolder.atomic_write_text(tmp_path / "study.yaml", "name: x\n")
    frame = pd.DataFrame({"trial_id": ["trial_0000"], "status": ["complete"]})
    runfolder.atomic_write_frame(frame, tmp_path / "results.parquet")
    runfolder.atomic_write_frame(frame, tmp_path / "results.csv")
    with runfolder.RunFolderLock(tmp_path) as lock:
        assert _mode(lock.path) == 0o666 & ~umask
    for name in ("run.json", "study.yaml", "results.parquet", "results.csv"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name


def test_a_folder_is_written_whole_with_the_umask(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "checkpoints" / "trial_0000"

    def write(folder: Path) -> None:
        (folder / "a.txt").write_text("a")
        (folder / "b.txt").write_text("b")

    runfolder.atomic_write_folder(target, write)
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "b.txt"]
    assert _mode(target) == 0o777 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["trial_0000"]  # no temporary sibling left


def test_a_folder_write_that_fails_leaves_the_old_folder_and_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "trial_0000"
    runfolder.atomic_write_folder(target, lambda folder: (folder / "old.txt").write_text("old"))

    def fail_halfway(folder: Path) -> None:
        (folder / "new.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        runfolder.atomic_write_folder(target, fail_halfway)
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["trial_0000"]
    runfolder.atomic_write_folder(target, lambda folder: (folder / "new.txt").write_text("new"))
    assert [p.name for p in target.iterdir()] == ["new.txt"]  # a whole new folder replaces the old one
    assert [p.name for p in tmp_path.iterdir()] == ["trial_0000"]


def test_unwritable_reason_names_the_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert runfolder.unwritable_reason(tmp_path / "new" / "deeper") is None
    assert runfolder.unwritable_reason(tmp_path) is None
    assert runfolder.unwritable_reason(tmp_path / "file" / "ckpt") == f"{tmp_path / 'file'} is a file, not a folder"


def test_unwritable_reason_names_a_read_only_folder(read_only_folder: Path) -> None:
    assert runfolder.unwritable_reason(read_only_folder / "ckpt") == f"{read_only_folder} is a folder you cannot write"
