"""Writing files that hold secrets (private keys, seeds, passwords) or must appear whole.

One place for the two ways lintas writes such a file:

* :func:`open_private` / :func:`write_private`: a new file, created with its mode from the
  start (0600 unless told otherwise), so a secret is never readable by others, not even
  between a create and a chmod. It refuses to replace anything (``FileExistsError``): a key,
  a seed or an archive that exists is never overwritten; each caller says so in its own
  words.
* :func:`replacing` / :func:`replace_file`: a file that takes the place of ``path`` whole
  or not at all, written as a hidden sibling (itself created with its final mode) and
  renamed over ``path``; a reader never sees half of it, and a failed write leaves
  ``path`` as it was.

The mode goes through the process umask, as for any file created.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["open_private", "replace_file", "replacing", "write_private"]


def _bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


def open_private(path: Path, *, mode: int = 0o600) -> IO[bytes]:
    """``path`` created for writing with ``mode``; ``FileExistsError`` if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    return os.fdopen(fd, "wb")


def write_private(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """A new file ``path`` (``mode`` from the start) holding ``data`` (text as UTF-8);
    ``FileExistsError`` if it exists."""
    with open_private(path, mode=mode) as out:
        out.write(_bytes(data))


@contextmanager
def replacing(path: Path, *, mode: int = 0o600) -> Iterator[IO[bytes]]:
    """A file to write that replaces ``path`` when the block ends without an error; on an
    error ``path`` is untouched and the partial file removed.

    The hidden sibling is named after this process, so two writers of one path never
    write into each other's file; one left by a process that was killed is replaced."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        with open_private(tmp, mode=mode) as out:
            yield out
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_file(path: Path, data: bytes | str, *, mode: int = 0o600) -> None:
    """``path`` replaced whole by ``data`` (text as UTF-8), with ``mode``."""
    with replacing(path, mode=mode) as out:
        out.write(_bytes(data))
