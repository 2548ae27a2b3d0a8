"""Bearer tokens for the team service: random, shown once, stored only as hashes.

``backdoor-sweep token add NAME`` makes ``bsw_`` + 43 URL-safe characters (32 random bytes from
`secrets`), prints it once and keeps ``sha256(token)`` in a JSON file that only its owner may read
(mode 0600, written atomically; the server refuses a file others can read). A plain SHA-256 is
enough here: the token carries 256 bits of randomness, so there is no dictionary to attack and a
slow hash would only slow every request. A presented token is compared with every stored hash in
constant time. The server re-reads the file when it changes, so ``token revoke`` takes effect at
once, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.errors import Conflict, NotFound

log = logging.getLogger("backdoor_sweep.service")

#: what a token's name may be (it is shown as the submitter of sweeps)
TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "bsw_"
#: longer presented tokens are refused before hashing
MAX_TOKEN_CHARS = 200


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    name: str
    created_at: str
    fingerprint: str  # the first 8 hex digits of the hash: tells tokens apart, reveals nothing


class Tokens:
    """The token file of one server (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._hashes: dict[str, str] = {}

    # -- the file -----------------------------------------------------------------------------
    def _read(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        self.check_mode()
        try:
            data = json.loads(self.path.read_text())
            entries = data["tokens"]
            if not isinstance(entries, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise SweepError(
                f"tokens file {self.path} is corrupt (expected JSON with a 'tokens' mapping)"
            ) from None
        return entries

    def check_mode(self) -> None:
        """Refuse a token file that anyone but its owner can read or write."""
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise SweepError(
                f"tokens file {self.path} must be readable by its owner only (chmod 600); "
                f"got mode {mode:04o}"
            )

    def _write(self, entries: dict[str, dict]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".tmp-{secrets.token_hex(8)}-{self.path.name}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": 1, "tokens": entries}, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    # -- commands -----------------------------------------------------------------------------
    def add(self, name: str) -> str:
        """A new token for ``name``; only its hash is kept. Returns the token (show it once)."""
        if not TOKEN_NAME.match(name):
            raise SweepError(
                f"token name must be 1-64 letters, digits, '_', '.', '@' or '-' "
                f"(starting with a letter or digit); got {name!r}"
            )
        entries = self._read()
        if name in entries:
            raise Conflict(
                f"token name must be new; {name!r} already has a token (revoke it first)"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        entries[name] = {
            "sha256": hash_token(token),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write(entries)
        return token

    def list(self) -> list[TokenInfo]:
        return [
            TokenInfo(name, e.get("created_at", ""), str(e.get("sha256", ""))[:8])
            for name, e in sorted(self._read().items())
        ]

    def revoke(self, name: str) -> None:
        entries = self._read()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise NotFound(f"token name must be one of the tokens ({known}); got {name!r}")
        del entries[name]
        self._write(entries)

    # -- the server's check -------------------------------------------------------------------
    def who(self, token: str | None) -> str | None:
        """The name whose token this is, or None (unknown, revoked, malformed or missing)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        hashes = self._current()
        presented = hash_token(token)
        found = None
        for name, stored in hashes.items():  # every hash is compared: no early exit
            if hmac.compare_digest(presented, stored):
                found = name
        return found

    def _current(self) -> dict[str, str]:
        """The hashes, re-read when the file changed (a revoke counts from the next request)."""
        try:
            st = self.path.stat()
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if seen != self._seen:
                try:
                    entries = self._read() if seen is not None else {}
                except SweepError as err:  # fail closed: no token is valid until it is fixed
                    log.error("every request is refused: %s", err)
                    entries = {}
                self._hashes = {n: str(e.get("sha256", "")) for n, e in entries.items()}
                self._seen = seen
            return self._hashes
