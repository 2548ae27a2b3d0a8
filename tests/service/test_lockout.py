"""Failed authentications: a client that keeps presenting bad tokens is locked out (429), others
are not; the window slides; memory stays bounded. The counting runs on an injected clock, the
lockout on a real server on loopback, its clients on other loopback addresses (127.0.0.2…)."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from backdoor_sweep.service.lockout import Lockout, client_key
from tests.conftest import cli
from tests.service.live_server import LiveServer, add_token, wait_for

BAD = {"Authorization": "Bearer bsw_" + "A" * 43}


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- counting, on an injected clock ------------------------------------------------------------
def test_failures_within_the_window_lock_a_client_until_the_oldest_leaves_it(caplog):
    clock = Clock()
    lockout = Lockout(3, 10.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="backdoor_sweep.service"):
        assert not lockout.failed("10.0.0.1")
        clock.t += 1
        assert not lockout.failed("10.0.0.1")
        clock.t += 1
        assert lockout.retry_after("10.0.0.1") is None
        assert lockout.failed("10.0.0.1")  # the third within 10 s
    assert [r.getMessage() for r in caplog.records] == [
        "client 10.0.0.1 locked out for 8 s: 3 failed authentications within 10 s"
    ]
    assert lockout.retry_after("10.0.0.1") == pytest.approx(8.0)  # the first was at 1000
    assert lockout.retry_after("10.0.0.2") is None  # another client
    clock.t = 1009.5
    assert lockout.retry_after("10.0.0.1") == pytest.approx(0.5)
    clock.t = 1010.0  # the first failure leaves the window
    assert lockout.retry_after("10.0.0.1") is None
    assert lockout.failed("10.0.0.1")  # two are still in the window: one more locks again
    assert lockout.retry_after("10.0.0.1") == pytest.approx(1.0)


def test_failures_spread_wider_than_the_window_never_lock():
    clock = Clock()
    lockout = Lockout(3, 10.0, clock=clock)
    for _ in range(50):
        clock.t += 5.0  # at most two failures within any 10 s
        assert not lockout.failed("10.0.0.1")
        assert lockout.retry_after("10.0.0.1") is None


def test_memory_is_bounded_expired_clients_go_first_then_the_longest_quiet():
    clock = Clock()
    lockout = Lockout(2, 10.0, max_clients=100, clock=clock)
    for i in range(1000):
        lockout.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(lockout) <= 100
    assert len(lockout) == 100 and "10.0.0.0" not in lockout and "10.0.3.231" in lockout
    clock.t += 10.0  # every failure so far leaves the window: the next forgets them all
    lockout.failed("192.0.2.1")
    assert len(lockout) == 1
    for i in range(99):
        lockout.failed(f"198.51.100.{i}")
    assert lockout.failed("192.0.2.1") and len(lockout) == 100  # locked, and now the newest
    lockout.failed("203.0.113.1")  # the table is full: the longest quiet client goes
    assert "198.51.100.0" not in lockout
    assert lockout.retry_after("192.0.2.1") is not None


def test_a_client_is_its_address_an_ipv6_client_its_64_network():
    assert client_key({"client": ("127.0.0.2", 5000)}) == "127.0.0.2"
    assert client_key({"client": ("2001:db8:1:2:aaaa::1", 1)}) == "2001:db8:1:2::/64"
    assert client_key({"client": ("2001:db8:1:2:ffff::9", 1)}) == "2001:db8:1:2::/64"
    assert client_key({"client": ("::ffff:10.1.2.3", 1)}) == "10.1.2.3"
    assert client_key({"client": None}) == client_key({}) == "unknown"


# -- a real server ----------------------------------------------------------------------------
def from_address(server: LiveServer, address: str, token: str | None = None) -> httpx.Client:
    """A client of ``server`` whose connections come from ``address`` (any of 127.0.0.0/8)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, headers=headers, transport=transport, timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    store = tmp_path_factory.mktemp("lockout")
    tokens = {name: add_token(store, name) for name in ("alice", "bob")}
    server = LiveServer(store, "--auth-failures", "3", "--auth-window", "600").start()
    yield server, tokens
    server.close()


