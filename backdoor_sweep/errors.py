"""The one exception a person can act on.

`SweepError` carries a one-line message naming the field, the value given and what is allowed.
The CLI prints it and exits with code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SweepError(Exception):
    """Bad input or a bad store: shown to the user as one line, exit code 2."""

    exit_code = 2
