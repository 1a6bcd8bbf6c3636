"""`ftkit.io.assets.fetch`: cache, mirror, download (local HTTP server only), verification."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from werkzeug import Response

from ftkit.io import assets
from ftkit.io.assets import ASSETS, Asset, AssetError, fetch

BODY = b"instruction, input, output\n" * 50


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def cache_leftovers(home: Path) -> list[str]:
    """Everything in the cache folder (to prove a failed fetch left nothing behind)."""
    return sorted(p.name for p in home.rglob("*")) if home.exists() else []


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty cache, no mirror, network allowed (the network is the local test server)."""
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FTKIT_DATA_MIRROR", raising=False)
    monkeypatch.delenv("FTKIT_OFFLINE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    monkeypatch.setenv("FTKIT_DATA_MIRROR", str(folder))
    return folder


# ---------------------------------------------------------------- download


def test_download_success_verifies_and_caches(home, httpserver):
    httpserver.expect_request("/data/file.json").respond_with_data(BODY)
    asset = Asset("t", httpserver.url_for("/data/file.json"), sha256=sha(BODY))

    path = fetch(asset, progress=False)

    assert path == home / "file.json"
    assert path.read_bytes() == BODY
    assert fetch(asset, progress=False) == path  # second call: from the cache
    assert len(httpserver.log) == 1, "a verified cached file must not be downloaded again"
    assert cache_leftovers(home) == ["file.json", "file.json.verified"]


def test_subdir_places_file_in_cache_subfolder(home, httpserver):
    httpserver.expect_request("/m/hparams.json").respond_with_data(b"{}")
    asset = Asset("w", httpserver.url_for("/m/hparams.json"), sha256=sha(b"{}"), subdir="gpt2/124M")
    assert fetch(asset, progress=False) == home / "gpt2" / "124M" / "hparams.json"


def test_404_on_primary_falls_back_to_backup(home, httpserver):
    httpserver.expect_request("/primary.json").respond_with_data("gone", status=404)
    httpserver.expect_request("/backup.json").respond_with_data(BODY)
    asset = Asset(
        "t",
        httpserver.url_for("/primary.json"),
        sha256=sha(BODY),
        backup_url=httpserver.url_for("/backup.json"),
    )
    path = fetch(asset, progress=False)
    assert path.name == "primary.json", "the cache name comes from the primary URL"
    assert path.read_bytes() == BODY


def test_both_urls_failing_names_both(home, httpserver):
    httpserver.expect_request("/a.json").respond_with_data("no", status=404)
    httpserver.expect_request("/b.json").respond_with_data("no", status=503)
    asset = Asset(
        "t",
        httpserver.url_for("/a.json"),
        sha256=sha(BODY),
        backup_url=httpserver.url_for("/b.json"),
    )
    with pytest.raises(AssetError) as err:
        fetch(asset, progress=False)
    text = str(err.value)
    assert asset.url in text and asset.backup_url in text
    assert "404" in text and "503" in text
    assert cache_leftovers(home) == []


def test_truncated_body_is_an_error_and_leaves_nothing(home, httpserver):
    # A generator body keeps werkzeug from fixing our lying Content-Length.
    short = Response(iter([BODY[:100]]), headers={"Content-Length": str(len(BODY))})
    httpserver.expect_request("/t.json").respond_with_response(short)
    asset = Asset("t", httpserver.url_for("/t.json"), sha256=sha(BODY))
    with pytest.raises(AssetError, match=rf"truncated download.*{len(BODY)} bytes.*Content-Length"):
        fetch(asset, progress=False)
    assert cache_leftovers(home) == []


def test_truncated_primary_then_good_backup(home, httpserver):
    short = Response(iter([BODY[:10]]), headers={"Content-Length": str(len(BODY))})
    httpserver.expect_request("/p.json").respond_with_response(short)
    httpserver.expect_request("/b.json").respond_with_data(BODY)
    asset = Asset(
        "t",
        httpserver.url_for("/p.json"),
        sha256=sha(BODY),
        backup_url=httpserver.url_for("/b.json"),
    )
    assert fetch(asset, progress=False).read_bytes() == BODY


def test_wrong_checksum_is_an_error_and_file_deleted(home, httpserver):
    httpserver.expect_request("/t.json").respond_with_data(BODY + b"tampered")
    wanted = sha(BODY)
    asset = Asset("t", httpserver.url_for("/t.json"), sha256=wanted)
    with pytest.raises(AssetError) as err:
        fetch(asset, progress=False)
    text = str(err.value)
    for part in ("t.json", asset.url, wanted, sha(BODY + b"tampered")):
        assert part in text, f"the error should name {part!r}:\n{text}"
    assert cache_leftovers(home) == []


def test_body_without_content_length(home, httpserver):
    httpserver.expect_request("/t.json").respond_with_response(Response(iter([BODY[:7], BODY[7:]])))
    asset = Asset("t", httpserver.url_for("/t.json"), sha256=sha(BODY))
    assert fetch(asset, progress=True).read_bytes() == BODY


def test_gzip_despite_identity_is_decoded_not_called_truncated(home, httpserver):
    packed = gzip.compress(BODY)
    httpserver.expect_request("/t.json", headers={"Accept-Encoding": "identity"}).respond_with_data(
        packed, headers={"Content-Encoding": "gzip"}
    )
    asset = Asset("t", httpserver.url_for("/t.json"), sha256=sha(BODY))
    assert fetch(asset, progress=False).read_bytes() == BODY


def test_interrupted_download_leaves_nothing(home, httpserver, monkeypatch):
    import requests

    httpserver.expect_request("/t.json").respond_with_data(BODY)

    def interrupted(self, chunk_size=1, decode_unicode=False):
        yield b"partial"
        raise KeyboardInterrupt

    monkeypatch.setattr(requests.models.Response, "iter_content", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch(Asset("t", httpserver.url_for("/t.json"), sha256=sha(BODY)), progress=False)
    assert cache_leftovers(home) == []


def test_zip_download_extracts_member(home, httpserver):
    httpserver.expect_request("/pack.zip").respond_with_data(
        zip_bytes({"readme.txt": b"x", "Data": BODY})
    )
    asset = Asset("z", httpserver.url_for("/pack.zip"), sha256=sha(BODY), member="Data")
    path = fetch(asset, progress=False)
    assert path == home / "Data"
    assert path.read_bytes() == BODY
    assert cache_leftovers(home) == ["Data", "Data.verified"], "the zip itself is not kept"


def test_progress_bar_does_not_break_non_tty(home, httpserver, capsys):
    httpserver.expect_request("/t.json").respond_with_data(BODY)
    asset = Asset("t", httpserver.url_for("/t.json"), sha256=sha(BODY))
    assert fetch(asset, progress=True).read_bytes() == BODY
    captured = capsys.readouterr()
    assert captured.out == "", "progress goes to stderr, never into stdout"


def test_unpinned_asset_records_hash_and_verifies_later(home, httpserver, capsys):
    httpserver.expect_request("/alpaca.json").respond_with_data(BODY)
    asset = Asset("unpinned", httpserver.url_for("/alpaca.json"), sha256=None)

    path = fetch(asset, progress=False)
    pin = path.with_name("alpaca.json.sha256")
    assert pin.read_text().split()[0] == sha(BODY)
    assert "not" in capsys.readouterr().err and sha(BODY) in pin.read_text()

    # Upstream changes: a re-download no longer matches the recorded hash.
    path.unlink()
    httpserver.clear()
    httpserver.expect_request("/alpaca.json").respond_with_data(BODY + b"changed")
    with pytest.raises(AssetError, match="checksum mismatch"):
        fetch(asset, progress=False)


def test_unreadable_recorded_hash_is_a_clear_error(home, httpserver):
    home.mkdir()
    (home / "a.json.sha256").write_text("")
    httpserver.expect_request("/a.json").respond_with_data(BODY)
    asset = Asset("unpinned", httpserver.url_for("/a.json"), sha256=None)
    with pytest.raises(AssetError, match=r"a\.json\.sha256 should hold the SHA-256"):
        fetch(asset, progress=False)


def test_size_only_asset_checks_size(home, httpserver):
    httpserver.expect_request("/w.bin").respond_with_data(BODY)
    asset = Asset("w", httpserver.url_for("/w.bin"), size=len(BODY) + 1)
    with pytest.raises(AssetError, match=rf"expected {len(BODY) + 1} bytes, got {len(BODY)}"):
        fetch(asset, progress=False)
    assert cache_leftovers(home) == []


# ---------------------------------------------------------------- offline and mirror


def test_offline_error_names_file_mirror_and_where_it_looked(home, mirror, monkeypatch, httpserver):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    asset = Asset("t", httpserver.url_for("/sub/t.json"), sha256=sha(BODY), subdir="gpt2/124M")
    with pytest.raises(AssetError) as err:
        fetch(asset, progress=False)
    text = str(err.value)
    assert "t.json" in text and "FTKIT_DATA_MIRROR" in text and "FTKIT_OFFLINE=1" in text
    assert str(mirror / "gpt2" / "124M" / "t.json") in text and str(mirror / "t.json") in text
    assert len(httpserver.log) == 0, "offline mode must not touch the network"


def test_offline_without_mirror_says_mirror_unset(home, monkeypatch):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    with pytest.raises(AssetError, match="FTKIT_DATA_MIRROR is not set"):
        fetch(Asset("t", "https://example.invalid/t.json", sha256=sha(BODY)), progress=False)


def test_mirror_copy_plain_file(home, mirror, monkeypatch):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "t.json").write_bytes(BODY)
    path = fetch(Asset("t", "https://example.invalid/x/t.json", sha256=sha(BODY)), progress=False)
    assert path == home / "t.json" and path.read_bytes() == BODY
    assert (mirror / "t.json").exists(), "the mirror is read, never moved"


def test_mirror_subdir_is_searched_first(home, mirror, monkeypatch):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "124M").mkdir()
    (mirror / "124M" / "t.bin").write_bytes(BODY)
    (mirror / "t.bin").write_bytes(b"wrong model size's file")
    asset = Asset("t", "https://example.invalid/t.bin", sha256=sha(BODY), subdir="124M")
    assert fetch(asset, progress=False).read_bytes() == BODY


