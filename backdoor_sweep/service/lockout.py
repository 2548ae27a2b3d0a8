"""Failed authentications per client: after too many in a window, a client is locked out (429).

A token carries 256 random bits, so guessing one is hopeless; the limit is there so that a client
that keeps presenting bad tokens (a script with a stale token, a scanner, someone guessing) costs
the server nothing and shows up in its log. A *failure* is a request to a guarded route that
presents an ``Authorization`` header which names no valid token (a request with no header at all
guesses nothing and is not counted). When a client has `Lockout.max_failures` failures within
the last `Lockout.window_s` seconds, every further request of it to a guarded route is answered
429 with ``Retry-After`` — before its token is looked at, so a locked-out client learns nothing,
not even from timing — until the oldest of those failures is older than the window (a sliding
window: one failure after that locks it again at once). A success resets nothing: a client that
holds one valid token cannot use it to keep guessing others, and one client's failures or
successes never touch another's count.

A client is its remote address as the server sees it (an IPv6 client by its /64 network, which
one host usually owns whole). Memory stays bounded: at most `MAX_CLIENTS` clients are tracked,
each with at most ``max_failures`` timestamps; clients whose failures have all expired are
forgotten first, then the one whose last failure is oldest.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

log = logging.getLogger("backdoor_sweep.service")

#: ``serve``'s defaults: 10 failed authentications within 60 s lock a client out
MAX_FAILURES = 10
WINDOW_S = 60.0
#: the most clients tracked at once (each holds at most ``max_failures`` floats)
MAX_CLIENTS = 10_000


def client_key(scope: dict) -> str:
    """Who is asking: the remote address of an ASGI scope, an IPv6 client by its /64 network."""
    client = scope.get("client")
    host = client[0] if client else None
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Lockout:
    """Failed authentications per client in a sliding window (see the module docstring).

    Parameters
    ----------
    max_failures
        Failures within ``window_s`` that lock a client out.
    window_s
        The window, in seconds; a lockout lasts until the oldest counted failure leaves it.
    max_clients
        The most clients tracked at once.
    clock
        Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self.max_clients, self.clock = max_clients, clock
        #: client -> its recent failures (oldest first); ordered by each client's last failure
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._warned_full = False

    def __len__(self) -> int:
        return len(self._failures)

    def __contains__(self, client: object) -> bool:
        return client in self._failures

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it is not locked out."""
        with self._lock:
            failures = self._failures.get(client)
            if failures is None or len(failures) < self.max_failures:
                return None
            left = failures[0] + self.window_s - self.clock()
            return left if left > 0 else None

    def failed(self, client: str) -> bool:
        """Count a failed authentication of ``client``; True when it locks the client out."""
        with self._lock:
            now = self.clock()
            self._forget_expired(now)
            failures = self._failures.get(client)
            if failures is None:
                if len(self._failures) >= self.max_clients:
                    self._failures.popitem(last=False)
                    if not self._warned_full:
                        log.warning(
                            "tracking failed authentications of %d clients (the most): "
                            "forgetting the one whose last failure is oldest",
                            self.max_clients,
                        )
                        self._warned_full = True
                failures = self._failures[client] = deque(maxlen=self.max_failures)
            while failures and failures[0] <= now - self.window_s:
                failures.popleft()
            failures.append(now)
            self._failures.move_to_end(client)
            locked = len(failures) >= self.max_failures
            lasts = failures[0] + self.window_s - now
        if locked:
            log.warning(
                "client %s locked out for %d s: %d failed authentications within %g s",
                client,
                max(1, math.ceil(lasts)),
                self.max_failures,
                self.window_s,
            )
        return locked

    def _forget_expired(self, now: float) -> None:
        """Drop clients whose last failure left the window (they are first in the order)."""
        while self._failures:
            client, failures = next(iter(self._failures.items()))
            if failures and failures[-1] > now - self.window_s:
                return
            del self._failures[client]
