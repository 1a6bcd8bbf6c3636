"""The kit's data files: a registry of public downloads and `fetch`, which returns a verified local copy.

All network and cache I/O of the kit lives here. A file is looked up, in order:

1. in the cache (`cache_dir()`, i.e. `$FTKIT_HOME` or the platform's user cache folder),
   re-hashed on every use (data files are megabytes: a file corrupted in place, even
   with its size and mtime kept, is refused and fetched again); gigabyte weight files
   (`rehash_on_use=False`) are checked against the size/mtime stamp written when they
   were verified, and re-hashed by `ftkit weights verify`;
2. in the mirror folder `$FTKIT_DATA_MIRROR` (by the download's file name, first under
   `<mirror>/<subdir>/`, then `<mirror>/`), copied into the cache;
3. on the network (primary URL, then backup URL), unless `FTKIT_OFFLINE=1`.

Every file that enters the cache is written to a temporary file in the target folder,
checked (Content-Length, SHA-256 or byte size) and only then moved into place with
`os.replace`, so an interrupted or corrupt download never leaves a half file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from ftkit.io.files import new_file_mode, write_text_atomic

CHUNK = 1 << 20
TIMEOUT = (10, 60)  # (connect, read) seconds: fail fast on a dead host, tolerate slow bodies
ENV_HOME = "FTKIT_HOME"
ENV_MIRROR = "FTKIT_DATA_MIRROR"
ENV_OFFLINE = "FTKIT_OFFLINE"


class AssetError(RuntimeError):
    """A data file could not be provided: the message says which file, where we looked and why."""


class CacheDirError(AssetError):
    """`$FTKIT_HOME` cannot be the cache folder (it is, or lies under, a file)."""


@dataclass(frozen=True)
class Asset:
    """One public file the kit uses, with where to get it and how to verify it."""

    name: str
    url: str
    sha256: str | None = None  # hash of the file the kit USES (for a zip: the extracted member)
    backup_url: str | None = None
    member: str | None = None  # file inside a zip download
    # Cache sub-folder, e.g. "gpt2/124M"; an absolute path is used as the folder itself
    # (how `ftkit weights --dir` puts checkpoints outside the cache).
    subdir: str = ""
    size: int | None = None  # expected byte size, used when no hash is known
    # Re-hash the cached file each time it is used (megabytes); False: trust the size/mtime
    # stamp of its last verification (GPT-2 weights, gigabytes; `verify_cached` re-hashes).
    rehash_on_use: bool = True

    @property
    def filename(self) -> str:
        """Name of the file in the cache: the zip member's basename, else the URL's basename."""
        if self.member:
            return PurePosixPath(self.member).name
        return url_basename(self.url)

    @property
    def download_name(self) -> str:
        """Name of what the primary URL serves (the zip itself for a zipped asset)."""
        return url_basename(self.url)


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="instruction-data",
            url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json",
            sha256="7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
            size=203524,
        ),
        Asset(
            name="instruction-data-with-response",
            url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data-with-response.json",
            sha256="aced320504c77c98d957316eb9f3460945256226c36b5e9752bf7d49585eb943",
            size=29279,
        ),
        Asset(
            name="sms-spam-collection",
            url="https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
            backup_url="https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
            member="SMSSpamCollection",
            # The zip is repacked by mirrors (its hash varies); the extracted file's does not.
            sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
            size=477907,
        ),
        Asset(
            name="gpt2-vocab-bpe",
            url="https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
            sha256="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
            size=456318,
        ),
        Asset(
            name="gpt2-encoder-json",
            url="https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
            sha256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
            size=1042301,
        ),
        Asset(
            name="alpaca-data",
            url="https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json",
            sha256=None,  # not pinned here: recorded on first download (trust on first use)
        ),
    )
}

# What `ftkit data fetch` gets by default: everything the book's pipelines read.
DEFAULT_ASSETS = tuple(name for name in ASSETS if name != "alpaca-data")


# ---------------------------------------------------------------- paths and hashes


def url_basename(url: str) -> str:
    """The file name a URL serves, percent-decoded ("sms%2Bspam.zip" -> "sms+spam.zip")."""
    return unquote(PurePosixPath(urlparse(url).path).name)


def cache_dir() -> Path:
    """Root of the kit's cache: `$FTKIT_HOME`, else the user cache dir for "llm-finetune-kit"."""
    home = os.environ.get(ENV_HOME)
    if home:
        path = Path(home).expanduser()
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise CacheDirError(
                f"{ENV_HOME}={home}: {blocker} is a file, not a folder; point {ENV_HOME} at a "
                "folder for the kit's cache (or unset it)"
            )
        return path
    import platformdirs

    return Path(platformdirs.user_cache_dir("llm-finetune-kit"))


