"""``--where`` is SQL everywhere, run by the locked-down DuckDB of ``query``.

Expected rows are counted with pandas on the hand-made frame itself, not through the store.
"""

from __future__ import annotations

import pytest

from analysis.load import load
from backdoor_sweep.errors import SweepError
from sweep.where import select_where
from tests.handmade import trials_frame, write_sweep

ERROR = "ValueError: a=b"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("where")
    write_sweep(root, "other", seed=1)
    return write_sweep(root, "hand", n_errors=2, error=ERROR, with_curves=True)


@pytest.fixture(scope="module")
def frame():
    return trials_frame("hand", n_errors=2, error=ERROR, with_curves=True)


CONDITIONS = [
    ("error = 'ValueError: a=b'", lambda df: df["error"] == ERROR),
    ("poison_rate BETWEEN 0.05 AND 0.2", lambda df: df["poison_rate"].between(0.05, 0.2)),
    ("trigger_size <> 1", lambda df: df["trigger_size"] != 1),
    ("C IN (0.1, 10)", lambda df: df["C"].isin([0.1, 10.0])),
    (
        "C in (0.1, 10) and gamma = 0.01",
        lambda df: df["C"].isin([0.1, 10.0]) & (df["gamma"] == 0.01),
    ),
    (
        "NOT (gamma > 0.05) OR status != 'ok'",
        lambda df: ~(df["gamma"] > 0.05) | (df["status"] != "ok"),
    ),
    (
        "learner LIKE 'svm%' AND seed >= 1",
        lambda df: df["learner"].str.startswith("svm") & (df["seed"] >= 1),
    ),
    ("asr IS NULL", lambda df: df["asr"].isna()),
    ("C = 10 -- a comment ends at the line's end", lambda df: df["C"] == 10.0),
    ("result_id IN (SELECT result_id FROM curves WHERE beta = 1)", lambda df: df["n_poison"] > 0),
]


@pytest.mark.parametrize("where, expected", CONDITIONS, ids=[c for c, _ in CONDITIONS])
def test_sql_conditions_select_the_rows_pandas_counts(store, frame, where, expected):
    got = load(store, "hand", where)
    want = frame[expected(frame)]
    assert sorted(got["result_id"]) == sorted(want["result_id"])
    assert set(got["sweep"]) <= {"hand"}  # the other sweep of the store is not read


def test_the_filter_keeps_the_types_of_the_unfiltered_table(store):
    every = load(store, "hand")
    some = load(store, "hand", "C = 10")
    assert dict(some.dtypes) == dict(every.dtypes)


def test_other_tables_and_every_sweep(store, frame):
    curves = load(store, "hand", "beta = 1", table="curves")
    assert len(curves) == int((frame["n_poison"] > 0).sum())
    both = select_where(store, "trials", "C = 10")
    assert sorted(set(both["sweep"])) == ["hand", "other"]


REFUSED = [
    ("1=1; DROP VIEW trials", "--where must be a SQL condition"),
    ("C IN (SELECT 1 FROM read_csv('/etc/passwd'))", "read_csv()"),
    ("(SELECT count(*) FROM glob('/*')) > 0", "glob()"),
    ("getenv('HOME') <> ''", "getenv()"),
    ("1=1) UNION SELECT * FROM trials WHERE (1=1", "reaches beyond the condition"),
    ("true) ORDER BY (1", "reaches beyond the condition"),
    ("1=1) LIMIT (1", "reaches beyond the condition"),
    ("C = 1 /* unclosed", "--where must be a SQL condition"),
    ("C === 1", "--where 'C === 1' failed"),
    ("EXISTS (SELECT * FROM pg_settings)", "pg_settings"),
]


@pytest.mark.parametrize("where, needle", REFUSED, ids=[w or "empty" for w, _ in REFUSED])
def test_anything_but_a_condition_is_refused_in_one_line(store, where, needle):
    with pytest.raises(SweepError) as err:
        load(store, "hand", where)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_empty_condition_is_refused_by_the_filter_and_means_no_filter_to_load(store, frame):
    with pytest.raises(SweepError, match="--where must be a SQL condition"):
        select_where(store, "trials", " ")
    assert len(load(store, "hand", "")) == len(frame)


def test_an_unknown_column_is_named(store):
    with pytest.raises(SweepError, match=r"--where 'colour = 1' failed: .*colour") as err:
        load(store, "hand", "colour = 1")
    assert "\n" not in str(err.value)
