"""The team service: ``backdoor-sweep serve`` — an authenticated HTTP API and web pages over one
store, to submit sweeps to the cluster, watch them, query the store and choose.

Rooms: `app` (the ASGI application and its guard), `api` (JSON routes), `pages` (HTML shells and
their script), `auth` (bearer tokens), `lockout` (failed authentications per client), `dataroots`
(the folders a spec sent over HTTP may read files from), `jobs` (the queue and one runner process per sweep),
`runner` (what those processes run), `records` (what the service keeps in the store and the status
it derives), `analyses` (choice, heatmaps and curves for the pages), `documents` (report and
explain pages), `commands` (``serve`` and ``token``), `errors` (HTTP statuses).
"""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "Jobs": "jobs",
    "Records": "records",
    "Results": "analyses",
    "DataRoots": "dataroots",
    "Lockout": "lockout",
    "ServiceConfig": "app",
    "SweepView": "records",
    "Tokens": "auth",
    "create_app": "app",
    "derive_status": "records",
    "register": "commands",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