def test_absolute_subdir_is_the_folder_and_mirror_uses_its_last_part(
    home, mirror, monkeypatch, tmp_path
):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "355M").mkdir()
    (mirror / "355M" / "t.bin").write_bytes(BODY)
    own = tmp_path / "models" / "355M"
    asset = Asset("t", "https://example.invalid/t.bin", sha256=sha(BODY), subdir=str(own))
    assert fetch(asset, progress=False) == own / "t.bin"
    assert (own / "t.bin").read_bytes() == BODY


def test_mirror_zip_extracts_member_by_percent_decoded_name(home, mirror, monkeypatch):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "a+b.zip").write_bytes(zip_bytes({"Data": BODY}))
    asset = Asset("z", "https://example.invalid/a%2Bb.zip", sha256=sha(BODY), member="Data")
    assert fetch(asset, progress=False).read_bytes() == BODY


def test_mirror_file_with_wrong_hash_is_refused(home, mirror, monkeypatch):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "t.json").write_bytes(b"corrupt")
    with pytest.raises(AssetError, match=r"checksum mismatch.*mirror"):
        fetch(Asset("t", "https://example.invalid/t.json", sha256=sha(BODY)), progress=False)
    assert cache_leftovers(home) == []


def test_zip_slip_member_is_refused(home, mirror, monkeypatch, tmp_path):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "evil.zip").write_bytes(zip_bytes({"../../evil.txt": BODY}))
    asset = Asset(
        "z", "https://example.invalid/evil.zip", sha256=sha(BODY), member="../../evil.txt"
    )
    with pytest.raises(AssetError, match="outside"):
        fetch(asset, progress=False)
    assert not list(tmp_path.rglob("evil.txt"))


