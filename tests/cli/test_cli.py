"""The CLI through a subprocess: bad input gives one line and exit 2; a smoke run round-trips."""

from __future__ import annotations

import json

import pytest
import yaml

from sweep.spec import DEFAULT_SPEC
from tests.conftest import cli


def write_spec(tmp_path, **changes):
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    for key, value in changes.items():
        if key == "grid":
            raw["grid"].update(value)
        else:
            raw[key] = value
    raw["store"] = str(tmp_path / "store")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"learner": {"name": "svm_cubic"}}, "learner.name must be one of"),
        ({"grid": {"C": [0]}}, "grid.C must be greater than 0; got 0"),
        ({"grid": {"poison_rate": [1.5]}}, "grid.poison_rate must be less than 1; got 1.5"),
        ({"grid": {"trigger_size": [12]}}, "trigger_size must be at most the image side"),
        ({"dataset": {"name": "digits", "classes": [7, 42]}}, "dataset.classes must be classes"),
        ({"grid": {"colour": ["red"]}}, "grid axis must be one of"),
    ],
)
def test_bad_spec_exits_2_with_one_line_and_no_store(tmp_path, cli_env, changes, needle):
    spec = write_spec(tmp_path, **changes)
    res = cli("run", str(spec), env=cli_env)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "store").exists()


def test_malformed_yaml_exits_2(tmp_path, cli_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    res = cli("run", str(bad), env=cli_env)
    assert res.returncode == 2
    assert "not valid YAML" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_query_on_missing_store_exits_2(tmp_path, cli_env):
    res = cli("query", "select 1", "--store", str(tmp_path / "nope"), env=cli_env)
    assert res.returncode == 2
    assert "--store must be an existing folder" in res.stderr


def test_write_statements_are_refused(tmp_path, cli_env):
    (tmp_path / "s").mkdir()
    res = cli("query", "drop view trials", "--store", str(tmp_path / "s"), env=cli_env)
    assert res.returncode == 2 and "read-only" in res.stderr


@pytest.mark.slow
def test_smoke_run_then_query_heatmap_select_ls(tmp_path, cli_env):
    store = tmp_path / "store"
    res = cli("run", "--smoke", "--store", str(store), "--quiet", env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "= 16 results" in res.stdout
    assert "robust choice" in res.stdout

    again = cli("run", "--smoke", "--store", str(store), "--quiet", env=cli_env)
    assert again.returncode == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr

    q = cli(
        "query",
        "select C, gamma, avg(asr) as asr from trials group by all order by all",
        "--store",
        str(store),
        "--format",
        "json",
        env=cli_env,
    )
    assert q.returncode == 0, q.stderr
    rows = json.loads(q.stdout)
    assert len(rows) == 4 and {"C", "gamma", "asr"} <= set(rows[0])

    out = tmp_path / "h.html"
    h = cli("heatmap", "--store", str(store), "--metric", "asr", "--out", str(out), env=cli_env)
    assert h.returncode == 0, h.stderr
    html = out.read_text()
    assert "plotly" in html.lower() and "poison_rate = 0.05" in html

    bad = cli("heatmap", "--store", str(store), "--metric", "nope", "--out", str(out), env=cli_env)
    assert bad.returncode == 2 and "--metric must be a column" in bad.stderr

    s = cli("select", "--store", str(store), "--format", "json", env=cli_env)
    assert s.returncode == 0, s.stderr
    choice = json.loads(s.stdout)
    assert set(choice["choice"]) == {"C", "gamma"}

    ls = cli("ls", "--store", str(store), env=cli_env)
    assert ls.returncode == 0 and "digits_svm_rbf-smoke" in ls.stdout


@pytest.mark.slow  # each section rebuilds models for its explanations
def test_report_shows_progress_per_sweep(tmp_path):
    from tests.handmade import write_sweep

    write_sweep(tmp_path / "store", "one")
    write_sweep(tmp_path / "store", "two", seed=1)
    out = tmp_path / "r.html"
    res = cli(
        "report", "--store", tmp_path / "store", "--sweep", "two", "--sweep", "one", "--out", out
    )
    assert res.returncode == 0, res.stderr
    steps = [line for line in res.stderr.splitlines() if line.startswith("report: ")]
    assert [s.split(" (")[0] for s in steps] == ["report: sweep 1/2 two", "report: sweep 2/2 one"]
    assert out.is_file() and "two, one" in res.stdout


@pytest.mark.slow
def test_resume_finds_a_store_that_was_moved(ray_runtime, tmp_path):
    """The spec's fingerprint holds the store path it was started with; `resume --store` reads the
    spec from the store itself, so a moved or copied store resumes where it now is."""
    import shutil

    from sweep.store import Store

    first = cli("run", "--smoke", "--store", tmp_path / "store", "--quiet")
    assert first.returncode == 0, first.stderr
    shutil.copytree(tmp_path / "store", tmp_path / "moved")
    res = cli("resume", "digits_svm_rbf-smoke", "--store", tmp_path / "moved", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "16 results already in the store; 0 trials to run" in res.stdout
    assert f"store: {(tmp_path / 'moved' / 'digits_svm_rbf-smoke').resolve()}" in res.stdout
    assert len(Store(tmp_path / "moved").read_table("trials", "digits_svm_rbf-smoke")) == 16
