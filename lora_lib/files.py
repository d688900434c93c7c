"""Writing a file all at once: a temporary file beside it, flushed to disk, then renamed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def current_umask() -> int:
    """This process's umask, read without changing it where Linux tells it (setting and restoring
    it would, for a moment, change the mode of files other threads create)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[Path], None] | str) -> Path:
    """Write ``path`` all or nothing. ``write`` is the text, or a function that writes a given path.

    A reader never sees a half-written file, and a process killed midway leaves only the old
    file (or none). The file gets the permissions the umask gives a new file, not the 0600 of
    a temporary file, so that other users of a shared folder can read it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(write, str):
            tmp.write_text(write, encoding="utf-8")
        else:
            write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
