"""Files written whole or not at all: a temporary file beside the target, then one rename.

Every file the kit writes for a long run (responses, scores, checkpoints, models, plots,
CSV splits) goes through `atomic_path`, so a crash or Ctrl-C mid-write leaves the
previous file intact and never a half-written one that a resumed run would trust.
(Downloads have their own verified variant in `ftkit.io.assets`.)
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def new_file_mode() -> int:
    """The permission bits a file the user creates gets (0o666 minus the umask), not mkstemp's 0o600."""
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


# How torch.save's zip writer reports a short write (no errno): "[enforce fail at
# inline_container.cc:672] . unexpected pos 17536512 vs 17536400", "file write failed".
TORCH_SHORT_WRITE = ("unexpected pos", "file write failed")


class DiskFullError(OSError, RuntimeError):
    """The disk (or the user's quota) filled up while a file was being written."""


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover


def disk_full(err: BaseException, path: Path, tmp: Path) -> DiskFullError | None:
    """`err` as a DiskFullError naming the file and the space it needs, if it is one; else None."""
    code = getattr(err, "errno", None)
    short_write = isinstance(err, RuntimeError) and any(m in str(err) for m in TORCH_SHORT_WRITE)
    if code not in (errno.ENOSPC, errno.EDQUOT) and not short_write:
        return None
    written = tmp.stat().st_size if tmp.exists() else 0
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = 0
    return DiskFullError(
        errno.ENOSPC,
        f"no space left on the disk to write {path}: it needs more than the "
        f"{_human(written)} written before the disk filled ({_human(free)} free in "
        f"{path.parent}). Free some space, or write to another disk (--out); nothing of "
        f"{path.name} was kept half-written",
    )


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally it replaces `path`.

    Write the whole file to the yielded path (`torch.save`, `fig.savefig`, `to_csv`, ...).
    The temporary file lives in the target's folder, so `os.replace` is atomic; it is
    flushed to disk first, and removed if the block raises. A full disk (torch.save's
    writer says only "unexpected pos ...") raises a DiskFullError naming the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, new_file_mode())
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        full = disk_full(err, path, tmp)
        if full is None:
            raise
        raise full from err
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