def test_zip_without_the_member_lists_what_it_holds(home, mirror, monkeypatch):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "p.zip").write_bytes(zip_bytes({"Other": BODY}))
    asset = Asset("z", "https://example.invalid/p.zip", sha256=sha(BODY), member="Data")
    with pytest.raises(AssetError, match="no member 'Data'.*Other"):
        fetch(asset, progress=False)


# ---------------------------------------------------------------- cache verification


def test_corrupted_cached_file_is_detected_and_refetched(home, mirror, monkeypatch, capsys):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "t.json").write_bytes(BODY)
    asset = Asset("t", "https://example.invalid/t.json", sha256=sha(BODY))
    path = fetch(asset, progress=False)

    path.write_bytes(b"bit rot")
    assert fetch(asset, progress=False).read_bytes() == BODY
    assert "failed verification" in capsys.readouterr().err


def test_corrupted_cached_file_is_never_used_when_refetch_impossible(home, mirror, monkeypatch):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    (mirror / "t.json").write_bytes(BODY)
    asset = Asset("t", "https://example.invalid/t.json", sha256=sha(BODY))
    path = fetch(asset, progress=False)
    path.write_bytes(BODY[:-1] + b"!")  # same size, different bytes
    (mirror / "t.json").unlink()
    with pytest.raises(AssetError, match="not cached"):
        fetch(asset, progress=False)
    assert not path.exists()


