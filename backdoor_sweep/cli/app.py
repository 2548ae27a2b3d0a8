"""The typer application, its entry point and the one place where errors become exit codes.

Exit codes: 0 done; 2 bad input — a `SweepError`
(``error: ...``, one line, nothing written) or a usage error (unknown command or option, missing
argument, bad option value: one line with click's "did you mean"); 130 stopped by SIGINT (Ctrl-C),
143 by SIGTERM (``kill PID``), which is handled like Ctrl-C. Anything else is a bug and keeps its
traceback. Heavy libraries (Ray, torch, scikit-learn, plotly) are imported inside the commands, so
``--help`` and the store commands start fast.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Annotated

import typer

from backdoor_sweep import __version__
from backdoor_sweep.errors import SweepError

PROG = "backdoor-sweep"

app = typer.Typer(
    name=PROG,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Sweeps of backdoor-poisoning experiments on Ray Tune, and robust hyperparameter choice.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            metavar="",
            is_eager=True,
            callback=_print_version,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Sweeps of backdoor-poisoning experiments on Ray Tune, and robust hyperparameter choice."""


class Stop:
    """The signal that asked the running command to stop (None while none has)."""

    signum: int | None = None
    #: the command said itself what the stop means (a sweep's resume hint)
    reported: bool = False

    @classmethod
    def exit_code(cls) -> int:
        """128 + the signal number, as shells report a process a signal ended: 130 or 143."""
        return 128 + (cls.signum or signal.SIGINT)


def _on_sigint(signum, frame) -> None:
    Stop.signum = signal.SIGINT
    raise KeyboardInterrupt


def _on_sigterm(signum, frame) -> None:
    """SIGTERM does what Ctrl-C does: whatever handles SIGINT now (Tune, while a sweep runs, stops
    it gracefully; elsewhere a KeyboardInterrupt)."""
    Stop.signum = signal.SIGTERM
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not _on_sigint:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """The exception class(es) click raises for usage errors, whichever click typer uses.

    Typer 0.29 vendors click (``typer._click``) and its exceptions derive from the public
    ``typer.TyperException``; older typer re-exports click's own, found through
    ``typer.BadParameter``'s bases.
    """
    found = [getattr(typer, "TyperException", None)]
    found += [c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"]
    return tuple(c for c in found if isinstance(c, type))


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _usage_message(err: BaseException) -> str:
    message = _one_line(err.format_message()) if hasattr(err, "format_message") else str(err)
    ctx = getattr(err, "ctx", None)
    path = getattr(ctx, "command_path", None) or PROG
    return f"{message} (`{path} --help` shows the usage)"


def main(argv: list[str] | None = None) -> None:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); always ends in ``SystemExit``.

    Tests call it in-process with a list of arguments; the installed script calls it bare.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:  # bare `backdoor-sweep`: the help, exit 0
        args = ["--help"]
    Stop.signum, Stop.reported = None, False
    in_main = threading.current_thread() is threading.main_thread()
    previous = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    if in_main:
        signal.signal(signal.SIGINT, _on_sigint)
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = app(args=args, prog_name=PROG, standalone_mode=False)
    except SweepError as err:
        typer.echo(f"error: {_one_line(err)}", err=True)
        code = 2
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except _usage_error_types() as err:
        typer.echo(f"error: {_usage_message(err)}", err=True)
        code = 2
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
    code = code if isinstance(code, int) else 0
    if code == 130 and not Stop.reported:  # typer turns a KeyboardInterrupt into exit code 130
        typer.echo("interrupted", err=True)
        code = Stop.exit_code()
    raise SystemExit(code)
