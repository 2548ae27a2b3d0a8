"""The JSON API: submit, list, watch, cancel and resume sweeps; query the store; choose.

Every route needs a bearer token (`app.Guard`); the token's name is the user. A spec is validated
exactly as ``backdoor-sweep run`` validates it (`sweep.spec`), with the same one-line error
(422, nothing written), once the files it would read are confined to the server's data roots
(`dataroots`: 403 outside them). Queries go through the CLI's read-only, store-confined DuckDB
(`sweep.query.run_query`) with a row limit, a time limit and a memory limit.
"""

from __future__ import annotations

import json
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.errors import Busy, NotFound
from backdoor_sweep.service.records import SweepView
from sweep.store import check_sweep_name

#: queries allowed to run at once (more wait, up to the query time limit)
CONCURRENT_QUERIES = 4
_queries = threading.BoundedSemaphore(CONCURRENT_QUERIES)
#: how the spec body may be sent, for the OpenAPI docs
_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}

# the guard checks the token before routing; this declares the scheme in the OpenAPI docs
router = APIRouter(dependencies=[Security(HTTPBearer(auto_error=False))])


#: one sweep as the API lists it: the records' own dataclass, validated as a response model
SweepOut = SweepView


class SweepList(BaseModel):
    sweeps: list[SweepOut]