def asset_path(asset: Asset | str) -> Path:
    """Where `asset` lives in the cache (whether or not it is there yet)."""
    asset = get_asset(asset)
    return cache_dir() / asset.subdir / asset.filename


def get_asset(name_or_asset: Asset | str) -> Asset:
    """The registered asset called `name`, or the `Asset` itself; clear error on an unknown name."""
    if isinstance(name_or_asset, Asset):
        return name_or_asset
    try:
        return ASSETS[name_or_asset]
    except KeyError:
        raise AssetError(
            f"unknown asset {name_or_asset!r}; known assets: {', '.join(ASSETS)}"
        ) from None


def sha256_of(path: Path | str) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _pin_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_stamp(path: Path, digest: str) -> None:
    st = path.stat()
    stamp = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    write_text_atomic(_stamp_path(path), json.dumps(stamp))


def _stamp_ok(path: Path) -> bool:
    """Cheap check that a cached file is unchanged since it was verified (size and mtime)."""
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return False
    return stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns


def expected_sha256(asset: Asset) -> str | None:
    """The pinned hash, else the one recorded on first download (`<file>.sha256`), else None."""
    if asset.sha256:
        return asset.sha256.lower()
    pin = _pin_path(asset_path(asset))
    if pin.exists():
        words = pin.read_text(encoding="utf-8").split()
        if not words or len(words[0]) != 64:
            raise AssetError(f"{pin} should hold the SHA-256 of {pin.stem}; delete it to re-record")
        return words[0].lower()
    return None


def _check(asset: Asset, path: Path, source: str) -> str:
    """Verify a candidate file against the asset's size and hash; return its hash or raise."""
    size = path.stat().st_size
    if asset.size is not None and size != asset.size:
        raise AssetError(
            f"size mismatch for {asset.filename} ({asset.name}) from {source}: "
            f"expected {asset.size} bytes, got {size}; it was not kept"
        )
    digest = sha256_of(path)
    expected = expected_sha256(asset)
    if expected and digest != expected:
        raise AssetError(
            f"checksum mismatch for {asset.filename} ({asset.name}) from {source}:\n"
            f"  expected sha256 {expected}\n"
            f"  actual   sha256 {digest}\n"
            "the file is corrupt or was changed upstream; it was not kept"
        )
    return digest


def _say(message: str) -> None:
    print(message, file=sys.stderr)


# ---------------------------------------------------------------- fetch


def fetch(name_or_asset: Asset | str, *, progress: bool = True) -> Path:
    """Path to a verified local copy of an asset: cache, else mirror, else download."""
    asset = get_asset(name_or_asset)
    target = asset_path(asset)
    if target.exists():
        if not asset.rehash_on_use and _stamp_ok(target):
            return target
        # A data file, or weights changed since verified (or never stamped): re-hash.
        try:
            _commit_verified(asset, target, target, f"the cache ({target})")
            return target
        except AssetError as err:
            _say(f"warning: cached {target} failed verification; fetching it again\n{err}")
            _discard(target)

    target.parent.mkdir(parents=True, exist_ok=True)
    mirrored = _mirror_candidate(asset)
    if mirrored is not None:
        _install(asset, mirrored, target, f"the mirror ({mirrored})")
        return target

    if os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no"):
        raise AssetError(_offline_message(asset, target))

    failures = []
    for url in filter(None, (asset.url, asset.backup_url)):
        try:
            with _temp_file(target, url_basename(url)) as tmp:
                _download(url, tmp, asset.filename, progress)
                _install(asset, tmp, target, url, move=True)
            return target
        except AssetError as err:
            failures.append(f"  {url}\n    " + str(err).replace("\n", "\n    "))
    raise AssetError(
        f"could not download {asset.filename} ({asset.name}); tried:\n" + "\n".join(failures)
    )


