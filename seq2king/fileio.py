"""Writing files so that a failure never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; rename them into place on success.

    All are renamed into place only after the block succeeds, so a reader never
    sees a new ``.bed`` beside an old ``.bim``.
    """
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(_deferred(p)) for p in paths]
        yield [t.tmp for t in tmps]
        for t in tmps:
            t.commit()


class _deferred:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self):
        os.replace(self.tmp, self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.tmp.unlink(missing_ok=True)
        return False
