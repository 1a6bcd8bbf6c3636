"""GPT-2 weights machinery (`ftkit.io.gpt2`, `ftkit.io.tf_checkpoint`, `ftkit weights`): download, verify, read.

A TensorFlow checkpoint with OpenAI's variable names is written once per module and
served by pytest-httpserver at the URL layout of OpenAI's bucket;
`download_and_load_gpt2` downloads it, reads it with TensorFlow, and the book's
`load_weights_into_gpt` loads it. The oracle is Hugging Face's independent GPT-2.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys

import pytest
import torch

from ftkit.asserts import assert_tensor_equal
from ftkit.cli import main as ftkit_main
from ftkit.io import gpt2, hf_hub
from ftkit.io.assets import AssetError
from ftkit.io.tf_checkpoint import load_gpt2_params_from_tf_ckpt
from reference.weights import load_weights_into_gpt
from tests.tiny_gpt2 import (
    CTX,
    SETTINGS,
    VOCAB,
    D,
    book_params,
    hf_model_from_arrays,
    openai_arrays,
    tiny_cfg,
    write_book_pth,
    write_hf_files,
    write_tf_checkpoint,
)

WHY = "the downloaded, TensorFlow-read checkpoint must load into GPTModel as GPT-2 (book §5.5)"


@pytest.fixture(scope="module")
def arrays():
    return openai_arrays()


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, arrays):
    """A folder with the seven files of a GPT-2 size, for the tiny model (TensorFlow imported once, here)."""
    return write_tf_checkpoint(tmp_path_factory.mktemp("openai"), arrays)


@pytest.fixture(scope="module")
def checkpoint_files(checkpoint_dir) -> dict[str, bytes]:
    files = {name: (checkpoint_dir / name).read_bytes() for name in gpt2.GPT2_FILES}
    assert all(files.values())
    return files


@pytest.fixture
def served(httpserver, monkeypatch, tmp_path, checkpoint_files):
    """OpenAI's bucket layout on a local server; the kit pointed at it, with the tiny files' hashes."""
    for name, body in checkpoint_files.items():
        httpserver.expect_request(f"/gpt-2/models/124M/{name}").respond_with_data(body)
    monkeypatch.setattr(gpt2, "GPT2_URL", httpserver.url_for("/gpt-2/models/{size}/{file}"))
    monkeypatch.setattr(gpt2, "GPT2_BACKUP_URL", httpserver.url_for("/backup/{size}/{file}"))
    monkeypatch.setitem(
        gpt2.GPT2_FILE_SHA256,
        "124M",
        {n: hashlib.sha256(b).hexdigest() for n, b in checkpoint_files.items()},
    )
    monkeypatch.setitem(
        gpt2.GPT2_FILE_SIZES, "124M", {n: len(b) for n, b in checkpoint_files.items()}
    )
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FTKIT_OFFLINE", raising=False)
    monkeypatch.delenv("FTKIT_DATA_MIRROR", raising=False)
    return httpserver


def test_download_tf_load_and_load_weights_end_to_end(served, tmp_path, ref, arrays):
    settings, params = gpt2.download_and_load_gpt2(
        "124M", models_dir=tmp_path / "models", source="openai"
    )

    assert settings == SETTINGS
    assert all((tmp_path / "models" / "124M" / f).is_file() for f in gpt2.GPT2_FILES)
    assert params["blocks"][1]["attn"]["c_attn"]["w"].shape == (D, 3 * D), (
        "Conv1D's leading 1 is dropped"
    )

    gpt = ref.GPTModel(tiny_cfg(ref)).eval()
    load_weights_into_gpt(gpt, params)
    token_ids = torch.randint(0, VOCAB, (2, CTX), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = gpt(token_ids)
        theirs = hf_model_from_arrays(arrays)(token_ids).logits
    assert_tensor_equal(ours, theirs, name="logits", why=WHY, atol=1e-5)


def test_second_fetch_uses_the_cache_and_refetches_only_what_is_missing(served):
    folder = gpt2.download_gpt2("124M", progress=False)
    assert len(served.log) == len(gpt2.GPT2_FILES)
    assert gpt2.cached_gpt2_files("124M") == list(gpt2.GPT2_FILES)

    (folder / "hparams.json").unlink()
    assert gpt2.download_gpt2("124M", progress=False) == folder
    assert [req.path for req, _ in served.log[len(gpt2.GPT2_FILES) :]] == [
        "/gpt-2/models/124M/hparams.json"
    ]


def test_corrupt_download_is_refused_naming_the_file(served, monkeypatch):
    bad = dict(gpt2.GPT2_FILE_SHA256["124M"], **{"model.ckpt.index": "0" * 64})
    monkeypatch.setitem(gpt2.GPT2_FILE_SHA256, "124M", bad)
    with pytest.raises(AssetError, match=r"model\.ckpt\.index"):
        gpt2.download_gpt2("124M", progress=False)
    assert "model.ckpt.index" not in gpt2.cached_gpt2_files("124M")


def test_unknown_size_or_source_lists_the_choices():
    with pytest.raises(ValueError, match=r"'125M'.*124M, 355M, 774M, 1558M"):
        gpt2.download_and_load_gpt2("125M")
    with pytest.raises(ValueError, match=r"'tf'.*hf, openai, book"):
        gpt2.download_and_load_gpt2("124M", source="tf")


def test_known_hashes_and_sizes_cover_every_file():
    for size in gpt2.GPT2_SIZES:
        assert set(gpt2.GPT2_FILE_SHA256[size]) == set(gpt2.GPT2_FILES)
        assert set(gpt2.GPT2_FILE_SIZES[size]) == set(gpt2.GPT2_FILES)
    assets = gpt2.gpt2_assets("355m")
    assert [a.url for a in assets][3] == (
        "https://openaipublic.blob.core.windows.net/gpt-2/models/355M/model.ckpt.data-00000-of-00001"
    )
    assert assets[3].backup_url.startswith(
        "https://f001.backblazeb2.com/file/LLMs-from-scratch/gpt2/355M/"
    )


def test_missing_tensorflow_names_the_tf_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"pip install 'llm-finetune-kit\[tf\]'"):
        load_gpt2_params_from_tf_ckpt(tmp_path / "model.ckpt", SETTINGS)


def openai_rows(out: str) -> dict[str, list[str]]:
    """`ftkit weights list`'s first table (OpenAI's files, under its title), by size."""
    title, *table = out.split("\n\n")[0].splitlines()
    assert title.startswith("openai: ")  # every table names its source
    assert table[0].split() == ["size", "files", "MB", "folder"]
    return {line.split()[0]: line.split() for line in table[1:]}


def test_cli_fetch_and_list(served, tmp_path, capsys):
    models = tmp_path / "models"
    fetch = ["weights", "fetch", "124M", "--source", "openai", "--dir", str(models), "--quiet"]
    assert ftkit_main(fetch) == 0
    assert "124M" in capsys.readouterr().out
    assert ftkit_main(["weights", "list", "--dir", str(models)]) == 0
    rows = openai_rows(capsys.readouterr().out)
    assert rows["124M"][1] == "7/7" and rows["124M"][-1] == str(models.resolve() / "124M")
    assert rows["355M"][1] == "0/7"


def test_cli_fetch_unknown_size_and_unreachable_server(served, tmp_path, capsys, monkeypatch):
    assert ftkit_main(["weights", "fetch", "42M", "--dir", str(tmp_path)]) == 2
    assert "124M, 355M" in capsys.readouterr().err
    monkeypatch.setattr(gpt2, "GPT2_URL", served.url_for("/gone/{size}/{file}"))
    fetch = ["weights", "fetch", "124M", "--source", "openai", "--dir", str(tmp_path), "--quiet"]
    assert ftkit_main(fetch) == 1
    err = capsys.readouterr().err
    assert "/gone/124M/checkpoint" in err and "rerun" in err


def test_tf_reader_matches_the_books_package(checkpoint_dir):
    book = pytest.importorskip("llms_from_scratch.ch05", reason="needs the book extra")
    ours = load_gpt2_params_from_tf_ckpt(checkpoint_dir / "model.ckpt", SETTINGS)
    theirs = book.load_gpt2_params_from_tf_ckpt(str(checkpoint_dir / "model.ckpt"), SETTINGS)

    def flat(tree, prefix=""):
        items = tree.items() if isinstance(tree, dict) else enumerate(tree)
        for key, value in items:
            if isinstance(value, dict | list):
                yield from flat(value, f"{prefix}{key}/")
            else:
                yield f"{prefix}{key}", value

    ours, theirs = dict(flat(ours)), dict(flat(theirs))
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        assert_tensor_equal(torch.from_numpy(ours[key]), torch.from_numpy(value), name=key)


# ---------------------------------------------------------------------------
# Three sources: Hugging Face safetensors, OpenAI's TF checkpoint, the book's .pth
# ---------------------------------------------------------------------------
# The Hugging Face Hub is faked by pytest-httpserver at the Hub's URL layout
# (`/<repo>/resolve/<commit>/<file>`, answering HEAD with the `X-Repo-Commit` and
# `ETag` headers hf_hub_download reads); the kit is pointed at it with HF_ENDPOINT,
# which `ftkit.io.hf_hub` reads at call time. Nothing reaches the internet.

HF_REPO, HF_COMMIT = hf_hub.HF_REPOS["124M"]
BOOK_PATH = "/rasbt/gpt2-from-scratch-pytorch/resolve/main/{file}"


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def git_blob_id(body: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory, arrays) -> dict[str, bytes]:
    """The tiny model saved by transformers' save_pretrained, or (without transformers) by safetensors."""
    folder = tmp_path_factory.mktemp("hf")
    write_hf_files(
        folder, arrays, via_transformers=importlib.util.find_spec("transformers") is not None
    )
    return {name: (folder / name).read_bytes() for name in hf_hub.HF_FILES}


