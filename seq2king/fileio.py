"""Writing files so that a failure never leaves a half-written output behind.

Every file seq2king writes goes through :class:`AtomicFiles`: data lands in a
temporary file beside its final path and is renamed into place only when the
whole group succeeds, so a reader never sees a new ``.bed`` beside an old
``.bim``, or half a ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFiles:
    """Temporary paths beside ``paths``; :meth:`commit` renames all into place, :meth:`discard` removes them.

    For writers that live across calls (a streamed KING matrix); a block of code
    uses :func:`atomic_files` instead. The files get the permissions a plain
    ``open()`` would give under the user's umask (``mkstemp`` alone makes them 0600,
    which nobody else in a shared project directory can read).
    """

    def __init__(self, *paths: str | os.PathLike):
        self.paths = [Path(p) for p in paths]
        self.tmps: list[Path] = []
        mode = 0o666 & ~_umask()
        try:
            for p in self.paths:
                p.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
                self.tmps.append(Path(tmp))
                os.fchmod(fd, mode)
                os.close(fd)
        except BaseException:
            self.discard()
            raise

    def commit(self) -> list[Path]:
        for tmp, final in zip(self.tmps, self.paths):
            os.replace(tmp, final)
        self.tmps = []
        return self.paths

    def discard(self) -> None:
        for tmp in self.tmps:
            tmp.unlink(missing_ok=True)
        self.tmps = []


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; rename them into place if the block succeeds."""
    files = AtomicFiles(*paths)
    try:
        yield list(files.tmps)
        files.commit()
    finally:
        files.discard()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_files(path) as (tmp,):
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")
