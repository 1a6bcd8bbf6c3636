"""`ftkit data list` and `ftkit data fetch`, through `ftkit.cli.main` (offline, from the data mirror)."""

from __future__ import annotations

import os

import pytest

from ftkit.cli import main
from ftkit.io.assets import ASSETS, DEFAULT_ASSETS


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache; the configured data mirror; no network."""
    assert os.environ.get("FTKIT_DATA_MIRROR"), "set FTKIT_DATA_MIRROR (see README) to run tests"
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    return tmp_path / "home"


def table(out: str) -> dict[str, list[str]]:
    """Rows of the `ftkit data list` table, split into words, keyed by asset name."""
    found = {}
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in ASSETS:
            found[words[0]] = words
    return found


def test_list_shows_every_asset_missing_then_cached(home, capsys):
    assert main(["data", "list"]) == 0
    before = table(capsys.readouterr().out)
    assert set(before) == set(ASSETS)
    assert all("missing" in words for words in before.values())

    assert main(["data", "fetch", "instruction-data", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    after = table(out)
    assert "cached" in after["instruction-data"]
    assert "203.5 kB" in " ".join(after["instruction-data"])
    assert str(home / "instruction-data.json") in after["instruction-data"]
    assert "missing" in after["alpaca-data"]
    assert f"cache:  {home}" in out


def test_list_flags_a_changed_file_as_corrupt(home, capsys):
    main(["data", "fetch", "instruction-data-with-response", "--no-progress"])
    (home / "instruction-data-with-response.json").write_text("[]")
    capsys.readouterr()
    main(["data", "list"])
    assert "corrupt" in table(capsys.readouterr().out)["instruction-data-with-response"]


def test_fetch_default_gets_everything_but_alpaca(home, capsys):
    assert main(["data", "fetch", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for name in DEFAULT_ASSETS:
        assert f"ok  {name}" in out
    assert "alpaca-data" not in out
    assert (home / "SMSSpamCollection").is_file() and not (home / "alpaca_data.json").exists()


def test_fetch_failure_exits_nonzero_with_the_clear_error(home, capsys):
    # alpaca-data is not in the mirror: offline, it cannot be had.
    assert main(["data", "fetch", "gpt2-vocab-bpe", "alpaca-data", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "ok  gpt2-vocab-bpe" in captured.out, "one failure must not stop the others"
    assert "alpaca_data.json" in captured.err and "FTKIT_OFFLINE=1" in captured.err
    assert "1 of 2 failed: alpaca-data" in captured.err


def test_fetch_unknown_name(home, capsys):
    assert main(["data", "fetch", "spam"]) == 1
    assert "unknown asset 'spam'" in capsys.readouterr().err


def test_data_without_subcommand_prints_help(capsys):
    assert main(["data"]) == 2
    assert "list" in capsys.readouterr().out