def test_unstamped_cached_file_is_rehashed_and_accepted(home):
    home.mkdir()
    (home / "t.json").write_bytes(BODY)  # e.g. copied in by hand
    path = fetch(Asset("t", "https://example.invalid/t.json", sha256=sha(BODY)), progress=False)
    stamp = json.loads(path.with_name("t.json.verified").read_text())
    assert stamp["sha256"] == sha(BODY) and stamp["size"] == len(BODY)


def test_cache_dir_defaults_to_user_cache(monkeypatch):
    monkeypatch.delenv("FTKIT_HOME", raising=False)
    assert "llm-finetune-kit" in str(assets.cache_dir())


def test_unknown_asset_name_lists_known_ones():
    with pytest.raises(AssetError, match="unknown asset 'nope'.*instruction-data"):
        fetch("nope")


# ---------------------------------------------------------------- the registry, on the real mirror


def test_registry_filenames():
    assert ASSETS["sms-spam-collection"].filename == "SMSSpamCollection"
    assert ASSETS["sms-spam-collection"].download_name == "sms+spam+collection.zip"
    assert ASSETS["alpaca-data"].filename == "alpaca_data.json"
    assert ASSETS["alpaca-data"].sha256 is None


@pytest.mark.parametrize("name", assets.DEFAULT_ASSETS)
def test_registered_assets_verify_from_the_data_mirror(name, tmp_path, monkeypatch):
    """Every asset the pipelines read is in the configured mirror and matches its pinned hash."""
    assert os.environ.get("FTKIT_DATA_MIRROR"), "set FTKIT_DATA_MIRROR (see README) to run tests"
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path))
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    path = fetch(name, progress=False)
    assert assets.sha256_of(path) == ASSETS[name].sha256


def test_sms_spam_extracted_from_the_mirrors_zip(tmp_path, monkeypatch):
    """The book's SMS zip (§6.2) yields the pinned `SMSSpamCollection` when only the zip is there."""
    real = Path(os.environ["FTKIT_DATA_MIRROR"]) / "sms+spam+collection.zip"
    only_zip = tmp_path / "mirror"
    only_zip.mkdir()
    (only_zip / real.name).write_bytes(real.read_bytes())
    monkeypatch.setenv("FTKIT_DATA_MIRROR", str(only_zip))
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    path = fetch("sms-spam-collection", progress=False)
    assert assets.sha256_of(path) == ASSETS["sms-spam-collection"].sha256
    assert len(path.read_text(encoding="utf-8").splitlines()) == 5574
