"""GPT-2's pretrained weights from three sources, read into the book's `params` dict (book §5.5, Appendix D).

- `hf` (the default): `model.safetensors` from Hugging Face's `gpt2` repositories,
  revision-pinned, through huggingface_hub's cache (`ftkit.io.hf_hub`). Needs only
  the base install: no TensorFlow, no pickle.
- `openai`: OpenAI's original TensorFlow checkpoint, the seven files the book's
  `gpt_download.py` fetches; reading it needs TensorFlow (the `tf` extra).
- `book`: the book repository's converted PyTorch state dicts for its GPTModel
  (`gpt2-small-124M.pth`, ...), read with `torch.load(weights_only=True)`.

Every source comes back as the book's `(settings, params)`, so the same
`load_weights_into_gpt` (reference/weights.py) loads all three, and they give the
same logits. OpenAI's and the book's files go through `ftkit.io.assets.fetch`:
cache, mirror, verified atomic download, resumable, `FTKIT_OFFLINE` honoured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

# The book repository's converted state dicts for its GPTModel (qkv_bias=True), hosted
# on Hugging Face (README of ch05/02_alternative_weight_loading in rasbt/LLMs-from-scratch).
BOOK_URL = "https://huggingface.co/rasbt/gpt2-from-scratch-pytorch/resolve/main/{file}"
BOOK_FILES = {
    "124M": "gpt2-small-124M.pth",
    "355M": "gpt2-medium-355M.pth",
    "774M": "gpt2-large-774M.pth",
    "1558M": "gpt2-xl-1558M.pth",
}
# No published SHA-256s were found: None means the hash is recorded on first download
# (next to the file, `<file>.sha256`) and every later read is verified against it.
BOOK_FILE_SHA256: dict[str, str | None] = dict.fromkeys(BOOK_FILES)

# OpenAI's hparams.json per size (the book's .pth files carry none).
GPT2_SETTINGS: dict[str, dict[str, int]] = {
    size: {"n_vocab": 50257, "n_ctx": 1024, "n_embd": d, "n_head": h, "n_layer": n}
    for size, (d, h, n) in {
        "124M": (768, 12, 12),
        "355M": (1024, 16, 24),
        "774M": (1280, 20, 36),
        "1558M": (1600, 25, 48),
    }.items()
}

# Hugging Face's safetensors: the one source whose reader installs wherever torch does
# (TensorFlow does not on every Python/OS) and that loads no pickle. The sources themselves
# are the registry `SOURCES` below.
DEFAULT_SOURCE = "hf"


def check_model_size(model_size: str) -> str:
    """The canonical size tag ("124m" -> "124M"); a clear error listing the sizes otherwise."""
    size = str(model_size).strip().upper()
    if size not in GPT2_SIZES:
        raise ValueError(
            f"unknown GPT-2 size {model_size!r}; OpenAI published {', '.join(GPT2_SIZES)}"
        )
    return size


def check_source(source: str) -> str:
    """The source name in lower case; a clear error listing the sources otherwise."""
    name = str(source).strip().lower()
    if name not in SOURCES:
        raise ValueError(f"unknown weights source {source!r}; choose one of {', '.join(SOURCES)}")
    return name


# ---------------------------------------------------------------------------
# OpenAI's files and the book's .pth: folders and assets
# ---------------------------------------------------------------------------


def gpt2_dir(model_size: str, models_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding a size's OpenAI/book files: `<models_dir>/<size>`, default `<cache>/gpt2/<size>`."""
    size = check_model_size(model_size)
    if models_dir is None:
        from ftkit.io.assets import cache_dir

        return cache_dir() / "gpt2" / size
    return Path(models_dir).expanduser().resolve() / size


def _subdir(size: str, models_dir) -> str:
    # The assets cache puts a file at cache_dir() / subdir; pathlib makes an absolute
    # subdir win over cache_dir(), which is how a custom models_dir is honoured.
    return f"gpt2/{size}" if models_dir is None else str(gpt2_dir(size, models_dir))


def gpt2_assets(model_size: str, models_dir: str | os.PathLike | None = None) -> list:
    """The seven files of one OpenAI GPT-2 size as `ftkit.io.assets.Asset`s, with known sizes/hashes."""
    from ftkit.io.assets import Asset

    size = check_model_size(model_size)
    return [
        Asset(
            name=f"gpt2-{size}-{file}",
            url=GPT2_URL.format(size=size, file=file),
            backup_url=GPT2_BACKUP_URL.format(size=size, file=file),
            sha256=GPT2_FILE_SHA256[size][file],
            size=GPT2_FILE_SIZES[size][file],
            subdir=_subdir(size, models_dir),
            rehash_on_use=False,  # gigabytes: hashed on download and by `ftkit weights verify`
        )
        for file in GPT2_FILES
    ]


