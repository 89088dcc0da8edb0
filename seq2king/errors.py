"""The error types users see.

Anything wrong with a user's files or values raises :class:`InputError` with a
single line that names the file or value, what is wrong, and how to fix it. A
file whose *contents* are malformed (a truncated ``.bed``, a labels row with too
few fields) raises its subclass :class:`FileFormatError`, so callers can tell a
bad file from a bad value (as tskit does). Both are ``ValueError`` subclasses:
library callers that catch ``ValueError`` catch them. The command-line entry
points print the line and exit non-zero, without a traceback. Internal
invariants use ``assert`` instead.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a value or an option."""


class FileFormatError(InputError):
    """A file that exists but whose contents are not in the expected format."""
