"""The one writing path: atomic, never over what roadscene did not write, one clear line when a
place cannot be written, and no temporaries left by a killed run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from roadscene.errors import InputError
from roadscene.io import atomic_dir, atomic_write, check_output, write_json


def _is_report(path: Path) -> bool:
    return path.read_text().startswith("{")


def test_an_interrupted_write_keeps_the_old_content_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    out.write_text("{old}")
    with pytest.raises(RuntimeError), atomic_write(out) as handle:
        handle.write("{new, half")
        raise RuntimeError("killed")
    assert out.read_text() == "{old}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_what_roadscene_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(InputError, match="is not a report written by roadscene"):
        write_json(notes, {"a": 1}, ours=_is_report, what="a report")
    assert notes.read_text() == "my notes\n"
    report = tmp_path / "report.json"
    report.write_text("{}")
    write_json(report, {"a": 1}, ours=_is_report, what="a report")  # ours: replaced
    assert report.read_text().startswith('{\n  "a": 1')

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with (
        pytest.raises(InputError, match="choose another path"),
        atomic_dir(folder, ours=lambda f: (f / "marker").is_file()),
    ):
        pass
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty, ours=lambda f: False) as tmp:  # an empty folder may be used
        (tmp / "a").write_text("a")
    assert (empty / "a").read_text() == "a"


@pytest.mark.parametrize(
    ("target", "folder", "message"),
    [
        ("/proc/roadscene/out.json", False, "cannot write here"),
        ("/proc/out", True, "cannot write here"),
        ("afile/out.json", False, "is a file, not a folder"),
        ("afile", True, "is a file; expected a folder"),
        ("adir", False, "is a folder; expected a file"),
        ("fifo", False, "is not a regular file"),
        ("broken", False, "broken symbolic link"),
    ],
)
def test_a_place_that_cannot_be_written_is_one_line(tmp_path, target, folder, message) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    path = tmp_path / target
    with pytest.raises(InputError) as info:
        check_output(path, folder=folder)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError):  # the writers check the same way
        if folder:
            with atomic_dir(path):
                pass
        else:
            write_json(path, {})
    assert (tmp_path / "afile").read_text() == "x"


def test_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    # a process that is gone: its pid names the temporaries it left
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    stale_dir = tmp_path / f".out.{pid}-abcd1234.tmp"
    stale_dir.mkdir()
    (stale_dir / "bvpi_sft_train.jsonl").write_text("half")
    stale_file = tmp_path / f".out.{pid}-efgh5678.tmp"
    stale_file.write_text("half")
    live = tmp_path / f".out.{os.getppid()}-ijkl9012.tmp"  # a running process: kept
    live.mkdir()
    unrelated = tmp_path / ".out.backup.tmp"  # not our naming: kept
    unrelated.write_text("x")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("a")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["out", live.name, unrelated.name])
