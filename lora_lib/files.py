"""Writing a file all at once: a temporary file beside it, flushed to disk, then renamed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
