"""Writing files so that a failure never leaves a half-written output behind.

Every file seq2king writes goes through :class:`AtomicFiles`: data lands in a
temporary file beside its final path and is renamed into place only when the
whole group succeeds, so a reader never sees a new ``.bed`` beside an old
``.bim``, or half a ``summary.json``.

A temporary's name says whose it is, ``.NAME.HOST-PID-XXXXXXXX.tmp``: an exception
or SIGTERM (:class:`~seq2king.errors.Terminated`) removes it on the way out, and
what a process killed outright (SIGKILL, a node lost) leaves is swept by the next
process that writes into the same folder (:func:`sweep_stale`), once its PID is
gone from this host.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
_TEMP = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp(?:\.[A-Za-z0-9]+)?$")
_swept: set[str] = set()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.{HOST}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporaries (files or folders) in ``folder`` left by seq2king processes of this host that
    no longer run; returns what was removed. Once per folder and process: writers call it on their way in."""
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _swept:
        return []
    _swept.add(key)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or m["host"] != HOST or _alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


def ensure_folder(folder: str | os.PathLike) -> Path:
    """``folder`` created (with its parents) if missing; a file in its place, or in a parent's place, is
    ``NotADirectoryError`` naming that file (``mkdir`` would say only "File exists")."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocker)) from None
    except NotADirectoryError:
        blocker = next((p for p in folder.parents if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocker)) from None
    return folder


class AtomicFiles:
    """Temporary paths beside ``paths``; :meth:`commit` renames all into place, :meth:`discard` removes them.

    For writers that live across calls (a streamed KING matrix); a block of code
    uses :func:`atomic_files` instead. The files get the permissions a plain
    ``open()`` would give under the user's umask (``mkstemp`` alone makes them 0600,
    which nobody else in a shared project directory can read). A final path that is
    a folder, or a folder that cannot be written, fails here, before any work, with
    the ``OSError`` naming the final path.
    """

    def __init__(self, *paths: str | os.PathLike):
        self.paths = [Path(p) for p in paths]
        self.tmps: list[Path] = []
        mode = 0o666 & ~_umask()
        try:
            for p in self.paths:
                if p.is_dir():
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(p))
                ensure_folder(p.parent)
                sweep_stale(p.parent)
                try:
                    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(p), suffix=".tmp", dir=p.parent)
                except OSError as e:  # name the file the user asked for, not our temporary
                    raise OSError(e.errno, e.strerror, str(p)) from None
                self.tmps.append(Path(tmp))
                os.fchmod(fd, mode)
                os.close(fd)
        except BaseException:
            self.discard()
            raise

    def commit(self) -> list[Path]:
        for tmp, final in zip(self.tmps, self.paths):
            try:
                os.replace(tmp, final)
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(final)) from None
        self.tmps = []
        return self.paths

    def discard(self) -> None:
        for tmp in self.tmps:
            tmp.unlink(missing_ok=True)
        self.tmps = []


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """An ``OSError`` that names no file (a ``write`` on an open file: a full disk) re-raised naming ``path``,
    the output the user asked for."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


@contextlib.contextmanager
def atomic_files(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; rename them into place if the block succeeds. A fault of the
    block's writes that names no file names the first of ``paths``."""
    files = AtomicFiles(*paths)
    try:
        with naming(paths[0]):
            yield list(files.tmps)
        files.commit()
    finally:
        files.discard()


@contextlib.contextmanager
def temp_folder(beside: str | os.PathLike) -> Iterator[Path]:
    """A scratch folder next to ``beside`` (same file system), removed on the way out; named as
    temporaries are, so a killed process's scratch is swept by the next writer there."""
    beside = Path(beside)
    ensure_folder(beside.parent)
    sweep_stale(beside.parent)
    path = Path(tempfile.mkdtemp(prefix=_temp_prefix(beside), suffix=".tmp", dir=beside.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_files(path) as (tmp,):
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")
