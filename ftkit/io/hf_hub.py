"""GPT-2 as `safetensors` files from Hugging Face's `gpt2` repositories, through `huggingface_hub`'s cache.

No TensorFlow and no pickle: `model.safetensors` is plain arrays in Hugging Face's
GPT-2 layout (OpenAI's, renamed), read into the book's `params` by
`ftkit.io.hf.params_from_hf_state_dict`. Each size's repository is pinned to one
commit, so the bytes cannot change under us; after `hf_hub_download` every file is
verified, against the SHA-256 pinned below where one is known, else against the
content address the Hub reported for that commit (the blob's name in the cache:
an LFS file's SHA-256, a small file's git blob id). A verified file is stamped
(size and mtime, in the kit's cache), so later loads do not re-hash gigabytes.

Where files go: `models_dir` when given (an `ftkit weights --dir`), else
huggingface_hub's own cache (`$HF_HUB_CACHE`, or `$HF_HOME/hub`, default
`~/.cache/huggingface/hub`), shared with transformers. `HF_ENDPOINT` (a mirror)
is honoured; `FTKIT_OFFLINE=1` or `HF_HUB_OFFLINE=1` means cache only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from ftkit.io.assets import ENV_OFFLINE, AssetError, cache_dir, sha256_of
from ftkit.io.files import write_text_atomic

# Hugging Face moved OpenAI's repositories (`gpt2`, `gpt2-medium`, ...) under
# `openai-community/`; the old names redirect. Commits are the repositories' `main`
# as recorded publicly by many projects' cache paths and pins (gpt2's agrees with
# huggingface_hub's own `resolve_revision` example).
HF_REPOS: dict[str, tuple[str, str]] = {
    "124M": ("openai-community/gpt2", "607a30d783dfa663caf39e06633721c8d4cfcd7e"),
    "355M": ("openai-community/gpt2-medium", "6dcaa7a952f72f9298047fd5137cd6e4f05f41da"),
    "774M": ("openai-community/gpt2-large", "32b71b12589c2f8d625668d2335a01cac3249519"),
    "1558M": ("openai-community/gpt2-xl", "15ea56dee5df4983c59b2538573817e1667135e2"),
}
HF_FILES = ("config.json", "model.safetensors")

# SHA-256s pinned where published: gpt2's model.safetensors (548,105,171 bytes) at the
# commit above, as several independent projects record it. None: verified against
# the Hub's content address for the pinned commit instead (see the module docstring).
HF_FILE_SHA256: dict[str, dict[str, str | None]] = {
    "124M": {
        "config.json": None,
        "model.safetensors": "248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707",
    },
    **{size: dict.fromkeys(HF_FILES) for size in ("355M", "774M", "1558M")},
}

HUB_HINT = "pip install huggingface_hub safetensors  (both are in the kit's base install)"


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def hf_cache_dir(models_dir: str | os.PathLike | None = None) -> Path:
    """huggingface_hub's cache folder: `models_dir` if given, else HF's (read now, not at import)."""
    if models_dir is not None:
        return Path(models_dir).expanduser().resolve()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(home).expanduser() / "hub"


def hf_snapshot_dir(size: str, models_dir: str | os.PathLike | None = None) -> Path:
    """Where the pinned commit's files of a size live in the cache (whether or not they are there)."""
    repo, commit = HF_REPOS[size]
    return hf_cache_dir(models_dir) / f"models--{repo.replace('/', '--')}" / "snapshots" / commit


def cached_hf_files(size: str, models_dir: str | os.PathLike | None = None) -> list[str]:
    """Which of `HF_FILES` are present for the pinned commit (no hashing; cheap)."""
    folder = hf_snapshot_dir(size, models_dir)
    return [name for name in HF_FILES if (folder / name).is_file()]


def _hf_url(size: str, name: str) -> str:
    from huggingface_hub import hf_hub_url

    repo, commit = HF_REPOS[size]
    return hf_hub_url(repo, name, revision=commit, endpoint=os.environ.get("HF_ENDPOINT") or None)


def _import_hub():
    try:
        import huggingface_hub
    except ImportError as err:
        raise ImportError(f"GPT-2 from Hugging Face needs huggingface_hub: {HUB_HINT}") from err
    return huggingface_hub


