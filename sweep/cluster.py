"""Start Ray in-process or reach a cluster — every wait bounded, every refusal one line.

``ray.init(address=...)`` retries an address that does not answer for many minutes (20 attempts of
~35 s each on Ray 2.60), and Tune leaves a trial that no node can hold pending forever. So before
Ray is asked, `probe_address` checks within a few seconds that a gRPC server (what Ray's GCS is)
answers at the address; after it, `check_resources` compares what one trial asks for with the
largest node. ``ray.init`` also installs its own SIGTERM handler (``sys.exit`` in the middle of
Tune, a crash dump); `init_ray` puts the caller's handler back, so ``kill PID`` stops a sweep the
way the caller decided (the CLI: like Ctrl-C, with a resume hint).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from backdoor_sweep.errors import SweepError

#: Ray and Tune settings applied where Ray is started (``init_ray``), never on import: we write our
#: own store, so Tune's default loggers and its new console output stay off
RAY_ENVIRONMENT = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "1",
    "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S": "0",
}

TOKEN_HINT = (
    "a cluster with token authentication needs RAY_AUTH_MODE=token and its token in "
    "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
)

#: seconds `probe_address` waits for the address to answer
CONNECT_TIMEOUT_S = 5.0

#: the first bytes every HTTP/2 client sends (RFC 9113, 3.4); a gRPC server answers with SETTINGS
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP2_SETTINGS = 0x4


class _QuietTuneHints(logging.Filter):
    """Tune's own interrupt messages, said for a sweep: its resume hint names
    ``Tuner.restore(...)``, which is not how a sweep is resumed (the caller prints the command that
    is), so it is dropped; its stop notice is said in our words."""

    NOISE = ("Resume experiment with", "Resume training with")
    STOPPING = "Stop signal received"

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(n in message for n in self.NOISE):
            return False
        if self.STOPPING in message:
            record.msg, record.args = STOPPING_NOTICE, ()
        return True


#: what a stopping sweep says once, at the first Ctrl-C or SIGTERM
STOPPING_NOTICE = (
    "stopping: finished trials are in the store, running ones are dropped and run again on "
    "resume (Ctrl-C again to stop at once)"
)


def configure_ray_environment() -> None:
    """Set ``RAY_ENVIRONMENT`` (unless the user set a value) and quieten Tune's own messages."""
    for key, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    # we write our own store and keep Tune's loggers off, so Tune's result lookup has nothing to find
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tune_log = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _QuietTuneHints) for f in tune_log.filters):
        tune_log.addFilter(_QuietTuneHints())


def resolve_address(address: str) -> str | None:
    """``HOST:PORT`` to probe for ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``).

    ``auto`` is what Ray would pick (``RAY_ADDRESS``, else the last ``ray start`` on this machine);
    None when that cannot be told without asking Ray (then Ray's own error applies).
    """
    if address.startswith("ray://"):
        return address[len("ray://") :].split("/", 1)[0]
    if address not in ("auto", ""):
        return address
    env = os.environ.get("RAY_ADDRESS")
    if env and env != "auto":
        return resolve_address(env)
    try:  # Ray's own lookup of the last cluster started on this machine
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:
        return None
    try:
        return canonicalize_bootstrap_address("auto")
    except (ConnectionError, ValueError):
        raise SweepError(
            "--address auto must find a Ray cluster started on this machine (`ray start --head`) "
            "or in RAY_ADDRESS; found none"
        ) from None
    except Exception:  # a Ray whose lookup changed: leave it to ray.init
        return None


def probe_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse in one line, within ``timeout`` seconds, an address where no gRPC server answers.

    Connects over TCP and sends the HTTP/2 preface; Ray's GCS (a gRPC server) answers with a
    SETTINGS frame. A closed port, an unknown host, a silent host or another kind of server
    (an HTTP/1 web server) is refused here instead of in ``ray.init``'s minutes of retries.
    """
    target = resolve_address(address)
    if target is None:
        return
    host, sep, port_text = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SweepError(f"--address must be auto, HOST:PORT or ray://HOST:PORT; got {address!r}")
    # with TLS (RAY_USE_TLS) the server waits for a TLS handshake: a TCP connection is all we ask
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")
    why = _grpc_answer(host, int(port_text), timeout, http2=not tls)
    if why:
        raise SweepError(
            f"--address must reach a running Ray cluster; got {address!r} ({target}: {why})"
        )


def _grpc_answer(host: str, port: int, timeout: float, http2: bool = True) -> str | None:
    """None when an HTTP/2 server answers at host:port within ``timeout``; else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if not http2:
                return None
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_PREFACE + bytes([0, 0, 0, _HTTP2_SETTINGS, 0, 0, 0, 0, 0]))
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    return "the server closed the connection: not a Ray head node"
                head += chunk
    except socket.gaierror as err:
        return f"unknown host: {err.strerror or err}"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as err:
        return err.strerror or str(err)
    if head[3] != _HTTP2_SETTINGS:
        return "the server does not speak gRPC: not a Ray head node"
    return None


