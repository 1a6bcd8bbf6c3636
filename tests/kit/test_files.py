"""Atomic writes (reference/files.py): a file is replaced whole or left as it was."""

from __future__ import annotations

import os

import pytest

from ftkit.io.files import atomic_path, write_bytes_atomic, write_text_atomic


def test_atomic_path_replaces_the_file_when_the_block_ends(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent, "the temp file must sit beside the target (same disk)"
        tmp.write_text("new")
        assert not target.exists(), "the target appears only when the block ends"
    assert target.read_text() == "new"
    assert os.listdir(target.parent) == ["out.json"], "no temporary file is left behind"


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = write_text_atomic(tmp_path / "scores.jsonl", "old\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half a fi")
        raise KeyboardInterrupt  # Ctrl-C during the write
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["scores.jsonl"]


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_bytes_atomic(tmp_path / "model.pth", b"\x00\x01")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"\x00\x01"
    assert path.stat().st_mode & 0o777 == 0o644
