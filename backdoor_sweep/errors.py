"""The one exception a person can act on.

`SweepError` carries a one-line message naming the field, the value given and what is allowed.
The CLI prints it and exits with code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class SweepError(Exception):
    """Bad input or a bad store: shown to the user as one line, exit code 2."""

    exit_code = 2


#: longest rendering of a user's value inside an error message
SHOWN_CHARS = 80


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters with "…", without rendering all of a huge value.

    Error messages quote what the user wrote; a value may be a list of a million items or a
    string of a megabyte. `reprlib` stops after a few items per level, so this stays cheap.
    """
    import reprlib

    if isinstance(value, str | bytes):
        text = repr(value[: limit + 1])  # the head of a long text, not its middle
    else:
        r = reprlib.Repr()
        r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 4, 12, 12, 8, 8
        r.maxstring = r.maxother = r.maxlong = limit
        text = r.repr(value)
    return cut(text, limit)


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last one "…" when anything was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