class QueryOut(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool
    row_limit: int


def user(request: Request) -> str:
    return request.scope["state"]["user"]


def checked(name: str) -> str:
    """``name`` if it is a sweep name (never a path): the store's own check and line."""
    return check_sweep_name(name)


def _services(request: Request):
    s = request.app.state
    return s.config, s.jobs, s.results, s.documents


def _roots(request: Request):
    return request.app.state.data_roots


@router.get("/health", tags=["service"])
def health() -> dict[str, str]:
    """Is the server up (no token needed)."""
    return {"status": "ok"}


@router.get("/whoami", tags=["service"])
def whoami(request: Request) -> dict[str, str]:
    """The name of the presented token."""
    return {"name": user(request)}


@router.post(
    "/sweeps", status_code=201, response_model=SweepOut, tags=["sweeps"], openapi_extra=_SPEC_BODY
)
async def submit(
    request: Request,
    name: Annotated[str | None, Query(description="Sweep name (default: the spec's).")] = None,
    smoke: Annotated[
        bool, Query(description="Tiny grid: first two values per axis, first seed.")
    ] = False,
) -> dict:
    """Submit a spec (YAML, or JSON with ``Content-Type: application/json``); returns its sweep."""
    config, jobs, _, _ = _services(request)
    body = await request.body()
    kind = request.headers.get("content-type", "")
    spec = await run_in_threadpool(
        _spec_from_body, body, kind, name, smoke, str(config.store), _roots(request)
    )
    view = await run_in_threadpool(jobs.submit, spec, user(request))
    return view.as_dict()


def _spec_from_body(
    body: bytes, content_type: str, name: str | None, smoke: bool, store: str, roots
):
    """Parse and validate a submitted spec as ``backdoor-sweep run [--smoke] [--name]`` does.

    YAML goes through the same bounded reader as a spec file (`sweep.specfile`: size, nesting,
    alias expansion, repeated keys); JSON is YAML too, so both take that road. The files it
    names are confined to the data roots first (`dataroots.DataRoots.confine`): validation
    opens an image folder to list its classes."""
    from sweep.spec import parse_spec, with_overrides
    from sweep.specfile import read_spec_bytes

    raw = roots.confine(read_spec_bytes(body, "spec"))
    spec = parse_spec(raw, source="spec")
    if smoke:
        spec = spec.smoke()
    return with_overrides(spec, name=name, store=store)


@router.get("/sweeps", response_model=SweepList, tags=["sweeps"])
def list_sweeps(request: Request) -> dict:
    """Every sweep of the store: submitter, status, results done / total, ETA."""
    _, jobs, _, _ = _services(request)
    return {"sweeps": [v.as_dict() for v in jobs.views()]}


@router.get("/sweeps/{name}", tags=["sweeps"])
def sweep_detail(request: Request, name: str) -> dict:
    """One sweep: its progress, its spec, the robust choice so far, what its pages can draw."""
    _, jobs, results, _ = _services(request)
    view = jobs.view(checked(name))
    out: dict[str, Any] = view.as_dict()
    store = jobs.store
    meta = store.read_meta(name) if store.exists(name) else None
    job = jobs.records.read_job(name) or {}
    out["spec"] = (meta or {}).get("spec") or job.get("spec")
    out["history"] = job.get("history", [])
    out.update(
        results.summary(name)
        if meta is not None
        else {"recommended": None, "recommended_error": "not started yet"}
    )
    return out


@router.post("/sweeps/{name}/cancel", status_code=202, response_model=SweepOut, tags=["sweeps"])
def cancel(request: Request, name: str) -> dict:
    """Stop a queued or running sweep: its trials end, what finished stays in the store."""
    _, jobs, _, _ = _services(request)
    return jobs.cancel(checked(name), user(request)).as_dict()


@router.post("/sweeps/{name}/resume", status_code=202, response_model=SweepOut, tags=["sweeps"])
def resume(request: Request, name: str) -> dict:
    """Queue an interrupted, cancelled or failed sweep again; it runs what is not stored yet."""
    _, jobs, _, _ = _services(request)
    jobs.view(checked(name))
    _roots(request).confine(_stored_spec(jobs, name))  # the operator's roots hold on resume too
    return jobs.resume(name, user(request)).as_dict()


def _stored_spec(jobs, name: str) -> dict | None:
    """The spec a resume runs: the store's (the sweep started), else the job record's."""
    meta = jobs.store.read_meta(name) if jobs.store.exists(name) else None
    job = jobs.records.read_job(name) or {}
    return (meta or {}).get("spec") or job.get("spec")


@router.get("/sweeps/{name}/log", response_class=PlainTextResponse, tags=["sweeps"])
def runner_log(request: Request, name: str) -> str:
    """The last 200 lines of the sweep's runner output (why it failed)."""
    _, jobs, _, _ = _services(request)
    jobs.view(checked(name))
    path = jobs.records.log_path(name)
    lines = path.read_text(errors="replace").splitlines()[-200:] if path.is_file() else []
    return "\n".join(lines) + "\n"


def _stored(jobs, name: str) -> str:
    jobs.view(checked(name))
    if not jobs.store.exists(name):
        raise NotFound(f"sweep {name!r} has not started yet: it has no results")
    return name


@router.get("/sweeps/{name}/select", tags=["analysis"])
def select(
    request: Request,
    name: str,
    objective: str = "asr",
    clean_tolerance: float = 0.01,
    axes: Annotated[str | None, Query(description="Choice axes, comma-separated.")] = None,
    where: Annotated[
        str | None, Query(description='Filter rows first, e.g. "trigger_size = 3".')
    ] = None,
) -> dict:
    """The robust configuration, as ``backdoor-sweep select --json`` prints it."""
    _, jobs, results, _ = _services(request)
    chosen = [a.strip() for a in axes.split(",") if a.strip()] if axes else None
    return results.select(
        _stored(jobs, name),
        objective=objective,
        clean_tolerance=clean_tolerance,
        axes=chosen,
        where=where,
    )


@router.get("/sweeps/{name}/heatmap", tags=["analysis"])
def heatmap(
    request: Request,
    name: str,
    metric: str = "asr",
    x: str | None = None,
    y: str | None = None,
    facet: Annotated[
        str | None, Query(description="Facet columns, comma-separated; 'none' for one panel.")
    ] = None,
    agg: str = "mean",
    where: str | None = None,
) -> Response:
    """A heatmap's plotly figure (JSON) of a metric over two axes, a panel per facet value."""
    _, jobs, results, _ = _services(request)
    _stored(jobs, name)
    defaults = results.summary(name)["heatmap"] or {}
    facets = None if facet is None else [f.strip() for f in facet.split(",") if f.strip()]
    if facets in (["none"], []):
        facets = []
    if x is None or y is None or facets is None:  # what `backdoor-sweep heatmap` picks
        order = [
            a for a in (defaults.get("x"), defaults.get("y"), *defaults.get("facets", [])) if a
        ]
        x = x or next((a for a in order if a != y), None)
        if x is None:
            raise SweepError(f"x is needed: the sweep has no grid axis besides y {y!r}")
        y = y or next((a for a in order if a != x), None)
        if facets is None:
            facets = [a for a in order if a not in (x, y)][:2]
    body = results.heatmap(name, metric=metric, x=x, y=y, facets=facets, agg=agg, where=where)
    return Response(body, media_type="application/json")


@router.get("/sweeps/{name}/curves", tags=["analysis"])
def curves(
    request: Request, name: str, where: str | None = None, colour: str | None = None
) -> Response:
    """Backdoor learning curves' plotly figure (JSON)."""
    _, jobs, results, _ = _services(request)
    body = results.curves(_stored(jobs, name), where=where, colour=colour)
    return Response(body, media_type="application/json")


@router.get("/sweeps/{name}/report", response_class=FileResponse, tags=["pages"])
def report(request: Request, name: str):
    """The sweep's self-contained HTML report (`backdoor-sweep report`)."""
    _, jobs, _, documents = _services(request)
    return FileResponse(documents.report(_stored(jobs, name)), media_type="text/html")


@router.get("/sweeps/{name}/explain", response_class=FileResponse, tags=["pages"])
def explain(request: Request, name: str, where: str | None = None, seed: int | None = None):
    """Why results are (not) backdoored (`backdoor-sweep explain`); default: the recommended one."""
    _, jobs, _, documents = _services(request)
    return FileResponse(documents.explain(_stored(jobs, name), where, seed), media_type="text/html")


@router.get("/query", response_model=QueryOut, tags=["analysis"])
def query(
    request: Request,
    sql: Annotated[str, Query(description="One SELECT over trials, curves and dynamics.")],
    limit: Annotated[
        int | None,
        Query(ge=1, description="Most rows returned (default 1000, at most the server's limit)."),
    ] = None,
) -> dict:
    """SQL over the store: read-only, confined to the store, limited in rows, time and memory."""
    from sweep.query import run_query

    config, jobs, _, _ = _services(request)
    limit = min(1000, config.query_max_rows) if limit is None else limit
    if limit > config.query_max_rows:
        raise SweepError(f"limit must be at most {config.query_max_rows}; got {limit}")
    if not _queries.acquire(timeout=config.query_timeout_s):
        raise Busy(
            f"query must start within {config.query_timeout_s:g} s; the server is busy with other queries"
        )
    try:
        df = run_query(
            jobs.store,
            sql,
            timeout=config.query_timeout_s,
            memory_limit=config.query_memory,
            max_rows=limit,
        )
    finally:
        _queries.release()
    rows = json.loads(df.to_json(orient="values", date_format="iso"))
    return {
        "columns": [str(c) for c in df.columns],
        "rows": rows,
        "truncated": bool(df.attrs.get("truncated")),
        "row_limit": limit,
    }


@router.get("/presets", tags=["sweeps"])
def presets() -> dict[str, list[str]]:
    """The preset specs shipped with backdoor-sweep (`search_spaces`)."""
    from search_spaces import presets as all_presets

    return {"presets": [p.stem for p in all_presets()]}


@router.get("/presets/{preset}", response_class=PlainTextResponse, tags=["sweeps"])
def preset_text(preset: str) -> str:
    """A preset spec's YAML, to edit and submit."""
    from search_spaces import presets as all_presets

    found = {p.stem: p for p in all_presets()}
    if preset not in found:
        raise NotFound(f"preset must be one of {', '.join(sorted(found))}; got {preset!r}")
    return found[preset].read_text()
