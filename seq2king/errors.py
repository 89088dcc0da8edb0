"""The error types users see, and the one line each becomes.

Anything wrong with a user's files or values raises :class:`InputError` with a
single line that names the file or value, what is wrong, and how to fix it. A
file whose *contents* are malformed (a truncated ``.bed``, a labels row with too
few fields) raises its subclass :class:`FileFormatError`, so callers can tell a
bad file from a bad value (as tskit does). Both are ``ValueError`` subclasses:
library callers that catch ``ValueError`` catch them. A fault of the file system
(a read-only folder, a folder where a file should go, a full disk) is the
``OSError`` Python raises, naming its path; the command-line entry points turn
either into one line (:func:`error_line`) and exit 2, without a traceback.
Internal invariants use ``assert`` instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys


class InputError(ValueError):
    """Bad input from the user: a file, a value or an option."""


class FileFormatError(InputError):
    """A file that exists but whose contents are not in the expected format."""


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler's kill, ``kill PID``): raised so that every ``finally`` and ``except
    BaseException`` on the way out removes its temporary files, as Ctrl-C's KeyboardInterrupt does."""


EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process killed by SIGTERM

_WHAT = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EEXIST: "already exists",
}


def os_error_line(e: OSError) -> str:
    """``PATH: what went wrong`` for a file-system fault (the path Python names, else its description)."""
    what = _WHAT.get(e.errno, (e.strerror or str(e)).lower())
    where = e.filename2 if e.errno == errno.EXDEV else e.filename
    return f"{os.fsdecode(where)}: {what}" if where is not None else what


def user_error(e: BaseException | None) -> InputError | OSError | None:
    """The bad input or file-system fault behind ``e`` (Hydra and Lightning wrap what they call), else None.

    An ``OSError`` counts only when it names a path: one without (a network socket) is not the user's file.
    """
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, InputError) or (isinstance(e, OSError) and e.filename is not None):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def error_line(e: BaseException) -> str | None:
    """The one line a user sees for ``e`` (without ``seq2king: error:``), or None when it is a bug."""
    bad = user_error(e)
    if bad is None:
        return None
    if isinstance(bad, OSError):
        return os_error_line(bad)
    return (str(bad).strip().splitlines() or [type(bad).__name__])[-1]


def raise_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in this process (its children get the default again, so a
    worker pool's own SIGTERM still ends its workers quietly)."""
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked worker inherited this handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def exit_cleanly():
    """For a command's ``__main__``: SIGTERM raises :class:`Terminated` (so temporaries are removed on the way
    out), and ends the process with one line and status 143, as a shell reports a SIGTERM kill."""
    raise_on_sigterm()
    try:
        yield
    except Terminated:
        print("seq2king: terminated (SIGTERM); nothing half-written was left", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_TERMINATED) from None
