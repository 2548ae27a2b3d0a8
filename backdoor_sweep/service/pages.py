"""The pages for people: plain HTML shells and one script, no build step, served by the server.

The shells under ``static/`` hold no data and are open without a token; their script
(``static/app.js``) keeps the token the person logs in with in ``sessionStorage`` (gone when the
tab closes) and fetches everything from the JSON API with it. plotly.js comes from the installed
plotly package (the same file the reports embed), so the pages work without the internet.
``/docs`` is Swagger UI (loaded from its CDN, as FastAPI does) configured to send that token too.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/ui/static/"
#: page path -> its HTML shell
PAGES = {
    "/ui/": "sweeps.html",
    "/ui/login": "login.html",
    "/ui/sweep": "sweep.html",
    "/ui/submit": "submit.html",
    "/ui/query": "query.html",
}
PAGE_PATHS = frozenset({"/", *PAGES})

_DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>backdoor-sweep API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>
const token = sessionStorage.getItem("bsw-token");
if (!token) { location.href = "/ui/login?next=/docs"; }
SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui",
  requestInterceptor: (req) => { req.headers.Authorization = "Bearer " + token; return req; },
});
</script></body></html>
"""


@cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def add_pages(app) -> None:
    """Register the page shells, the static files and /docs on ``app``."""
    from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles

    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/ui/")

    for path, filename in PAGES.items():
        app.add_api_route(
            path,
            _shell(STATIC_DIR / filename, FileResponse),
            methods=["GET"],
            include_in_schema=False,
        )

    @app.get("/docs", include_in_schema=False)
    def docs():
        return HTMLResponse(_DOCS)

    @app.get(STATIC_PREFIX + "plotly.min.js", include_in_schema=False)
    def plotly_js():
        return Response(
            _plotly_js(),
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=86400"},
        )

    app.mount(STATIC_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="static")


def _shell(path: Path, response):
    def page():
        return response(path, media_type="text/html", headers={"cache-control": "no-cache"})

    page.__name__ = f"page_{path.stem}"
    return page
