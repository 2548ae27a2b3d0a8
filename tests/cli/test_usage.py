"""Usage errors: one line on stderr and exit code 2, never a traceback; help and version work.

Every case runs the real command line in-process (`tests.conftest.cli`); one test runs the
installed module as a real process, to see stderr exactly as a terminal would.
"""

from __future__ import annotations

import pytest

from backdoor_sweep import __version__
from tests.conftest import cli, cli_subprocess
from tests.handmade import write_sweep

#: (arguments, a piece of the one-line error): each a usage mistake a person makes
USAGE_ERRORS = [
    (["runn"], "No such command 'runn'. Did you mean 'run'?"),
    (["selct"], "Did you mean 'select'?"),
    (["resume"], "Missing argument 'NAME'"),
    (["query"], "Missing argument 'SQL'"),
    (["run", "--name"], "Option '--name' requires an argument"),
    (["run", "--bogus"], "No such option: --bogus"),
    (["query", "select 1", "--formt", "csv"], "Possible options: --format"),
    (["-x"], "No such option: -x"),
    (["select", "--clean-tolerance", "abc"], "Invalid value for '--clean-tolerance'"),
    (["triggers", "--images", "four"], "Invalid value for '--images'"),
    (["heatmap", "--sweep"], "Option '--sweep' requires an argument"),
    (["run", "--smoke=yes"], "Option '--smoke' does not take a value"),
    (["run", "a.yaml", "b.yaml"], "unexpected extra argument"),
]

STORE = "<store>"  # replaced by a hand-made store's folder

#: bad option values the commands check themselves (a `SweepError`: ``error: <field> must ...``)
BAD_VALUES = [
    (["select", "--metric", "accuracy", "--store", STORE], "--metric must be one of asr, slope"),
    (["select", "--format", "xml", "--store", STORE], "--format must be one of table, json"),
    (["query", "select 1", "--format", "xml"], "--format must be one of table, csv, json"),
    (["select", "--sweep", "nope", "--store", STORE], "sweep must be one of the sweeps in"),
    (["ls", "--sweep", "nope", "--store", STORE], "sweep must be one of the sweeps in"),
    (["explain", "--where", "C = 1", "--k", "0"], "--k must be at least 1; got 0"),
    (["triggers", "--out", "gallery.jpg"], "--out must end in .png or .html"),
    (["run", "--resume", "--overwrite"], "--resume and --overwrite must not be given together"),
]


def one_line_error(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    return lines[0]


@pytest.mark.parametrize("args, needle", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_give_one_line_and_exit_2(args, needle):
    line = one_line_error(cli(*args))
    assert needle in line
    assert "--help` shows the usage" in line


@pytest.mark.parametrize("args, needle", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_option_values_give_one_line_and_exit_2(tmp_path, args, needle):
    store = write_sweep(tmp_path / "store")
    line = one_line_error(cli(*[store.root if a == STORE else a for a in args]))
    assert needle in line


def test_a_reader_never_creates_a_store(tmp_path):
    for command in (["query", "select 1"], ["ls"], ["select"], ["heatmap"], ["report"]):
        line = one_line_error(cli(*command, "--store", tmp_path / "absent"))
        assert "--store must be an existing folder" in line
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("args", [[], ["-h"], ["--help"]], ids=["bare", "-h", "--help"])
def test_bare_command_and_h_print_the_help(args):
    res = cli(*args)
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.startswith("Usage: backdoor-sweep [OPTIONS] COMMAND")
    for command in ("run", "resume", "query", "ls", "verify", "select", "report", "heatmap"):
        assert f"\n  {command} " in res.stdout


def test_version():
    res = cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"backdoor-sweep {__version__}"


def _commands() -> list[str]:
    import typer.main

    from backdoor_sweep.cli import app

    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", _commands())
def test_every_option_has_help_and_no_flag_shows_a_value(command):
    import typer.main

    from backdoor_sweep.cli import app

    params = typer.main.get_command(app).commands[command].params
    for param in params:
        assert (getattr(param, "help", None) or "").strip(), f"{command} {param.opts}: no help"
    res = cli(command, "-h")
    assert res.returncode == 0, res.stderr
    assert "<bool>" not in res.stdout and "[[" not in res.stdout, res.stdout


def test_one_option_vocabulary_across_commands():
    """The same option name has one meaning (one help text) in every command that takes it."""
    import typer.main

    from backdoor_sweep.cli import app

    helps: dict[str, set[str]] = {}
    for command in typer.main.get_command(app).commands.values():
        for param in command.params:
            for opt in param.opts:
                helps.setdefault(opt, set()).add(param.help.split(" (default")[0].split(":")[0])
    # these keep one meaning but say per command what their default is, what is filtered or which
    # values are allowed (--metric: a results column, shown or minimised); every other option has
    # literally one help text
    shared_meaning = {"--store", "--sweep", "--out", "--where", "--format", "--metric"}
    differing = {o: h for o, h in helps.items() if len(h) > 1 and o not in shared_meaning}
    assert not differing, differing
    retired = {"--objective", "--samples", "--sample", "--json"}
    assert not retired & set(helps), retired & set(helps)


def test_usage_errors_from_a_real_process():
    """The installed module, as a terminal shows it: one line, exit 2; bare prints the help."""
    res = cli_subprocess("runn", timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "error: No such command 'runn'. Did you mean 'run'? (`backdoor-sweep --help` shows the usage)"
    )
    bare = cli_subprocess(timeout=120)
    assert bare.returncode == 0 and "Usage: backdoor-sweep" in bare.stdout and bare.stderr == ""
