"""The team service's ASGI application: FastAPI with a guard in front of every route.

`create_app` wires the parts: `auth.Tokens` (who is asking), `jobs.Jobs` (running sweeps),
`analyses.Results` (what the pages draw), `documents.Documents` (report and explain pages), the
JSON API (`api`) and the pages (`pages`). The guard (`Guard`, plain ASGI, before routing) answers
every request without a valid bearer token with the same 401 — an unknown route included, so a
stranger learns nothing, not even which routes exist — except ``/health`` and the static page
shells (HTML, JS and CSS without data; the pages fetch everything with the token). A client that
keeps presenting bad tokens is locked out for a while (429 with ``Retry-After``, before its token
is looked at; `lockout.Lockout`). It also bounds
request bodies: a declared length over the limit is refused before a byte is read, a streamed body
as soon as it passes the limit (413). Every error is ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import json
import logging
import math
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.errors import TooLarge, status_of
from backdoor_sweep.service.lockout import MAX_FAILURES, WINDOW_S, Lockout, client_key

log = logging.getLogger("backdoor_sweep.service")
UNAUTHORIZED = "a valid bearer token is required (Authorization: Bearer <token>)"
#: on every answer: no content sniffing, no framing by other sites, no referrer sent onwards
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


@dataclass(frozen=True)
class ServiceConfig:
    """Where the service keeps its state and the limits it enforces."""

    store: Path
    tokens: Path
    address: str | None = None
    max_running: int = 2
    cancel_grace_s: float = 30.0
    body_limit: int = 1_000_000
    query_timeout_s: float = 10.0
    query_max_rows: int = 10_000
    query_memory: str = "1GB"
    page_timeout_s: float = 600.0
    #: failed authentications within ``auth_window_s`` that lock a client out (`lockout`)
    auth_failures: int = MAX_FAILURES
    auth_window_s: float = WINDOW_S
    #: folders a spec submitted over HTTP may read dataset files from (`dataroots`); none: no files
    data_roots: tuple[Path, ...] = ()


def is_public(path: str) -> bool:
    """Routes open without a token: the health check and the page shells (no data in them)."""
    from backdoor_sweep.service.pages import PAGE_PATHS, STATIC_PREFIX

    if ".." in path:
        return False
    return path in ("/health", "/docs") or path in PAGE_PATHS or path.startswith(STATIC_PREFIX)


def _presented(headers: list[tuple[bytes, bytes]]) -> bool:
    """Does the request present credentials at all (a request without them guesses nothing)?"""
    return any(key == b"authorization" for key, _ in headers)


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def locked_out(client: str, lockout: Lockout, seconds: int) -> str:
    return (
        f"failed authentications from {client} must be fewer than {lockout.max_failures} "
        f"within {lockout.window_s:g} s; locked out, retry after {seconds} s"
    )


def too_large(limit: int, got: str) -> TooLarge:
    return TooLarge(f"request body must be at most {limit / 1e6:g} MB; got {got}")


class Guard:
    """Lockout, bearer-token check and request-body limit, before any routing (module docstring)."""

    def __init__(self, app, tokens, body_limit: int, lockout: Lockout | None = None) -> None:
        self.app, self.tokens, self.body_limit = app, tokens, body_limit
        self.lockout = lockout if lockout is not None else Lockout()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not is_public(scope["path"]):
            client = client_key(scope)
            wait = self.lockout.retry_after(client)
            if wait is not None:  # answered before the token is looked at: no timing to learn
                seconds = max(1, math.ceil(wait))
                await _send_json(
                    send,
                    429,
                    {"error": locked_out(client, self.lockout, seconds)},
                    [(b"retry-after", str(seconds).encode()), *SECURITY_HEADERS],
                )
                return
            user = self.tokens.who(_bearer(scope["headers"]))
            if user is None:
                if _presented(scope["headers"]):
                    self.lockout.failed(client)
                await _send_json(
                    send,
                    401,
                    {"error": UNAUTHORIZED},
                    [(b"www-authenticate", b"Bearer"), *SECURITY_HEADERS],
                )
                return
            scope.setdefault("state", {})["user"] = user
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_json(send, 400, {"error": "content-length must be a whole number"})
                return
            if int(declared) > self.body_limit:
                err = too_large(self.body_limit, f"{int(declared) / 1e6:.1f} MB")
                await _send_json(send, 413, {"error": str(err)}, [(b"connection", b"close")])
                return
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.body_limit:
                    raise too_large(self.body_limit, "more (the body was cut off there)")
            return message

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, limited_receive, send_with_headers)


def create_app(config: ServiceConfig):
    """The FastAPI application of one store (the server holds the store's service lock)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from backdoor_sweep import __version__
    from backdoor_sweep.service.analyses import Results
    from backdoor_sweep.service.api import router
    from backdoor_sweep.service.auth import Tokens
    from backdoor_sweep.service.dataroots import DataRoots
    from backdoor_sweep.service.documents import Documents
    from backdoor_sweep.service.jobs import Jobs
    from backdoor_sweep.service.pages import add_pages
    from sweep.store import Store

    store = Store(config.store)
    tokens = Tokens(config.tokens)
    jobs = Jobs(
        store,
        address=config.address,
        max_running=config.max_running,
        cancel_grace_s=config.cancel_grace_s,
    )
    results = Results(store)
    documents = Documents(jobs.records, results.state, timeout_s=config.page_timeout_s)

    @asynccontextmanager
    async def lifespan(app):
        jobs.start()
        try:
            yield
        finally:
            jobs.shutdown()

    app = FastAPI(
        title="backdoor-sweep",
        version=__version__,
        summary="Submit sweeps of backdoor-poisoning experiments, watch them, query the store.",
        lifespan=lifespan,
        docs_url=None,  # `pages` serves /docs: Swagger UI that sends the page's token
        redoc_url=None,
    )
    app.state.config, app.state.tokens, app.state.jobs = config, tokens, jobs
    app.state.results, app.state.documents = results, documents
    app.state.data_roots = DataRoots(config.data_roots)

    @app.exception_handler(SweepError)
    async def _sweep_error(request: Request, err: SweepError):
        return JSONResponse({"error": str(err)}, status_code=status_of(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        return JSONResponse({"error": _one_line(err)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException):
        text = (
            f"no route {request.method} {request.url.path}"
            if err.status_code in (404, 405) and err.detail in ("Not Found", "Method Not Allowed")
            else str(err.detail)
        )
        return JSONResponse({"error": text}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error; the server log has the details"}, 500)

    app.include_router(router)
    add_pages(app)
    lockout = Lockout(config.auth_failures, config.auth_window_s)
    app.state.lockout = lockout
    app.add_middleware(Guard, tokens=tokens, body_limit=config.body_limit, lockout=lockout)
    return app


def _one_line(err) -> str:
    """FastAPI's validation error as one line: the parameter, what was given, what is allowed."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
    given = first.get("input")
    return f"{where} {first.get('msg', 'is invalid').lower()}; got {given!r}"