def book_asset(model_size: str, models_dir: str | os.PathLike | None = None):
    """The book's converted `.pth` of one size as an `ftkit.io.assets.Asset` (beside OpenAI's files)."""
    from ftkit.io.assets import Asset

    size = check_model_size(model_size)
    return Asset(
        name=f"gpt2-{size}-book-pth",
        url=BOOK_URL.format(file=BOOK_FILES[size]),
        sha256=BOOK_FILE_SHA256[size],
        subdir=_subdir(size, models_dir),
        rehash_on_use=False,  # gigabytes: hashed on download and by `ftkit weights verify`
    )


def download_gpt2(
    model_size: str, models_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Fetch (or find cached) the seven OpenAI files of one GPT-2 size; return their folder (book Appendix D).

    Each file is verified (SHA-256 where known, else byte size / Content-Length) and
    written atomically by `ftkit.io.assets.fetch`, so an interrupted download is
    resumed by running it again: finished files are kept, half ones never land.
    """
    from ftkit.io.assets import fetch

    paths = [fetch(asset, progress=progress) for asset in gpt2_assets(model_size, models_dir)]
    return paths[0].parent


def cached_gpt2_files(model_size: str, models_dir: str | os.PathLike | None = None) -> list[str]:
    """Which of a size's seven OpenAI files are present in its folder (no hashing; cheap)."""
    folder = gpt2_dir(model_size, models_dir)
    return [file for file in GPT2_FILES if (folder / file).is_file()]


# ---------------------------------------------------------------------------
# Any source: fetch, list, read
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsSource:
    """Where one size's GPT-2 weights come from: how to fetch, list, verify and read them.

    Every source's `read` gives the book's `(settings, params)` (§5.5), so the rest of
    the kit never asks which source it was.
    """

    name: str
    help: str
    fetch: Callable[[str, Any, bool], Path]  # (size, models_dir, progress) -> folder
    files: Callable[[str, Any], tuple[Path, list[str], int]]  # -> (folder, present, expected)
    verify: Callable[[str, Any], list[tuple[str, str]]]  # -> (file, verdict) per file
    read: Callable[[Path, str], tuple[dict, dict]]  # (folder, size) -> (settings, params)
    needs: str | None = None  # the module its reader imports, when not always installed


def _hf_fetch(size: str, models_dir, progress: bool) -> Path:
    from ftkit.io.hf_hub import download_hf_gpt2

    return download_hf_gpt2(size, models_dir, progress=progress)


def _hf_files(size: str, models_dir) -> tuple[Path, list[str], int]:
    from ftkit.io.hf_hub import HF_FILES, cached_hf_files, hf_snapshot_dir

    return hf_snapshot_dir(size, models_dir), cached_hf_files(size, models_dir), len(HF_FILES)


def _hf_verify(size: str, models_dir) -> list[tuple[str, str]]:
    from ftkit.io.hf_hub import verify_hf_gpt2

    return verify_hf_gpt2(size, models_dir)


def _hf_read(folder: Path, size: str) -> tuple[dict, dict]:
    from ftkit.io.hf_hub import read_hf_gpt2

    return read_hf_gpt2(folder)


def _verify_assets(assets: list) -> list[tuple[str, str]]:
    from ftkit.io.assets import verify_cached

    return [(asset.filename, verify_cached(asset)) for asset in assets]


def _openai_files(size: str, models_dir) -> tuple[Path, list[str], int]:
    return gpt2_dir(size, models_dir), cached_gpt2_files(size, models_dir), len(GPT2_FILES)


def _openai_read(folder: Path, size: str) -> tuple[dict, dict]:
    from ftkit.io.tf_checkpoint import load_gpt2_params_from_tf_ckpt

    settings = read_settings(folder)
    # OpenAI's `checkpoint` file names "model.ckpt"; use that prefix directly rather
    # than trusting paths written inside it.
    return settings, load_gpt2_params_from_tf_ckpt(folder / "model.ckpt", settings)


def _book_fetch(size: str, models_dir, progress: bool) -> Path:
    from ftkit.io.assets import fetch

    return fetch(book_asset(size, models_dir), progress=progress).parent


def _book_files(size: str, models_dir) -> tuple[Path, list[str], int]:
    folder, name = gpt2_dir(size, models_dir), BOOK_FILES[size]
    return folder, [name] if (folder / name).is_file() else [], 1


def _book_read(folder: Path, size: str) -> tuple[dict, dict]:
    import torch

    from ftkit.io.hf import params_from_state_dict

    # weights_only: a checkpoint is data (tensors), never code to run.
    state_dict = torch.load(folder / BOOK_FILES[size], map_location="cpu", weights_only=True)
    params = params_from_state_dict(state_dict)
    settings = dict(GPT2_SETTINGS[size])
    settings.update(
        n_vocab=params["wte"].shape[0], n_ctx=params["wpe"].shape[0], n_embd=params["wte"].shape[1]
    )
    settings["n_layer"] = len(params["blocks"])
    return settings, params


# The registry: a new source is one entry here (the CLI's --source choices and help follow).
SOURCES: dict[str, WeightsSource] = {
    source.name: source
    for source in (
        WeightsSource(
            "hf",
            "Hugging Face safetensors (openai-community/gpt2*) at a pinned commit, no TensorFlow",
            _hf_fetch,
            _hf_files,
            _hf_verify,
            _hf_read,
        ),
        WeightsSource(
            "openai",
            "OpenAI's TensorFlow checkpoint, 7 files as in the book (reading needs the tf extra)",
            lambda size, models_dir, progress: download_gpt2(size, models_dir, progress),
            _openai_files,
            lambda size, models_dir: _verify_assets(gpt2_assets(size, models_dir)),
            _openai_read,
            needs="tensorflow",
        ),
        WeightsSource(
            "book",
            "the book repository's converted PyTorch state dicts (.pth)",
            _book_fetch,
            _book_files,
            lambda size, models_dir: _verify_assets([book_asset(size, models_dir)]),
            _book_read,
        ),
    )
}
SOURCE_HELP = {name: source.help for name, source in SOURCES.items()}


def fetch_gpt2(
    model_size: str,
    models_dir: str | os.PathLike | None = None,
    *,
    source: str = DEFAULT_SOURCE,
    progress: bool = True,
) -> Path:
    """Fetch (or find cached and verify) one size's files from `source`; return their folder."""
    size, source = check_model_size(model_size), check_source(source)
    return SOURCES[source].fetch(size, models_dir, progress)


def source_files(
    model_size: str, source: str, models_dir: str | os.PathLike | None = None
) -> tuple[Path, list[str], int]:
    """`(folder, files present, files expected)` of one size from one source (cheap: no hashing)."""
    size, source = check_model_size(model_size), check_source(source)
    return SOURCES[source].files(size, models_dir)


def verify_gpt2(
    model_size: str, source: str, models_dir: str | os.PathLike | None = None
) -> list[tuple[str, str]]:
    """Re-hash one size's cached files from one source: `(file, verdict)` per expected file.

    A verdict is "ok", "ok (size only)", "missing", "corrupt: ..." or "unchecked ..."; a
    corrupt file loses its verified stamp, so the next fetch or load downloads it again.
    """
    size, source = check_model_size(model_size), check_source(source)
    return SOURCES[source].verify(size, models_dir)


def cached_sources(model_size: str, models_dir: str | os.PathLike | None = None) -> list[str]:
    """The sources whose files for `model_size` are all present (no hashing; cheap)."""
    found = []
    for source in SOURCES:
        _folder, present, expected = source_files(model_size, source, models_dir)
        if len(present) == expected:
            found.append(source)
    return found


def _readable(source: WeightsSource) -> bool:
    """Whether this Python can read the source's files (TensorFlow for OpenAI's checkpoint)."""
    import importlib.util

    return source.needs is None or importlib.util.find_spec(source.needs) is not None


def pick_source(model_size: str, models_dir: str | os.PathLike | None = None) -> str:
    """The source `download_and_load_gpt2` uses when none is named: a cached one, else the default.

    A source whose files are all cached wins (in the order of `SOURCES`; OpenAI's only
    where TensorFlow can read it), so files fetched earlier are used, not downloaded again.
    """
    for source in cached_sources(model_size, models_dir):
        if _readable(SOURCES[source]):
            return source
    return DEFAULT_SOURCE


def read_settings(folder: Path) -> dict:
    """OpenAI's hparams.json from a checkpoint folder, with a clear error if unreadable or incomplete."""
    hparams = folder / "hparams.json"
    try:
        settings = json.loads(hparams.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read GPT-2 settings from {hparams}: {err}") from err
    missing = [k for k in ("n_vocab", "n_ctx", "n_embd", "n_head", "n_layer") if k not in settings]
    if missing:
        raise ValueError(f"{hparams} lacks {missing}")
    return settings


def download_and_load_gpt2(
    model_size: str,
    models_dir: str | os.PathLike | None = None,
    *,
    source: str | None = None,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Download GPT-2 `model_size` and read it: `(settings, params)` (book §5.5).

    `settings` is OpenAI's hparams.json (n_vocab, n_ctx, n_embd, n_head, n_layer);
    `params` the nested arrays `load_weights_into_gpt` takes, whatever the source.
    `source` is "hf", "openai" or "book"; None picks a cached source, else "hf"
    (`pick_source`). `models_dir` defaults to the kit's cache (Hugging Face's for
    "hf"); with it, OpenAI's and the book's files go to `<models_dir>/<size>/` as in the book.
    """
    size = check_model_size(model_size)
    source = check_source(source) if source is not None else pick_source(size, models_dir)
    folder = fetch_gpt2(size, models_dir, source=source, progress=progress)
    return SOURCES[source].read(folder, size)
