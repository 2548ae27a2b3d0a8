"""The command line of the team service: ``backdoor-sweep serve`` and ``backdoor-sweep token``.

`register` adds them to the main typer app (`backdoor_sweep.cli`). FastAPI and uvicorn are
imported only when ``serve`` runs.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import math
import os
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

from backdoor_sweep.cli.options import AddressOpt
from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.lockout import MAX_FAILURES, WINDOW_S

#: ``serve`` without ``--port`` takes the first free port from here on
FIRST_PORT = 8265
PORTS_TRIED = 20

StoreOpt = Annotated[
    Path,
    typer.Option("--store", help="Result store folder the service serves (default ./results)."),
]
TokensOpt = Annotated[
    Path | None,
    typer.Option("--tokens", help="Token file (default STORE/.service/tokens.json)."),
]

token_app = typer.Typer(
    no_args_is_help=True,
    help="Bearer tokens of the team service: add (printed once), list, revoke.",
)


def tokens_path(store: Path, tokens: Path | None) -> Path:
    from sweep.store import SERVICE_DIR

    return tokens if tokens is not None else store / SERVICE_DIR / "tokens.json"


@token_app.command("add")
def token_add(
    name: Annotated[str, typer.Argument(help="Who the token is for (shown as the submitter).")],
    store: StoreOpt = Path("results"),
    tokens: TokensOpt = None,
) -> None:
    """Make a token for NAME and print it once; only its hash is stored."""
    from backdoor_sweep.service.auth import Tokens

    path = tokens_path(store, tokens)
    token = Tokens(path).add(name)
    typer.echo(token)
    typer.echo(f"token for {name}: shown once, only its hash is kept in {path}", err=True)


@token_app.command("list")
def token_list(store: StoreOpt = Path("results"), tokens: TokensOpt = None) -> None:
    """The tokens' names, creation times and fingerprints (never the tokens)."""
    from backdoor_sweep.service.auth import Tokens

    infos = Tokens(tokens_path(store, tokens)).list()
    if not infos:
        typer.echo("no tokens (add one with `backdoor-sweep token add NAME`)")
    for info in infos:
        typer.echo(f"{info.name}\tcreated {info.created_at}\tsha256 {info.fingerprint}…")


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="Whose token to revoke.")],
    store: StoreOpt = Path("results"),
    tokens: TokensOpt = None,
) -> None:
    """Revoke NAME's token: a running server refuses it from its next request."""
    from backdoor_sweep.service.auth import Tokens

    Tokens(tokens_path(store, tokens)).revoke(name)
    typer.echo(f"revoked the token of {name}")