def _discard(path: Path) -> None:
    for p in (path, _stamp_path(path)):
        p.unlink(missing_ok=True)


def _commit_verified(asset: Asset, path: Path, target: Path, source: str) -> None:
    """Verify `path` (already at or about to move to `target`), record the hash, stamp it."""
    digest = _check(asset, path, source)
    if path != target:
        os.replace(path, target)
    if expected_sha256(asset) is None:
        write_text_atomic(_pin_path(target), f"{digest}  {target.name}\n")
        _say(
            f"note: {asset.name} has no SHA-256 pinned in the kit; recorded {digest} "
            f"in {_pin_path(target)}, later reads are verified against it"
        )
    _write_stamp(target, digest)


def _install(
    asset: Asset, source_file: Path, target: Path, source: str, *, move: bool = False
) -> None:
    """Put `source_file` (a zip holding the member, or the file itself) into the cache at `target`.

    `move=True` means `source_file` is our own temp file: it is moved, not copied
    (GPT-2 checkpoints are gigabytes).
    """
    if asset.member and zipfile.is_zipfile(source_file):
        with _temp_file(target, target.name) as tmp:
            _extract_member(source_file, asset.member, tmp, target.parent, source)
            _commit_verified(asset, tmp, target, source)
    elif move:
        _commit_verified(asset, source_file, target, source)
    else:
        with _temp_file(target, target.name) as tmp:
            shutil.copyfile(source_file, tmp)
            _commit_verified(asset, tmp, target, source)