@pytest.fixture(scope="module")
def book_file(tmp_path_factory, arrays, ref) -> bytes:
    return write_book_pth(tmp_path_factory.mktemp("book") / "tiny.pth", arrays, ref).read_bytes()


def serve_hub(httpserver, files: dict[str, bytes], etags: dict[str, str] | None = None) -> None:
    for name, body in files.items():
        lfs = name.endswith(".safetensors")  # the Hub's etag: LFS sha256, else the git blob id
        etag = (etags or {}).get(name) or (sha256(body) if lfs else git_blob_id(body))
        httpserver.expect_request(f"/{HF_REPO}/resolve/{HF_COMMIT}/{name}").respond_with_data(
            body, headers={"X-Repo-Commit": HF_COMMIT, "ETag": f'"{etag}"'}
        )


@pytest.fixture
def sources(httpserver, monkeypatch, tmp_path, hf_files, book_file):
    """A fake Hub and the book's file on the local server; tables pinned to the tiny files."""
    serve_hub(httpserver, hf_files)
    httpserver.expect_request(BOOK_PATH.format(file="gpt2-small-124M.pth")).respond_with_data(
        book_file
    )
    monkeypatch.setenv("HF_ENDPOINT", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(
        hf_hub.HF_FILE_SHA256,
        "124M",
        {"config.json": None, "model.safetensors": sha256(hf_files["model.safetensors"])},
    )
    monkeypatch.setattr(gpt2, "BOOK_URL", httpserver.url_for(BOOK_PATH))
    monkeypatch.setitem(gpt2.BOOK_FILE_SHA256, "124M", sha256(book_file))
    monkeypatch.setitem(gpt2.GPT2_SETTINGS, "124M", SETTINGS)  # the .pth carries no n_head
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FTKIT_OFFLINE", raising=False)
    monkeypatch.delenv("FTKIT_DATA_MIRROR", raising=False)
    return httpserver


def logits_of(ref, params):
    gpt = ref.GPTModel(tiny_cfg(ref)).eval()
    load_weights_into_gpt(gpt, params)
    token_ids = torch.randint(0, VOCAB, (2, CTX), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return gpt(token_ids)


@pytest.mark.parametrize("source", ["hf", "openai", "book"])
def test_every_source_gives_the_same_logits(source, sources, request, tmp_path, ref, arrays):
    if source == "openai":
        request.getfixturevalue("served")  # OpenAI's bucket too (skips without TensorFlow)
    settings, params = gpt2.download_and_load_gpt2(
        "124M", tmp_path / "models", source=source, progress=False
    )
    assert settings == SETTINGS
    assert_tensor_equal(
        logits_of(ref, params),
        logits_of(ref, book_params(arrays)),
        name=f"logits from the {source} source",
        why="every source holds the same GPT-2 arrays, so one loader gives one model (book §5.5)",
        atol=1e-6,
    )


def test_hf_and_book_sources_need_neither_tensorflow_nor_transformers(
    sources, monkeypatch, tmp_path
):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "transformers", None)
    for source in ("hf", "book"):
        settings, _ = gpt2.download_and_load_gpt2("124M", tmp_path, source=source, progress=False)
        assert settings == SETTINGS


def test_hf_reads_the_gpt2_repositories_key_names(tmp_path, arrays, ref):
    """The `gpt2` repos' file has no `transformer.` prefix and stores the causal-mask buffers."""
    folder = write_hf_files(tmp_path, arrays, via_transformers=False)
    settings, params = hf_hub.read_hf_gpt2(folder)
    assert settings == SETTINGS
    assert_tensor_equal(logits_of(ref, params), logits_of(ref, book_params(arrays)), name="logits")


def test_hf_files_land_in_the_hub_cache_at_the_pinned_commit_and_are_reused(sources, tmp_path):
    folder = gpt2.fetch_gpt2("124M", tmp_path, source="hf", progress=False)
    assert folder == hf_hub.hf_snapshot_dir("124M", tmp_path)
    assert f"models--{HF_REPO.replace('/', '--')}" in str(folder) and folder.name == HF_COMMIT
    served_before = len(sources.log)
    assert gpt2.fetch_gpt2("124M", tmp_path, source="hf", progress=False) == folder
    assert len(sources.log) == served_before, "a pinned commit in the cache needs no request"
    assert gpt2.cached_sources("124M", tmp_path) == ["hf"]


def test_hf_offline_without_cache_names_the_file_the_url_and_the_fix(
    sources, monkeypatch, tmp_path
):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    with pytest.raises(AssetError) as err:
        gpt2.fetch_gpt2("124M", tmp_path, source="hf", progress=False)
    message = str(err.value)
    assert "config.json" in message and f"/{HF_REPO}/resolve/{HF_COMMIT}/config.json" in message
    assert "FTKIT_OFFLINE" in message and "ftkit weights fetch 124M --source hf" in message
    assert len(sources.log) == 0


def test_hf_works_offline_once_cached(sources, monkeypatch, tmp_path):
    gpt2.fetch_gpt2("124M", tmp_path, source="hf", progress=False)
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    settings, _ = gpt2.download_and_load_gpt2("124M", tmp_path, source="hf")
    assert settings == SETTINGS


def test_hf_pinned_checksum_mismatch_names_the_file_and_url_and_is_not_kept(
    sources, monkeypatch, tmp_path
):
    monkeypatch.setitem(
        hf_hub.HF_FILE_SHA256, "124M", {"config.json": None, "model.safetensors": "0" * 64}
    )
    with pytest.raises(AssetError, match=r"checksum mismatch for model\.safetensors") as err:
        gpt2.fetch_gpt2("124M", tmp_path, source="hf", progress=False)
    assert f"/resolve/{HF_COMMIT}/model.safetensors" in str(err.value)
    assert "ftkit weights fetch 124M --source hf" in str(err.value)
    assert "model.safetensors" not in hf_hub.cached_hf_files("124M", tmp_path)


def test_hf_file_that_does_not_match_the_hubs_content_hash_is_refused(
    httpserver, sources, monkeypatch, tmp_path, hf_files
):
    """No pinned hash: the blob's content address (the Hub's LFS sha256) is checked instead."""
    httpserver.clear()
    serve_hub(httpserver, hf_files, etags={"model.safetensors": "e" * 64})
    monkeypatch.setitem(hf_hub.HF_FILE_SHA256, "124M", dict.fromkeys(hf_hub.HF_FILES))
    with pytest.raises(AssetError, match=r"expected sha256 e{64}"):
        gpt2.fetch_gpt2("124M", tmp_path, source="hf", progress=False)


def test_book_checksum_and_offline_errors_name_the_file(sources, monkeypatch, tmp_path):
    monkeypatch.setitem(gpt2.BOOK_FILE_SHA256, "124M", "0" * 64)
    with pytest.raises(AssetError, match=r"checksum mismatch for gpt2-small-124M\.pth"):
        gpt2.fetch_gpt2("124M", tmp_path, source="book", progress=False)
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    with pytest.raises(AssetError, match=r"gpt2-small-124M\.pth.*FTKIT_OFFLINE=1") as err:
        gpt2.fetch_gpt2("124M", tmp_path, source="book", progress=False)
    assert "rasbt/gpt2-from-scratch-pytorch/resolve/main/gpt2-small-124M.pth" in str(err.value)


def test_without_a_source_a_cached_one_is_used_else_hf(sources, tmp_path):
    assert gpt2.pick_source("124M", tmp_path) == "hf"
    gpt2.fetch_gpt2("124M", tmp_path, source="book", progress=False)
    assert gpt2.pick_source("124M", tmp_path) == "book"
    settings, _ = gpt2.download_and_load_gpt2("124M", tmp_path)
    assert settings == SETTINGS and gpt2.cached_sources("124M", tmp_path) == ["book"]


def test_cli_fetch_defaults_to_hf_and_list_shows_every_source(sources, tmp_path, capsys):
    models = tmp_path / "models"
    assert ftkit_main(["weights", "fetch", "124M", "--dir", str(models), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GPT-2 124M: all files verified in ") and HF_COMMIT in out
    fetch_book = ["weights", "fetch", "124m", "--source", "book", "--dir", str(models), "--quiet"]
    assert ftkit_main(fetch_book) == 0
    capsys.readouterr()

    assert ftkit_main(["weights", "list", "--dir", str(models)]) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert openai_rows(blocks[0])["124M"][1] == "0/7"
    titles = {block.splitlines()[0].split(":")[0]: block.splitlines()[2:] for block in blocks[1:]}
    assert set(titles) == {"hf", "book"}
    assert titles["hf"][0].split()[:2] == ["124M", "2/2"]
    assert titles["book"][0].split()[:2] == ["124M", "1/1"]
    assert titles["book"][1].split()[:2] == ["355M", "0/1"]

    assert ftkit_main(["weights", "list", "--dir", str(models), "--source", "hf"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("hf: ") and lines[2].split()[:2] == ["124M", "2/2"]


def test_cli_fetch_offline_error_says_what_to_do(sources, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FTKIT_OFFLINE", "1")
    assert ftkit_main(["weights", "fetch", "355M", "--dir", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "gpt2-medium" in err and "FTKIT_OFFLINE" in err and "--source hf" in err


def test_every_size_has_a_pinned_hf_commit_and_a_book_file():
    for size in gpt2.GPT2_SIZES:
        repo, commit = hf_hub.HF_REPOS[size]
        assert repo.startswith("openai-community/gpt2") and len(commit) == 40
        assert set(hf_hub.HF_FILE_SHA256[size]) == set(hf_hub.HF_FILES)
        assert gpt2.book_asset(size).url.endswith(f"-{size}.pth")
    assert gpt2.DEFAULT_SOURCE == "hf" and set(gpt2.SOURCES) == {"hf", "openai", "book"}


def test_a_source_is_one_registry_entry(tmp_path, monkeypatch):
    """Fetching, listing, verifying, reading and picking all go through `gpt2.SOURCES` (issue 21)."""
    calls = []
    folder = tmp_path / "local"
    folder.mkdir()
    local = gpt2.WeightsSource(
        "local",
        "a folder of my own",
        fetch=lambda size, models_dir, progress: calls.append(("fetch", size)) or folder,
        files=lambda size, models_dir: (folder, ["w.bin"], 1),
        verify=lambda size, models_dir: [("w.bin", "ok")],
        read=lambda path, size: ({"n_layer": 1, "from": str(path)}, {"blocks": []}),
        needs="no_such_module_for_ftkit",
    )
    monkeypatch.setitem(gpt2.SOURCES, "local", local)
    assert gpt2.check_source("LOCAL") == "local"
    settings, _ = gpt2.download_and_load_gpt2("124m", tmp_path, source="local", progress=False)
    assert settings["from"] == str(folder) and calls == [("fetch", "124M")]
    assert gpt2.source_files("124M", "local", tmp_path) == (folder, ["w.bin"], 1)
    assert gpt2.verify_gpt2("124M", "local", tmp_path) == [("w.bin", "ok")]
    assert "local" in gpt2.cached_sources("124M", tmp_path)
    # cached, but its reader's module is missing here: not picked
    assert gpt2.pick_source("124M", tmp_path) != "local"
    with pytest.raises(ValueError, match="choose one of hf, openai, book, local"):
        gpt2.check_source("nope")