def test_a_client_presenting_bad_tokens_is_locked_out_and_no_other_is(served):
    server, tokens = served
    with from_address(server, "127.0.0.2") as mallory:
        for _ in range(5):  # no token at all guesses nothing: not counted
            assert mallory.get("/sweeps").status_code == 401
        for _ in range(3):
            assert mallory.get("/sweeps", headers=BAD).status_code == 401
        for headers in (
            {"Authorization": f"Bearer {tokens['alice']}"},  # not even a valid token is looked at
            {**BAD, "X-Forwarded-For": "10.9.8.7"},  # no proxy is trusted: no new identity
            {},
        ):
            r = mallory.get("/whoami", headers=headers)
            assert r.status_code == 429, r.text
            retry = int(r.headers["retry-after"])
            assert 1 <= retry <= 600
            assert r.json() == {
                "error": "failed authentications from 127.0.0.2 must be fewer than 3 within "
                f"600 s; locked out, retry after {retry} s"
            }
            assert r.headers["x-content-type-options"] == "nosniff"
        assert mallory.get("/health").json() == {"status": "ok"}  # open routes stay open
    with from_address(server, "127.0.0.3", tokens["alice"]) as alice:
        assert alice.get("/whoami").json() == {"name": "alice"}
        assert alice.get("/whoami", headers=BAD).status_code == 401  # one failure of its own
        assert alice.get("/whoami").json() == {"name": "alice"}
    with from_address(server, "127.0.0.2", tokens["alice"]) as mallory:
        assert mallory.get("/whoami").status_code == 429  # others' successes reset nothing
    with server.client(tokens["bob"]) as bob:
        assert bob.get("/whoami").json() == {"name": "bob"}
    lines = [line for line in server.tail(200).splitlines() if "locked out" in line]
    assert len(lines) == 1
    assert re.search(
        r"client 127\.0\.0\.2 locked out for \d+ s: 3 failed authentications within 600 s$",
        lines[0],
    )


def test_a_success_does_not_reset_the_count(served):
    server, tokens = served
    with from_address(server, "127.0.0.4", tokens["bob"]) as carol:
        assert carol.get("/whoami", headers=BAD).status_code == 401
        assert carol.get("/whoami", headers=BAD).status_code == 401
        assert carol.get("/whoami").status_code == 200
        assert carol.get("/whoami", headers=BAD).status_code == 401  # the third failure
        assert carol.get("/whoami").status_code == 429


@pytest.mark.slow
def test_a_lockout_ends_with_its_window(tmp_path):
    store = tmp_path / "store"
    token = add_token(store, "alice")
    server = LiveServer(store, "--auth-failures", "2", "--auth-window", "1").start()
    try:
        with from_address(server, "127.0.0.5", token) as client:
            # failures until the lockout (two within one second; more tries on a slow machine)
            locked = None
            for _ in range(20):
                locked = client.get("/whoami", headers=BAD)
                if locked.status_code == 429:
                    break
            assert locked is not None and locked.status_code == 429
            assert locked.headers["retry-after"] == "1"
            ok = wait_for(
                lambda: (r := client.get("/whoami")).status_code == 200 and r,
                10,
                "the lockout did not end",
                every=0.1,
            )
            assert ok.json() == {"name": "alice"}
    finally:
        server.close()


def test_the_limits_are_checked_when_the_server_starts(tmp_path):
    store = tmp_path / "store"
    add_token(store, "alice")
    for args, line in (
        (["--auth-failures", "0"], "--auth-failures must be at least 1; got 0"),
        (["--auth-window", "0"], "--auth-window must be a positive number of seconds; got 0.0"),
        (["--auth-window", "inf"], "--auth-window must be a positive number of seconds; got inf"),
        (
            ["--trusted-proxy", "*"],
            "--trusted-proxy must be an IP address or network (10.0.0.5, 10.0.0.0/24); got '*'",
        ),
    ):
        out = cli("serve", "--store", str(store), *args)
        assert (out.returncode, out.stderr.strip()) == (2, f"error: {line}"), args
