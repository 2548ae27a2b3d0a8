"""The HTTP status of each kind of one-line error the service answers with.

Every error reaches the client as ``{"error": "<one line>"}``; the line is the same a `SweepError`
gives on the command line. A plain `SweepError` is bad input (422); these subclasses say more.
"""

from __future__ import annotations

from backdoor_sweep.errors import SweepError


class NotFound(SweepError):
    """No sweep (or page) of that name: 404."""

    status_code = 404


class Forbidden(SweepError):
    """The request asks the server to read files it does not serve (outside its data roots): 403."""

    status_code = 403


class Conflict(SweepError):
    """The request contradicts the sweep's state (a name taken, a sweep not running): 409."""

    status_code = 409


class TooLarge(SweepError):
    """A request body over the server's limit: 413."""

    status_code = 413


class Busy(SweepError):
    """The server could not start the work within its bound (pages being built): 503."""

    status_code = 503


class ServerFault(SweepError):
    """Work of the server that failed for a reason other than the request (a crash): 500."""

    status_code = 500


def status_of(err: SweepError) -> int:
    """The HTTP status for ``err``: its class's, else 422 (bad input)."""
    return getattr(err, "status_code", 422)