def serve(
    store: StoreOpt = Path("results"),
    address: AddressOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise).")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option("--port", help=f"Port (default: the first free one from {FIRST_PORT})."),
    ] = None,
    tokens: TokensOpt = None,
    max_running: Annotated[
        int, typer.Option("--max-running", help="Sweeps run at once; more wait in a queue.")
    ] = 2,
    query_timeout: Annotated[
        float, typer.Option("--query-timeout", help="Seconds a SQL query may run.")
    ] = 10.0,
    query_rows: Annotated[
        int, typer.Option("--query-rows", help="Most rows a SQL query may return.")
    ] = 10_000,
    body_limit: Annotated[
        int, typer.Option("--body-limit", help="Largest request body (a spec) in bytes.")
    ] = 1_000_000,
    cancel_grace: Annotated[
        float,
        typer.Option(
            "--cancel-grace", help="Seconds a cancelled sweep gets to stop before SIGKILL."
        ),
    ] = 30.0,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")
    ] = None,
    auth_failures: Annotated[
        int,
        typer.Option(
            "--auth-failures",
            help="Failed authentications within --auth-window that lock a client out (429).",
        ),
    ] = MAX_FAILURES,
    auth_window: Annotated[
        float,
        typer.Option(
            "--auth-window", help="Seconds over which failed authentications are counted."
        ),
    ] = WINDOW_S,
    data_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--data-root",
            help="Folder with the dataset files: specs sent over HTTP read files (datasets, "
            "trigger images) only under these (repeatable; default none: bundled datasets only).",
        ),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            help="Address (or network) of a proxy whose X-Forwarded-For names the client "
            "(repeatable; default none: the client is the connection's address).",
        ),
    ] = None,
) -> None:
    """Serve the store to a team: an authenticated HTTP API (docs at /docs) and web pages."""
    import uvicorn

    from backdoor_sweep.service.app import ServiceConfig, create_app
    from backdoor_sweep.service.auth import Tokens

    root = store.resolve()
    if not root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(store)!r} (not found)")
    token_file = tokens_path(root, tokens)
    if not token_file.is_file() or not Tokens(token_file).list():
        raise SweepError(
            f"--tokens must hold at least one token; {token_file} has none "
            f"(add one with `backdoor-sweep token add NAME --store {store}`)"
        )
    if (tls_cert is None) != (tls_key is None):
        raise SweepError("--tls-cert and --tls-key must be given together; got one of them")
    for what, value in (
        ("--max-running", max_running),
        ("--query-rows", query_rows),
        ("--body-limit", body_limit),
        ("--auth-failures", auth_failures),
    ):
        if value < 1:
            raise SweepError(f"{what} must be at least 1; got {value}")
    for what, value in (
        ("--query-timeout", query_timeout),
        ("--cancel-grace", cancel_grace),
        ("--auth-window", auth_window),
    ):
        if not 0 < value < math.inf:
            raise SweepError(f"{what} must be a positive number of seconds; got {value}")
    roots = [checked_data_root(d) for d in data_root or []]
    proxies = [checked_proxy(p) for p in trusted_proxy or []]
    lock = hold_server_lock(root)  # noqa: F841  (held until the process ends)
    sock = bind(host, port)
    config = ServiceConfig(
        store=root,
        tokens=token_file,
        address=address,
        max_running=max_running,
        body_limit=body_limit,
        query_timeout_s=query_timeout,
        query_max_rows=query_rows,
        cancel_grace_s=cancel_grace,
        auth_failures=auth_failures,
        auth_window_s=auth_window,
        data_roots=tuple(roots),
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    scheme = "https" if tls_cert else "http"
    bound_host, bound_port = sock.getsockname()[:2]
    if not _loopback(host) and tls_cert is None:
        typer.echo(
            f"warning: listening on {host} without TLS: tokens cross the network in clear text "
            "(give --tls-cert and --tls-key, or put a TLS proxy in front)",
            err=True,
        )
    typer.echo(
        f"specs sent over HTTP read files only under {', '.join(map(str, roots))}"
        if roots
        else "specs sent over HTTP read no files (bundled datasets only; see --data-root)",
        err=True,
    )
    typer.echo(
        f"serving store {root} at {scheme}://{bound_host}:{bound_port}/ (API docs at /docs); "
        f"sweeps run on {address or 'an in-process Ray each'}; Ctrl-C stops it",
        err=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level="info",
            timeout_graceful_shutdown=int(cancel_grace) + 5,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            # X-Forwarded-For only from the proxies named: otherwise anyone on this host could
            # name any client and step around the lockout (uvicorn trusts loopback by default)
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )
    )
    # uvicorn stops gracefully on SIGINT/SIGTERM, then raises the signal again for the handler
    # it found: a stop is the normal end of a server, so that handler does nothing
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])
    typer.echo("server stopped", err=True)


def checked_data_root(folder: Path) -> Path:
    """``--data-root`` resolved (symlinks and ``..``), when it is an existing folder."""
    resolved = folder.expanduser().resolve()
    if not resolved.is_dir():
        why = "not a folder" if resolved.exists() else "not found"
        raise SweepError(f"--data-root must be an existing folder; got {str(folder)!r} ({why})")
    return resolved


def checked_proxy(value: str) -> str:
    """``--trusted-proxy``: an IP address or network (never ``*``: that trusts everyone)."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise SweepError(
            f"--trusted-proxy must be an IP address or network (10.0.0.5, 10.0.0.0/24); got {value!r}"
        ) from None


def hold_server_lock(root: Path):
    """Take ``STORE/.service/server.lock`` for this process: one server per store."""
    from sweep.store import SERVICE_DIR

    path = root / SERVICE_DIR / "server.lock"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115  (kept open: the lock lives as long as the process)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        raise SweepError(
            f"--store {root} is already served by {holder}; one server per store"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
    fh.flush()
    return fh


def bind(host: str, port: int | None) -> socket.socket:
    """A listening socket on ``host:port``, or on the first free port from `FIRST_PORT`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports = [port] if port is not None else range(FIRST_PORT, FIRST_PORT + PORTS_TRIED)
    last: OSError | None = None
    for p in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, p))
        except OSError as err:
            sock.close()
            last = err
            continue
        sock.listen(128)
        sock.set_inheritable(False)
        return sock
    wanted = (
        f"{port}" if port is not None else f"one of {FIRST_PORT}-{FIRST_PORT + PORTS_TRIED - 1}"
    )
    raise SweepError(
        f"--port must be free on {host}; got {wanted} ({last.strerror if last else 'in use'})"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``token`` to the ``backdoor-sweep`` command line."""
    app.command("serve")(serve)
    app.add_typer(token_app, name="token")