@contextmanager
def _temp_file(target: Path, name: str) -> Iterator[Path]:
    """A temp file path next to `target` (same filesystem, so os.replace is atomic); removed if left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    # mkstemp makes 0600; cached data should get the permissions of any file the user writes.
    os.chmod(tmp, new_file_mode())
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _extract_member(zip_path: Path, member: str, dest: Path, root: Path, source: str) -> None:
    """Copy one zip member to `dest`, refusing names that would escape `root` (zip-slip)."""
    pure = PurePosixPath(member.replace("\\", "/"))
    landing = (root / pure).resolve()
    if pure.is_absolute() or ".." in pure.parts or not landing.is_relative_to(root.resolve()):
        raise AssetError(
            f"refusing zip member {member!r} from {source}: it would be written outside {root}"
        )
    try:
        with zipfile.ZipFile(zip_path) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                names = ", ".join(zf.namelist()[:10])
                raise AssetError(
                    f"zip from {source} has no member {member!r} (it holds: {names})"
                ) from None
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
    except zipfile.BadZipFile as err:
        raise AssetError(f"bad zip file from {source}: {err}") from None


def _mirror_roots() -> list[Path]:
    mirror = os.environ.get(ENV_MIRROR)
    return [Path(mirror).expanduser()] if mirror else []


def _mirror_names(asset: Asset) -> list[str]:
    names = [asset.download_name]
    if asset.backup_url:
        names.append(url_basename(asset.backup_url))
    names.append(asset.filename)  # a mirror may hold the already-extracted member
    return list(dict.fromkeys(names))


def _mirror_looked(asset: Asset) -> list[Path]:
    """Every path the mirror lookup tries, in order."""
    paths = []
    sub = PurePosixPath(asset.subdir.replace("\\", "/"))
    for root in _mirror_roots():
        # <mirror>/<subdir>/ (only a relative subdir: an absolute one is a user's folder),
        # then <mirror>/<last part of subdir>/ (e.g. <mirror>/124M/), then <mirror>/.
        folders = [root / sub] if asset.subdir and not sub.is_absolute() else []
        folders += [root / sub.name] if sub.name else []
        for folder in dict.fromkeys([*folders, root]):
            paths.extend(folder / name for name in _mirror_names(asset))
    return paths


def _mirror_candidate(asset: Asset) -> Path | None:
    return next((p for p in _mirror_looked(asset) if p.is_file()), None)


def _offline_message(asset: Asset, target: Path) -> str:
    mirror = os.environ.get(ENV_MIRROR)
    if mirror:
        looked = "\n".join(f"    {p}" for p in _mirror_looked(asset))
        where = f"not in the mirror {ENV_MIRROR}={mirror}; looked for:\n{looked}"
    else:
        where = f"{ENV_MIRROR} is not set (no mirror folder to copy from)"
    return (
        f"{asset.filename} ({asset.name}) is not cached at {target} and {ENV_OFFLINE}=1 "
        f"forbids downloading it from {asset.url}.\n  {where}\n"
        f"  Fix: point {ENV_MIRROR} at a folder holding {asset.download_name}, or unset {ENV_OFFLINE}."
    )


def _download(url: str, dest: Path, label: str, progress: bool) -> None:
    """Stream `url` into `dest` with a progress bar; raise AssetError on HTTP or length errors."""
    import requests
    from tqdm.auto import tqdm

    # identity: Content-Length then counts the bytes we write, so truncation is detectable.
    headers = {"Accept-Encoding": "identity", "User-Agent": "llm-finetune-kit"}
    written, total = 0, None
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT, headers=headers) as resp:
            if resp.status_code >= 400:
                raise AssetError(f"HTTP {resp.status_code} {resp.reason}")
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if resp.headers.get("Content-Encoding", "identity") != "identity":
                # The server compressed anyway: Content-Length counts compressed bytes, which
                # urllib3 still checks for us; iter_content yields decompressed ones.
                total = None
            with (
                open(dest, "wb") as out,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=label,
                    disable=not progress,
                    file=sys.stderr,
                    leave=False,
                ) as bar,
            ):
                for chunk in resp.iter_content(CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as err:
        if total is not None and written < total:
            raise AssetError(
                f"truncated download: the connection closed before the {total} bytes "
                f"announced by Content-Length arrived ({err})"
            ) from None
        raise AssetError(f"download failed after {written} bytes: {err}") from None
    if total is not None and written != total:
        raise AssetError(f"truncated download: got {written} of {total} bytes (Content-Length)")


# ---------------------------------------------------------------- listing


def verify_cached(asset: Asset | str) -> str:
    """Re-hash a cached file, ignoring any stamp: "ok", "ok (size only)", "missing" or "corrupt: <why>".

    A corrupt file loses its stamp, so its next use re-hashes it and fetches it again
    (the file itself is left for that fetch to replace). An asset with neither a hash
    (pinned or recorded) nor a size is reported "unchecked".
    """
    asset = get_asset(asset)
    path = asset_path(asset)
    if not path.is_file():
        return "missing"
    try:
        _check(asset, path, f"the cache ({path})")
    except AssetError as err:
        _stamp_path(path).unlink(missing_ok=True)
        return f"corrupt: {str(err).splitlines()[0].split(' from ')[0]}"
    if expected_sha256(asset) is None:
        return "ok (size only)" if asset.size is not None else "unchecked (no hash or size known)"
    return "ok"


@dataclass(frozen=True)
class AssetStatus:
    """One row of `list_assets()`: `state` is "cached" (hash verified now), "corrupt" or "missing"."""

    name: str
    size: int | None  # bytes on disk, or the expected size when known and not cached
    cached: bool
    path: Path
    state: str = "missing"


def list_assets() -> list[AssetStatus]:
    """Every registered asset with its cache state, each cached file re-hashed (megabytes)."""
    rows = []
    for asset in ASSETS.values():
        path = asset_path(asset)
        verdict = verify_cached(asset)
        state = "cached" if verdict.startswith(("ok", "unchecked")) else verdict.split(":")[0]
        size = path.stat().st_size if path.is_file() else asset.size
        rows.append(AssetStatus(asset.name, size, state == "cached", path, state))
    return rows
