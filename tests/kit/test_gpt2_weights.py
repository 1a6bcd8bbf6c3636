"""GPT-2 weights machinery (`ftkit.io.gpt2`, `ftkit.io.tf_checkpoint`, `ftkit weights`): download, verify, read.

A TensorFlow checkpoint with OpenAI's variable names is written once per module and
served by pytest-httpserver at the URL layout of OpenAI's bucket;
`download_and_load_gpt2` downloads it, reads it with TensorFlow, and the book's
`load_weights_into_gpt` loads it. The oracle is Hugging Face's independent GPT-2.
"""

from __future__ import annotations

import hashlib
import sys

import pytest
import torch

from ftkit.asserts import assert_tensor_equal
from ftkit.cli import main as ftkit_main
from ftkit.io import gpt2
from ftkit.io.assets import AssetError
from ftkit.io.tf_checkpoint import load_gpt2_params_from_tf_ckpt
from reference.weights import load_weights_into_gpt
from tests.tiny_gpt2 import (
    CTX,
    SETTINGS,
    VOCAB,
    D,
    hf_model_from_arrays,
    openai_arrays,
    tiny_cfg,
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
    settings, params = gpt2.download_and_load_gpt2("124M", models_dir=tmp_path / "models")

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


def test_unknown_size_lists_the_sizes():
    with pytest.raises(ValueError, match=r"'125M'.*124M, 355M, 774M, 1558M"):
        gpt2.download_and_load_gpt2("125M")


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


def test_cli_fetch_and_list(served, tmp_path, capsys):
    models = tmp_path / "models"
    assert ftkit_main(["weights", "fetch", "124M", "--dir", str(models), "--quiet"]) == 0
    assert "124M" in capsys.readouterr().out
    assert ftkit_main(["weights", "list", "--dir", str(models)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["124M"][1] == "7/7" and rows["124M"][-1] == str(models.resolve() / "124M")
    assert rows["355M"][1] == "0/7"


def test_cli_fetch_unknown_size_and_unreachable_server(served, tmp_path, capsys, monkeypatch):
    assert ftkit_main(["weights", "fetch", "42M", "--dir", str(tmp_path)]) == 2
    assert "124M, 355M" in capsys.readouterr().err
    monkeypatch.setattr(gpt2, "GPT2_URL", served.url_for("/gone/{size}/{file}"))
    assert ftkit_main(["weights", "fetch", "124M", "--dir", str(tmp_path), "--quiet"]) == 1
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
