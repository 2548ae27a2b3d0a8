"""The `backdoor-sweep` command line: `app` (typer) and its entry point `main`.

One module per group of commands, each registering its commands on `app` when imported:
`running` (run, resume), `store` (query, ls, verify), `choice` (select, report), `figures`
(heatmap, importance, parallel, curves), `images` (explain, triggers); the team service's `serve`
and `token` live with the service. `options` holds the option vocabulary they share; `app` turns
errors into one line and an exit code. To add a command, write it in the module of its group (or
a new module imported below) with ``@app.command()``; `--help` lists the commands in the order
they are registered.
"""

from __future__ import annotations

from backdoor_sweep.cli.app import app, main

# isort: off
# registers the commands, in the order `--help` lists them
from backdoor_sweep.cli import running, store, choice, figures, images  # noqa: F401, E402
# isort: on

# the team service's commands (`serve`, `token add|list|revoke`) live with the service
from backdoor_sweep.service.commands import register as _register_service  # noqa: E402

_register_service(app)

__all__ = ["app", "main"]
