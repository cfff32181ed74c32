"""Atomic writes: the old file survives a failed write; no temporary file is left behind."""

import pytest

from lyapcert.fileio import atomic_target, write_text_atomic


def test_write_replaces_and_leaves_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "a.json", "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = write_text_atomic(tmp_path / "a.png", "old")
    with pytest.raises(RuntimeError), atomic_target(path) as tmp:
        assert tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