@contextmanager
def kept_handlers(*signals: int) -> Iterator[None]:
    """Put the caller's handlers of ``signals`` back when the block ends.

    Ray and Ray Tune install their own and leave them installed: ``ray.init`` a SIGTERM handler,
    ``Tuner.fit`` SIGINT and SIGUSR1 ones (a graceful stop) — without this the first Ctrl-C
    after an in-process sweep, in a notebook or in the next command of a test session, would
    only stop a run that has already ended. Signal handlers belong to the main thread;
    elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {sig: signal.getsignal(sig) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)


def callers_signals():
    """`kept_handlers` of the signals ``Tuner.fit`` takes over, around a Ray Tune run."""
    return kept_handlers(*TUNE_SIGNALS)


#: the signals ``Tuner.fit`` takes over (SIGUSR1 where the platform has it)
TUNE_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGUSR1") if hasattr(signal, name)
)


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to a cluster (``auto`` or HOST:PORT) or start Ray in-process. True if we started it.

    The address is probed first (`probe_address`). Connecting to HOST:PORT turns token
    authentication on when a token is at hand and ``RAY_AUTH_MODE`` is unset — what Ray itself
    does for ``auto`` but not for an explicit address. The SIGTERM handler in force before
    ``ray.init`` is put back after it.
    """
    configure_ray_environment()
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
    if address:
        probe_address(address)
        kwargs["address"] = address
        _token_auth_if_available()
    else:
        kwargs["include_dashboard"] = False
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        _local_token_auth()
    try:
        with kept_handlers(signal.SIGTERM):
            ray.init(**kwargs)
    except ConnectionError as err:
        raise SweepError(
            f"--address must reach a running Ray cluster that accepts this client; got {address!r} "
            f"({err}; {TOKEN_HINT})"
        ) from None
    except Exception as err:
        from ray.exceptions import AuthenticationError

        if isinstance(err, AuthenticationError):
            raise SweepError(f"--address {address!r} refused this client: {TOKEN_HINT}") from None
        raise
    return True


def _local_token_auth() -> None:
    """A new in-process Ray turns token authentication on when ``RAY_AUTH_MODE`` is unset, and
    says so in a warning on every run; we ask for that same mode explicitly, which Ray takes
    without the warning. An explicit ``RAY_AUTH_MODE`` (``disabled`` included) is left alone."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            AUTH_MODE_ENV_VAR,
            _enable_token_auth,
        )
    except ImportError:  # a Ray without token authentication
        return
    if AUTH_MODE_ENV_VAR not in os.environ:
        _enable_token_auth()  # sets it and refreshes Ray's cached configuration


def _token_auth_if_available() -> None:
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def largest_node() -> dict[str, float]:
    """CPUs and GPUs of the largest alive node of the connected cluster (each the maximum)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive", n.get("alive", False))]
    return {
        kind: max((float(n.get("Resources", {}).get(kind, 0.0)) for n in nodes), default=0.0)
        for kind in ("CPU", "GPU")
    }


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Refuse a trial that no node of the cluster can hold (Tune would leave it pending forever).

    Compares with the nodes alive now: a cluster that adds larger nodes later (autoscaling) must be
    grown first.
    """
    biggest = largest_node()
    for field, want, kind in (
        ("execution.cpus_per_trial", cpus_per_trial, "CPU"),
        ("execution.gpus_per_trial", gpus_per_trial, "GPU"),
    ):
        if want > biggest[kind]:
            have = f"{biggest[kind]:g}" if biggest[kind] else "0 (no node has one)"
            raise SweepError(
                f"{field} must be at most {have}, the most {kind}s of any node of the Ray "
                f"cluster; got {want:g}"
            )
