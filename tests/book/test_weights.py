"""Pretrained-weights path of book §5.5, end to end on a tiny GPT-2 checkpoint served locally.

A TensorFlow checkpoint with OpenAI's variable names (`model/h0/attn/c_attn/w`, ...)
is written once per module and served by pytest-httpserver at the URL layout of
OpenAI's bucket; `download_and_load_gpt2` then downloads it, reads it with
TensorFlow, and `load_weights_into_gpt` loads it. The oracle is Hugging Face's
independent GPT-2 given the same arrays directly (it keeps OpenAI's layout).
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest
import torch

from ftkit.asserts import assert_tensor_equal
from ftkit.cli import main as ftkit_main
from ftkit.io.assets import AssetError
from reference import weights

pytestmark = pytest.mark.stage("model")

D, N_LAYER, N_HEAD, VOCAB, CTX = 16, 2, 4, 97, 24
SETTINGS = {"n_vocab": VOCAB, "n_ctx": CTX, "n_embd": D, "n_head": N_HEAD, "n_layer": N_LAYER}
WHY = (
    "load_weights_into_gpt must transpose OpenAI's (in, out) matrices and split c_attn into "
    "query, key and value (book §5.5); then the model computes what GPT-2 computes"
)


def tiny_cfg(ref, **overrides):
    shape = {"vocab_size": VOCAB, "context_length": CTX, "emb_dim": D}
    return ref.get_config("tiny", **{**shape, "n_heads": N_HEAD, "n_layers": N_LAYER, **overrides})


def openai_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays under GPT-2's TensorFlow variable names and shapes (Conv1D: (1, in, out))."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return rng.normal(0, 0.2, shape).astype(np.float32)

    arrays = {"model/wte": r(VOCAB, D), "model/wpe": r(CTX, D)}
    for i in range(N_LAYER):
        h = f"model/h{i}"
        arrays |= {
            f"{h}/attn/c_attn/w": r(1, D, 3 * D),
            f"{h}/attn/c_attn/b": r(3 * D),
            f"{h}/attn/c_proj/w": r(1, D, D),
            f"{h}/attn/c_proj/b": r(D),
            f"{h}/mlp/c_fc/w": r(1, D, 4 * D),
            f"{h}/mlp/c_fc/b": r(4 * D),
            f"{h}/mlp/c_proj/w": r(1, 4 * D, D),
            f"{h}/mlp/c_proj/b": r(D),
            f"{h}/ln_1/g": 1 + r(D),
            f"{h}/ln_1/b": r(D),
            f"{h}/ln_2/g": 1 + r(D),
            f"{h}/ln_2/b": r(D),
        }
    return arrays | {"model/ln_f/g": 1 + r(D), "model/ln_f/b": r(D)}


@pytest.fixture(scope="module")
def arrays():
    return openai_arrays()


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, arrays):
    """A folder with the seven files of a GPT-2 size, for the tiny model (TensorFlow imported once, here)."""
    tf = pytest.importorskip("tensorflow", reason="needs the tf extra")
    folder = tmp_path_factory.mktemp("openai")
    names = sorted(arrays)
    tf.raw_ops.SaveV2(
        prefix=str(folder / "model.ckpt"),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(arrays[n]) for n in names],
    )
    (folder / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n'
    )
    (folder / "hparams.json").write_text(json.dumps(SETTINGS))
    (folder / "encoder.json").write_text('{"!": 0}')  # tokenizer files: not read by this path
    (folder / "vocab.bpe").write_text("#version: 0.2\n")
    (folder / "model.ckpt.meta").write_text("graph definition, not needed to read variables")
    return folder


@pytest.fixture(scope="module")
def checkpoint_files(checkpoint_dir) -> dict[str, bytes]:
    files = {name: (checkpoint_dir / name).read_bytes() for name in weights.GPT2_FILES}
    assert all(files.values())
    return files


@pytest.fixture
def served(httpserver, monkeypatch, tmp_path, checkpoint_files):
    """OpenAI's bucket layout on a local server; the kit pointed at it, with the tiny files' hashes."""
    for name, body in checkpoint_files.items():
        httpserver.expect_request(f"/gpt-2/models/124M/{name}").respond_with_data(body)
    monkeypatch.setattr(weights, "GPT2_URL", httpserver.url_for("/gpt-2/models/{size}/{file}"))
    monkeypatch.setattr(weights, "GPT2_BACKUP_URL", httpserver.url_for("/backup/{size}/{file}"))
    monkeypatch.setitem(
        weights.GPT2_FILE_SHA256,
        "124M",
        {n: hashlib.sha256(b).hexdigest() for n, b in checkpoint_files.items()},
    )
    monkeypatch.setitem(
        weights.GPT2_FILE_SIZES, "124M", {n: len(b) for n, b in checkpoint_files.items()}
    )
    monkeypatch.setenv("FTKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FTKIT_OFFLINE", raising=False)
    monkeypatch.delenv("FTKIT_DATA_MIRROR", raising=False)
    return httpserver


def hf_model_from_arrays(arrays):
    """Hugging Face's GPT-2 given OpenAI's arrays as they are (its Conv1D layout is OpenAI's)."""
    transformers = pytest.importorskip("transformers", reason="needs the hf extra")
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=CTX,
        n_embd=D,
        n_layer=N_LAYER,
        n_head=N_HEAD,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    sd = {}
    for name, array in arrays.items():
        key = name.removeprefix("model/").replace("/", ".")
        key = key.replace(".w", ".weight").replace(".g", ".weight").replace(".b", ".bias")
        if key.startswith("h"):
            key = "h." + key[1:]
        key = {"wte": "wte.weight", "wpe": "wpe.weight"}.get(key, key)
        sd["transformer." + key] = torch.from_numpy(
            np.squeeze(array, axis=0) if array.ndim == 3 else array
        )
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(
        k == "lm_head.weight" or k.endswith((".attn.bias", ".attn.masked_bias")) for k in missing
    )
    return model


@pytest.mark.exercise("load_weights_into_gpt")
def test_download_tf_load_and_load_weights_end_to_end(served, tmp_path, impl, ref, arrays):
    settings, params = weights.download_and_load_gpt2("124M", models_dir=tmp_path / "models")

    assert settings == SETTINGS
    assert all((tmp_path / "models" / "124M" / f).is_file() for f in weights.GPT2_FILES)
    assert params["blocks"][1]["attn"]["c_attn"]["w"].shape == (D, 3 * D), (
        "Conv1D's leading 1 is dropped"
    )

    gpt = ref.GPTModel(tiny_cfg(ref)).eval()
    impl.load_weights_into_gpt(gpt, params)
    token_ids = torch.randint(0, VOCAB, (2, CTX), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = gpt(token_ids)
        theirs = hf_model_from_arrays(arrays)(token_ids).logits
    assert_tensor_equal(ours, theirs, name="logits", why=WHY, atol=1e-5)


def test_second_fetch_uses_the_cache_and_refetches_only_what_is_missing(served):
    folder = weights.download_gpt2("124M", progress=False)
    assert len(served.log) == len(weights.GPT2_FILES)
    assert weights.cached_gpt2_files("124M") == list(weights.GPT2_FILES)

    (folder / "hparams.json").unlink()
    assert weights.download_gpt2("124M", progress=False) == folder
    assert [req.path for req, _ in served.log[len(weights.GPT2_FILES) :]] == [
        "/gpt-2/models/124M/hparams.json"
    ]


def test_corrupt_download_is_refused_naming_the_file(served, monkeypatch):
    bad = dict(weights.GPT2_FILE_SHA256["124M"], **{"model.ckpt.index": "0" * 64})
    monkeypatch.setitem(weights.GPT2_FILE_SHA256, "124M", bad)
    with pytest.raises(AssetError, match=r"model\.ckpt\.index"):
        weights.download_gpt2("124M", progress=False)
    assert "model.ckpt.index" not in weights.cached_gpt2_files("124M")


def test_unknown_size_lists_the_sizes():
    with pytest.raises(ValueError, match=r"'125M'.*124M, 355M, 774M, 1558M"):
        weights.download_and_load_gpt2("125M")


def test_known_hashes_and_sizes_cover_every_file():
    for size in weights.GPT2_SIZES:
        assert set(weights.GPT2_FILE_SHA256[size]) == set(weights.GPT2_FILES)
        assert set(weights.GPT2_FILE_SIZES[size]) == set(weights.GPT2_FILES)
    assets = weights.gpt2_assets("355m")
    assert [a.url for a in assets][3] == (
        "https://openaipublic.blob.core.windows.net/gpt-2/models/355M/model.ckpt.data-00000-of-00001"
    )
    assert assets[3].backup_url.startswith(
        "https://f001.backblazeb2.com/file/LLMs-from-scratch/gpt2/355M/"
    )


def book_params(arrays):
    """The book's params dict built from the arrays by hand (no TensorFlow)."""
    params = {"blocks": [{} for _ in range(N_LAYER)]}
    for name, array in arrays.items():
        parts = name.split("/")[1:]
        target = params
        if parts[0].startswith("h"):
            target, parts = params["blocks"][int(parts[0][1:])], parts[1:]
        for key in parts[:-1]:
            target = target.setdefault(key, {})
        target[parts[-1]] = np.squeeze(array, axis=0) if array.ndim == 3 else array
    return params


@pytest.mark.exercise("load_weights_into_gpt")
def test_shape_mismatch_is_a_value_error(impl, ref, arrays):
    gpt = ref.GPTModel(tiny_cfg(ref, context_length=2 * CTX))
    with pytest.raises(ValueError):  # the book's assign raises ValueError on a shape mismatch
        impl.load_weights_into_gpt(gpt, book_params(arrays))


def test_shape_mismatch_names_the_tensor_and_both_shapes(ref, arrays):
    gpt = ref.GPTModel(tiny_cfg(ref, context_length=2 * CTX))
    with pytest.raises(ValueError, match=rf"pos_emb\.weight.*\({2 * CTX}, {D}\).*\({CTX}, {D}\)"):
        weights.load_weights_into_gpt(gpt, book_params(arrays))

    params = book_params(arrays)
    params["blocks"][1]["mlp"]["c_fc"]["w"] = np.zeros((D, 2 * D), np.float32)
    with pytest.raises(ValueError, match=r"trf_blocks\.1\.ff\.layers\.0\.weight"):
        weights.load_weights_into_gpt(ref.GPTModel(tiny_cfg(ref)), params)


def test_missing_param_names_its_path(ref, arrays):
    params = book_params(arrays)
    del params["blocks"][0]["ln_2"]["g"]
    with pytest.raises(ValueError, match=r"params\['blocks'\]\[0\]\['ln_2'\]\['g'\] is missing"):
        weights.load_weights_into_gpt(ref.GPTModel(tiny_cfg(ref)), params)


def test_block_count_mismatch_says_which_config(ref, arrays):
    with pytest.raises(ValueError, match=r"2 transformer blocks, model has 3"):
        weights.load_weights_into_gpt(ref.GPTModel(tiny_cfg(ref, n_layers=3)), book_params(arrays))


@pytest.mark.exercise("assign")
def test_assign_checks_shape_and_keeps_dtype(impl):
    left = torch.zeros(2, 3, dtype=torch.float64)
    out = impl.assign(left, np.ones((2, 3), np.float32), "x.weight")
    assert isinstance(out, torch.nn.Parameter) and out.dtype == torch.float64
    with pytest.raises(
        ValueError, match=r"x\.weight: model has \(2, 3\), checkpoint gives \(3, 2\)"
    ):
        impl.assign(left, np.ones((3, 2)), "x.weight")


def test_missing_tensorflow_names_the_tf_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"pip install 'llm-finetune-kit\[tf\]'"):
        weights.load_gpt2_params_from_tf_ckpt(tmp_path / "model.ckpt", SETTINGS)


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
    monkeypatch.setattr(weights, "GPT2_URL", served.url_for("/gone/{size}/{file}"))
    assert ftkit_main(["weights", "fetch", "124M", "--dir", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "/gone/124M/checkpoint" in err and "rerun" in err


def test_tf_reader_matches_the_books_package(checkpoint_dir):
    book = pytest.importorskip("llms_from_scratch.ch05", reason="needs the book extra")
    ours = weights.load_gpt2_params_from_tf_ckpt(checkpoint_dir / "model.ckpt", SETTINGS)
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
