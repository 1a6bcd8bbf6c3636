"""Files are verified when used (data: every time; weights: on download and by `ftkit weights verify`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ftkit.cli import main
from ftkit.io.assets import ASSETS, asset_path, fetch


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache; the configured data mirror; no network."""
    assert os.environ.get("FTKIT_DATA_MIRROR"), "set FTKIT_DATA_MIRROR (see README) to run tests"
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    return tmp_path / "home"


def corrupt_in_place(path: Path) -> None:
    """Flip one byte, keeping the size and the modification time (what a stamp check trusts)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_same_size_same_mtime_corrupted_data_file_is_refused_and_refetched(home, capsys):
    path = fetch("instruction-data", progress=False)
    good = path.read_bytes()
    corrupt_in_place(path)
    assert fetch("instruction-data", progress=False) == path
    assert path.read_bytes() == good, "the corrupt copy must be replaced from the mirror"
    assert "failed verification" in capsys.readouterr().err


def test_the_recipes_loaders_never_read_a_corrupted_file(home):
    from ftkit.data.instruction import load_instruction_data

    path = fetch("instruction-data", progress=False)
    good = path.read_bytes()
    corrupt_in_place(path)
    assert len(load_instruction_data()) == 1100
    assert path.read_bytes() == good


def test_data_list_and_fetch_tell_the_truth_about_a_corrupted_file(home, capsys):
    assert main(["data", "fetch", "instruction-data", "--no-progress"]) == 0
    path = asset_path("instruction-data")
    good = path.read_bytes()
    corrupt_in_place(path)
    capsys.readouterr()

    assert main(["data", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "instruction-data " in line)
    assert "corrupt" in row and "cached" not in row, row

    assert main(["data", "fetch", "instruction-data", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "failed verification" in captured.err and "ok  instruction-data" in captured.out
    assert path.read_bytes() == good


# ------------------------------------------------------------------ weights


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_weights_verify_finds_a_same_size_same_mtime_corrupted_book_file(
    home, tmp_path, monkeypatch, capsys
):
    """The book's .pth (hash recorded on first download) re-hashed by `ftkit weights verify`."""
    from ftkit.io.gpt2 import book_asset

    models = tmp_path / "models"
    asset = book_asset("124M", models)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / asset.filename).write_bytes(b"pretend weights " * 64)
    monkeypatch.setenv("FTKIT_DATA_MIRROR", str(mirror))
    path = fetch(asset, progress=False)  # records its hash, stamps it
    capsys.readouterr()
    args = ["weights", "verify", "124M", "--source", "book", "--dir", str(models)]
    assert main(args) == 0
    assert "OK       124M   book    gpt2-small-124M.pth" in capsys.readouterr().out

    corrupt_in_place(path)
    assert fetch(asset, progress=False) == path, "weights trust their stamp on use (gigabytes)"
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "CORRUPT" in out and "ftkit weights fetch 124M --source book" in out, out
    assert not path.with_name(path.name + ".verified").exists(), "the next use re-hashes it"


def test_weights_verify_checks_hf_files_against_the_hubs_content_address(tmp_path, capsys):
    from ftkit.io.hf_hub import HF_FILES, hf_snapshot_dir

    models = tmp_path / "hf"
    snapshot = hf_snapshot_dir("355M", models)
    blobs = snapshot.parent.parent / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    for name in HF_FILES:
        body = f"{name} body".encode()
        (blobs / sha(body)).write_bytes(body)
        (snapshot / name).symlink_to(blobs / sha(body))
    args = ["weights", "verify", "355M", "--source", "hf", "--dir", str(models)]
    assert main(args) == 0
    assert capsys.readouterr().out.count("OK ") == 2

    corrupt_in_place((snapshot / "model.safetensors").resolve())
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "CORRUPT  355M   hf      model.safetensors" in out, out


def test_weights_verify_with_nothing_cached_says_so(tmp_path, capsys):
    assert main(["weights", "verify", "124M", "--dir", str(tmp_path)]) == 1
    assert "no cached GPT-2 files" in capsys.readouterr().err


def test_every_registered_data_file_is_rehashed_on_use():
    assert all(asset.rehash_on_use for asset in ASSETS.values())
