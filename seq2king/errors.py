"""The one error type users see.

Anything wrong with a user's files or values raises :class:`InputError` with a
single line that names the file or value, what is wrong, and how to fix it.
The command-line entry points print that line and exit non-zero, without a
traceback. Internal invariants use ``assert`` instead.
"""


class InputError(Exception):
    """Bad input from the user: a file, a value or an option."""