def download_hf_gpt2(
    size: str, models_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Fetch (or find cached) a size's config.json and model.safetensors, verified; return their folder."""
    hub = _import_hub()
    from huggingface_hub import errors
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    repo, commit = HF_REPOS[size]
    offline = _truthy(ENV_OFFLINE) or _truthy("HF_HUB_OFFLINE")
    was_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    paths = []
    try:
        for name in HF_FILES:
            url = _hf_url(size, name)
            try:
                path = hub.hf_hub_download(
                    repo,
                    name,
                    revision=commit,
                    cache_dir=hf_cache_dir(models_dir),
                    endpoint=os.environ.get("HF_ENDPOINT") or None,
                    local_files_only=offline,
                )
            except errors.LocalEntryNotFoundError as err:
                raise AssetError(_offline_message(size, name, url, models_dir, offline)) from err
            except (errors.HfHubHTTPError, OSError, ValueError) as err:
                raise AssetError(
                    f"could not download {name} of {repo} (GPT-2 {size}, commit {commit}) "
                    f"from {url}: {err}\n  Fix: check the network (or HF_ENDPOINT), then rerun "
                    f"`ftkit weights fetch {size} --source hf`"
                ) from None
            _verify(size, name, Path(path), url)
            paths.append(Path(path))
    finally:
        if not progress and not was_disabled:
            enable_progress_bars()
    return paths[0].parent


def _offline_message(size, name, url, models_dir, offline: bool) -> str:
    """Which file is missing, from which URL, and what to do (offline, or the Hub unreachable)."""
    where = f"run `ftkit weights fetch {size} --source hf` on a machine with internet (then copy {hf_cache_dir(models_dir)} here)"
    if offline:
        why = f"{ENV_OFFLINE}=1 or HF_HUB_OFFLINE=1 forbids downloading it"
        fix = f"{where}, or unset {ENV_OFFLINE} and HF_HUB_OFFLINE"
    else:
        why = "the Hub could not be reached to download it"
        fix = f"check the network, proxy or HF_ENDPOINT and rerun; or {where}"
    return (
        f"{name} of GPT-2 {size} is not in the Hugging Face cache "
        f"({hf_snapshot_dir(size, models_dir)}) and {why} from {url}.\n  Fix: {fix}."
    )


def _git_blob_id(path: Path) -> str:
    """The git object id of a file (what the Hub calls the etag of a non-LFS file)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324  (git's id)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(size: str, name: str) -> Path:
    repo, commit = HF_REPOS[size]
    return cache_dir() / "gpt2-hf-verified" / repo.replace("/", "--") / commit / f"{name}.json"


def _content_check(size: str, name: str, blob: Path) -> tuple[str | None, str | None, str | None]:
    """`(expected, actual, kind)`: the pinned SHA-256, else the Hub's content address (blob name)."""
    pinned = HF_FILE_SHA256[size][name]
    if pinned or len(blob.name) == 64:
        return (pinned or blob.name), sha256_of(blob), "sha256"
    if len(blob.name) == 40:
        return blob.name, _git_blob_id(blob), "git blob id"
    return None, None, None  # a cache without symlinks keeps no blob name to check against


def verify_hf_gpt2(size: str, models_dir: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """Re-hash a size's cached files, ignoring stamps: `(file, verdict)` as `ftkit.io.gpt2.verify_gpt2`.

    A corrupt file loses its stamp, so the next load re-checks it, removes it and says
    to fetch it again.
    """
    results = []
    for name in HF_FILES:
        path = hf_snapshot_dir(size, models_dir) / name
        if not path.is_file():
            results.append((name, "missing"))
            continue
        expected, actual, kind = _content_check(size, name, path.resolve())
        if expected is None:
            verdict = "unchecked (no hash known: the cache keeps no blob names)"
        elif actual != expected.lower():
            _stamp(size, name).unlink(missing_ok=True)
            verdict = f"corrupt: {kind} {actual}, expected {expected}"
        else:
            verdict = "ok"
        results.append((name, verdict))
    return results


def _verify(size: str, name: str, path: Path, url: str) -> None:
    """Check a downloaded file against the pinned SHA-256, else the Hub's content address."""
    blob = path.resolve()
    st = blob.stat()
    stamp = _stamp(size, name)
    try:
        seen = json.loads(stamp.read_text(encoding="utf-8"))
        if seen == {"path": str(blob), "size": st.st_size, "mtime_ns": st.st_mtime_ns}:
            return
    except (OSError, ValueError):
        pass

    expected, actual, kind = _content_check(size, name, blob)
    if expected is not None and actual != expected.lower():
        for p in {path, blob}:
            p.unlink(missing_ok=True)  # so a rerun downloads it again
        repo, commit = HF_REPOS[size]
        raise AssetError(
            f"checksum mismatch for {name} of {repo} (GPT-2 {size}, commit {commit}) "
            f"from {url}:\n  expected {kind} {expected}\n  actual   {kind} {actual}\n"
            "the file is corrupt or was changed; it was removed from the cache. "
            f"Fix: rerun `ftkit weights fetch {size} --source hf`"
        )
    write_text_atomic(
        stamp, json.dumps({"path": str(blob), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    )


def read_hf_gpt2(folder: str | os.PathLike) -> tuple[dict, dict]:
    """`(settings, params)` from a folder holding config.json and model.safetensors (book §5.5's layout)."""
    from ftkit.io.hf import params_from_hf_state_dict

    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise ImportError(f"reading model.safetensors needs safetensors: {HUB_HINT}") from err
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    settings = hf_settings(config)
    params = params_from_hf_state_dict(load_file(str(folder / "model.safetensors")))
    if len(params["blocks"]) != settings["n_layer"]:
        raise ValueError(
            f"{folder / 'model.safetensors'} has {len(params['blocks'])} blocks, config.json "
            f"says n_layer={settings['n_layer']}"
        )
    return settings, params


def hf_settings(config: Mapping) -> dict:
    """OpenAI's hparams.json keys (n_vocab, n_ctx, n_embd, n_head, n_layer) from a GPT2Config dict."""
    try:
        return {
            "n_vocab": config["vocab_size"],
            "n_ctx": config.get("n_positions", config.get("n_ctx")),
            "n_embd": config["n_embd"],
            "n_head": config["n_head"],
            "n_layer": config["n_layer"],
        }
    except KeyError as err:
        raise ValueError(f"config.json lacks {err}; is it a GPT-2 config?") from None
