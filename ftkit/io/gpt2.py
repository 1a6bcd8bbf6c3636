"""OpenAI's pretrained GPT-2 weights: file tables, verified download, read into the book's params (book §5.5, Appendix D).

The book's `gpt_download.py` fetches OpenAI's TensorFlow checkpoint and turns it into
a nested `params` dict that `load_weights_into_gpt` (reference/weights.py) copies
into GPTModel. Here downloads go through `ftkit.io.assets.fetch` (cache, mirror,
verified atomic writes, resumable); the reader is `ftkit.io.tf_checkpoint`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

GPT2_SIZES = ("124M", "355M", "774M", "1558M")
GPT2_FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.index",
    "model.ckpt.meta",
    "vocab.bpe",
)
GPT2_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models/{size}/{file}"
GPT2_BACKUP_URL = "https://f001.backblazeb2.com/file/LLMs-from-scratch/gpt2/{size}/{file}"

# Byte sizes the book's own test suite (LLMs-from-scratch, ch05 tests) checks against
# OpenAI's server for 124M and 355M; the tokenizer files are the same for every size.
# 774M and 1558M sizes were not found published: None, so only Content-Length is checked.
_TOKENIZER_SIZES = {"encoder.json": 1042301, "vocab.bpe": 456318}
GPT2_FILE_SIZES: dict[str, dict[str, int | None]] = {
    "124M": {
        "checkpoint": 77,
        "hparams.json": 90,
        "model.ckpt.data-00000-of-00001": 497759232,
        "model.ckpt.index": 5215,
        "model.ckpt.meta": 471155,
        **_TOKENIZER_SIZES,
    },
    "355M": {
        "checkpoint": 77,
        "hparams.json": 91,
        "model.ckpt.data-00000-of-00001": 1419292672,
        "model.ckpt.index": 10399,
        "model.ckpt.meta": 926519,
        **_TOKENIZER_SIZES,
    },
    "774M": {**dict.fromkeys(GPT2_FILES), **_TOKENIZER_SIZES},
    "1558M": {**dict.fromkeys(GPT2_FILES), **_TOKENIZER_SIZES},
}

# SHA-256s. The tokenizer files' are the ones tiktoken pins for its `gpt2` encoding
# (also in /work/shared/data/README.md). The 124M checkpoint files' come from a public
# download script (its encoder.json/vocab.bpe hashes agree with tiktoken's, and its
# data-file hash with a second, independent listing of the 497,759,232-byte file).
# No published hashes were found for 355M/774M/1558M checkpoint files: None there,
# so those are checked by size (above, where known) and Content-Length only.
_TOKENIZER_SHA256 = {
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
GPT2_FILE_SHA256: dict[str, dict[str, str | None]] = {
    "124M": {
        "checkpoint": "dd1b025d2e155283f5e300ce95bf6d5b6bc0f7fe010db73daa6975eb896ab9cb",
        "hparams.json": "d9d56e4121c427164e0c55c6f03c08e1daf9002b9b672825112d19097b680318",
        "model.ckpt.data-00000-of-00001": "2060c885360cc0cf41d7a6dbc4d24b5127aae20260c8b5ae521b5a6578407118",
        "model.ckpt.index": "71916f763f9746f9b2a06b12d91996cf1084ae008d0424543d39391c5f2dc687",
        "model.ckpt.meta": "4668c448fa11531fd6700460487f73e82d3272960cea942252f8744bf225c77b",
        **_TOKENIZER_SHA256,
    },
    **{
        size: {**dict.fromkeys(GPT2_FILES), **_TOKENIZER_SHA256}
        for size in ("355M", "774M", "1558M")
    },
}


def check_model_size(model_size: str) -> str:
    """The canonical size tag ("124m" -> "124M"); a clear error listing the sizes otherwise."""
    size = str(model_size).strip().upper()
    if size not in GPT2_SIZES:
        raise ValueError(
            f"unknown GPT-2 size {model_size!r}; OpenAI published {', '.join(GPT2_SIZES)}"
        )
    return size


def gpt2_dir(model_size: str, models_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding a size's files: `<models_dir>/<size>`, default `<cache>/gpt2/<size>`."""
    size = check_model_size(model_size)
    if models_dir is None:
        from ftkit.io.assets import cache_dir

        return cache_dir() / "gpt2" / size
    return Path(models_dir).expanduser().resolve() / size


def gpt2_assets(model_size: str, models_dir: str | os.PathLike | None = None) -> list:
    """The seven files of one GPT-2 size as `ftkit.io.assets.Asset`s, with known sizes/hashes."""
    from ftkit.io.assets import Asset

    size = check_model_size(model_size)
    # The assets cache puts a file at cache_dir() / subdir; pathlib makes an absolute
    # subdir win over cache_dir(), which is how a custom models_dir is honoured.
    subdir = f"gpt2/{size}" if models_dir is None else str(gpt2_dir(size, models_dir))
    return [
        Asset(
            name=f"gpt2-{size}-{file}",
            url=GPT2_URL.format(size=size, file=file),
            backup_url=GPT2_BACKUP_URL.format(size=size, file=file),
            sha256=GPT2_FILE_SHA256[size][file],
            size=GPT2_FILE_SIZES[size][file],
            subdir=subdir,
        )
        for file in GPT2_FILES
    ]


def download_gpt2(
    model_size: str, models_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Fetch (or find cached) the files of one GPT-2 size; return their folder (book Appendix D).

    Each file is verified (SHA-256 where known, else byte size / Content-Length) and
    written atomically by `ftkit.io.assets.fetch`, so an interrupted download is
    resumed by running it again: finished files are kept, half ones never land.
    """
    from ftkit.io.assets import fetch

    paths = [fetch(asset, progress=progress) for asset in gpt2_assets(model_size, models_dir)]
    return paths[0].parent


def cached_gpt2_files(model_size: str, models_dir: str | os.PathLike | None = None) -> list[str]:
    """Which of a size's seven files are present in its folder (no hashing; cheap)."""
    folder = gpt2_dir(model_size, models_dir)
    return [file for file in GPT2_FILES if (folder / file).is_file()]


def download_and_load_gpt2(model_size: str, models_dir: str | os.PathLike | None = None):
    """Download OpenAI's GPT-2 `model_size` and read it: `(settings, params)` (book §5.5).

    `settings` is hparams.json (n_vocab, n_ctx, n_embd, n_head, n_layer); `params` the
    nested arrays `load_weights_into_gpt` takes. `models_dir` defaults to the kit's
    cache (`<FTKIT_HOME or user cache>/gpt2/<size>`); with it, files go to
    `<models_dir>/<size>/` as in the book.
    """
    from ftkit.io.tf_checkpoint import load_gpt2_params_from_tf_ckpt

    folder = download_gpt2(model_size, models_dir)
    hparams = folder / "hparams.json"
    try:
        settings = json.loads(hparams.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read GPT-2 settings from {hparams}: {err}") from err
    missing = [k for k in ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer") if k not in settings]
    if missing:
        raise ValueError(f"{hparams} lacks {missing}")
    # OpenAI's `checkpoint` file names "model.ckpt"; use that prefix directly rather than
    # trusting paths written inside it.
    params = load_gpt2_params_from_tf_ckpt(folder / "model.ckpt", settings)
    return settings, params
