"""Files written whole or not at all: a temporary file beside the target, then one rename.

Every file the kit writes for a long run (responses, scores, checkpoints, models, plots,
CSV splits) goes through `atomic_path`, so a crash or Ctrl-C mid-write leaves the
previous file intact and never a half-written one that a resumed run would trust.
(Downloads have their own verified variant in `ftkit.io.assets`.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def new_file_mode() -> int:
    """The permission bits a file the user creates gets (0o666 minus the umask), not mkstemp's 0o600."""
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally it replaces `path`.

    Write the whole file to the yielded path (`torch.save`, `fig.savefig`, `to_csv`, ...).
    The temporary file lives in the target's folder, so `os.replace` is atomic; it is
    flushed to disk first, and removed if the block raises.
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
