"""The API on a real server on loopback: authentication and bad input, none of which runs a sweep.

A hand-made sweep (`tests.handmade.write_sweep`) gives the queries and analyses something to read.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.auth import Tokens
from sweep.query import run_query
from sweep.spec import load_spec
from tests.handmade import write_sweep
from tests.service.live_server import CLI, ROOT, LiveServer, add_token

UNAUTHORIZED = {"error": "a valid bearer token is required (Authorization: Bearer <token>)"}
#: every API route, with a method and a path that would match it
ROUTES = [
    ("GET", "/whoami"),
    ("GET", "/sweeps"),
    ("POST", "/sweeps"),
    ("GET", "/sweeps/hand"),
    ("POST", "/sweeps/hand/cancel"),
    ("POST", "/sweeps/hand/resume"),
    ("GET", "/sweeps/hand/log"),
    ("GET", "/sweeps/hand/select"),
    ("GET", "/sweeps/hand/heatmap"),
    ("GET", "/sweeps/hand/curves"),
    ("GET", "/sweeps/hand/report"),
    ("GET", "/sweeps/hand/explain"),
    ("GET", "/query?sql=select+1"),
    ("GET", "/presets"),
    ("GET", "/presets/digits_svm_rbf"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    store = write_sweep(root, "hand")
    tokens = {name: add_token(store.root, name) for name in ("alice", "eve")}
    server = LiveServer(store.root, "--query-timeout", "1", "--query-rows", "100").start()
    yield server, store, tokens
    server.close()


@pytest.fixture
def alice(served):
    server, _, tokens = served
    with server.client(tokens["alice"]) as c:
        yield c


def listing(root: Path) -> list[str]:
    """Every file under the store (its service folder included) with its size."""
    return sorted(
        f"{p.relative_to(root)} {p.stat().st_size}" for p in root.rglob("*") if p.is_file()
    )


def test_health_is_open_and_everything_else_needs_a_token(served):
    server, _, tokens = served
    with server.client() as anon:
        assert anon.get("/health").json() == {"status": "ok"}
        for method, path in ROUTES:
            r = anon.request(method, path)
            assert (r.status_code, r.json()) == (401, UNAUTHORIZED), (method, path)
            assert r.headers["www-authenticate"] == "Bearer"
    for header in (
        "Bearer",
        "Bearer nope",
        "Basic " + tokens["alice"],
        tokens["alice"],
        "Bearer " + "x" * 5000,
    ):
        r = httpx.get(server.url + "/sweeps", headers={"Authorization": header})
        assert (r.status_code, r.json()) == (401, UNAUTHORIZED), header


def test_a_revoked_token_is_refused_from_the_next_request(served):
    server, store, tokens = served
    with server.client(tokens["eve"]) as eve:
        assert eve.get("/whoami").json() == {"name": "eve"}
        Tokens(store.root / ".service" / "tokens.json").revoke("eve")
        r = eve.get("/whoami")
        assert (r.status_code, r.json()) == (401, UNAUTHORIZED)


def test_page_shells_are_open_and_hold_no_data(served):
    server, _, _ = served
    with server.client() as anon:
        for path in (
            "/ui/",
            "/ui/login",
            "/ui/sweep?name=hand",
            "/ui/submit",
            "/ui/query",
            "/docs",
        ):
            r = anon.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "hand" not in r.text and "alice" not in r.text
        assert anon.get("/").headers["location"] == "/ui/"
        assert "sessionStorage" in anon.get("/ui/static/app.js").text
        assert (
            anon.get("/ui/static/plotly.min.js")
            .headers["content-type"]
            .startswith("text/javascript")
        )
        assert anon.get("/ui/static/../../auth.py").status_code == 401


def test_unknown_routes_and_sweeps_are_named(alice):
    assert alice.get("/no/such/route").json() == {"error": "no route GET /no/such/route"}
    r = alice.get("/sweeps/nope")
    assert r.status_code == 404
    assert r.json() == {
        "error": "sweep must be one of the sweeps of this server (hand); got 'nope'"
    }
    assert alice.post("/sweeps/nope/cancel").status_code == 404
    openapi = alice.get("/openapi.json").json()
    assert {"/sweeps", "/sweeps/{name}", "/query", "/sweeps/{name}/select"} <= set(openapi["paths"])


def test_a_bad_spec_gets_the_line_run_gives_and_nothing_is_written(served, alice, tmp_path):
    _, store, _ = served
    raw = load_spec().smoke().model_dump(mode="json")
    raw["grid"]["poison_rate"] = [0.1, 1.5]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SweepError) as cli_error:
        load_spec(path)  # what `backdoor-sweep run bad.yaml` prints after "error: "
    before = listing(store.root)
    for body, kind in (
        (path.read_text(), "application/yaml"),
        (json.dumps(raw), "application/json"),
    ):
        r = alice.post("/sweeps", content=body, headers={"content-type": kind})
        assert (r.status_code, r.json()) == (422, {"error": str(cli_error.value)})
    r = alice.post(
        "/sweeps", content="name: x\n  bad: [", headers={"content-type": "application/yaml"}
    )
    assert r.status_code == 422 and r.json()["error"].startswith("spec is not valid YAML at line 2")
    r = alice.post("/sweeps", content="{", headers={"content-type": "application/json"})
    assert r.json() == {
        "error": "spec is not valid YAML at line 1, column 2: expected the node content, but found '<stream end>'"
    }
    r = alice.post("/sweeps", content=b"\xff\xfe", headers={"content-type": "application/yaml"})
    assert r.json() == {"error": "spec must be UTF-8 text; got byte 0xff at offset 0"}
    assert alice.post("/sweeps", content="[1, 2]").json() == {
        "error": "spec must be a YAML mapping with name, learner, attack, grid…; got list"
    }
    assert listing(store.root) == before


def test_a_server_without_data_roots_reads_no_dataset_files_for_a_request(served, alice, tmp_path):
    _, store, _ = served
    before = listing(store.root)
    raw = load_spec().smoke().model_dump(mode="json")
    raw["dataset"] = {"name": "image_folder", "folder": str(tmp_path), "image_size": 8}
    r = alice.post("/sweeps", content=yaml.safe_dump(raw))
    assert (r.status_code, r.json()) == (
        403,
        {
            "error": "dataset.name must be one of digits, mnist_sample in a spec sent to this "
            "server (it reads no dataset files for a request: it was started without "
            "--data-root); got 'image_folder'"
        },
    )
    raw["dataset"] = {"name": "cifar10", "data_root": "/etc"}
    assert alice.post("/sweeps", content=yaml.safe_dump(raw)).status_code == 403
    assert listing(store.root) == before


def test_a_spec_of_ten_megabytes_is_refused_before_it_is_read(served, alice):
    _, store, _ = served
    before = listing(store.root)
    big = b"name: big\n" + b"# " + b"x" * (10 * 1024 * 1024) + b"\n"
    r = alice.post("/sweeps", content=big, headers={"content-type": "application/yaml"})
    assert (r.status_code, r.json()) == (
        413,
        {"error": "request body must be at most 1 MB; got 10.5 MB"},
    )

    def chunks():  # no content-length: counted as it streams, refused once past the limit
        for _ in range(10):
            yield b"#" * (1024 * 1024)

    r = alice.post("/sweeps", content=chunks(), headers={"content-type": "application/yaml"})
    assert (r.status_code, r.json()) == (
        413,
        {"error": "request body must be at most 1 MB; got more (the body was cut off there)"},
    )
    assert alice.get("/sweeps").status_code == 200  # the server is fine
    assert listing(store.root) == before


def test_a_yaml_bomb_is_refused(served, alice, tmp_path):
    _, store, _ = served
    before = listing(store.root)
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = "\n".join(lines) + "\n"
    deep = "a: " + "[" * 5000 + "]" * 5000
    for text, says in (
        (
            bomb,
            "a spec must stand for at most 100,000 values (an alias counts all it names, each time)",
        ),
        (deep, "nesting must be at most 32 levels deep"),
        ("&a [*a]", "an alias must not be used inside the value it names"),
    ):
        path = tmp_path / "bomb.yaml"
        path.write_text(text)
        with pytest.raises(SweepError) as cli_error:  # what `run bomb.yaml` says, after its path
            load_spec(path)
        r = alice.post("/sweeps", content=text, headers={"content-type": "application/yaml"})
        assert r.status_code == 422 and says in r.json()["error"]
        assert r.json()["error"] == str(cli_error.value).replace(f"spec file {str(path)!r}", "spec")
    assert listing(store.root) == before


def raw(server, method: str, path: str, token: str | None) -> tuple[int, dict]:
    """Send ``path`` exactly as written (HTTP clients resolve ``..`` segments themselves)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_sweep_names_cannot_leave_the_store(served, alice):
    server, store, tokens = served
    before = listing(store.root)
    spec = (ROOT / "search_spaces" / "digits_svm_rbf.yaml").read_text()
    for name in ("../evil", "..", "a/b", ".hidden", "/etc"):
        r = alice.post("/sweeps", params={"name": name, "smoke": "true"}, content=spec)
        assert r.status_code == 422, name
        assert r.json()["error"].startswith("name must match pattern"), r.json()
    for method, path in (
        ("GET", "/sweeps/.."),
        ("GET", "/sweeps/.hidden"),
        ("GET", "/sweeps/..%2F..%2Fetc"),
        ("POST", "/sweeps/%2E%2E/cancel"),
        ("POST", "/sweeps/../sweeps/x/cancel"),
    ):
        status, body = raw(server, method, path, tokens["alice"])
        assert status in (404, 422) and set(body) == {"error"}, (path, status, body)
    status, body = raw(server, "GET", "/sweeps/..", tokens["alice"])
    assert (status, body["error"][:32]) == (422, "sweep name must be letters, digi")
    status, body = raw(server, "GET", "/ui/../sweeps", None)  # a page prefix opens nothing
    assert (status, body) == (401, UNAUTHORIZED)
    assert listing(store.root) == before
    assert not (store.root.parent / "evil").exists()


def test_queries_are_confined_limited_and_stopped(served, alice):
    _, store, _ = served
    for sql in (
        "select * from read_csv('/etc/passwd')",
        "select * from '/etc/passwd'",
        f"select * from read_parquet('{store.root}/../*.parquet')",
        "copy trials to '/tmp/out.csv'",
        "attach '/tmp/x.db'",
    ):
        with pytest.raises(SweepError) as cli_error:
            run_query(store, sql)
        r = alice.get("/query", params={"sql": sql})
        assert (r.status_code, r.json()) == (422, {"error": str(cli_error.value)}), sql
    r = alice.get(
        "/query", params={"sql": "select count(*) from range(1000000000000) a, range(1000) b"}
    )
    assert (r.status_code, r.json()) == (
        422,
        {
            "error": "query ran longer than --timeout 1 s and was stopped; narrow it or pass a "
            "larger --timeout"
        },
    )
    r = alice.get("/query", params={"sql": "select * from range(5000)", "limit": 10})
    assert r.json() == {
        "columns": ["range"],
        "rows": [[i] for i in range(10)],
        "truncated": True,
        "row_limit": 10,
    }
    r = alice.get("/query", params={"sql": "select * from range(5000)", "limit": 101})
    assert r.json() == {"error": "limit must be at most 100; got 101"}
    r = alice.get("/query", params={"sql": "select count(*) as n, avg(asr) as asr from trials"})
    df = run_query(store, "select count(*) as n, avg(asr) as asr from trials")
    assert r.json()["rows"] == [[int(df["n"][0]), pytest.approx(float(df["asr"][0]))]]


def test_select_heatmap_and_curves_of_a_stored_sweep(served, alice):
    from analysis.load import load
    from analysis.select import select_robust
    from analysis.verdict import verdict_info

    _, store, _ = served
    r = alice.get("/sweeps/hand/select", params={"objective": "worst_asr", "clean_tolerance": 0.05})
    expected = select_robust(load(store, "hand"), objective="worst_asr", clean_tolerance=0.05)
    assert r.status_code == 200
    assert r.json() == json.loads(expected.to_json(sweep="hand"))
    r = alice.get("/sweeps/hand/select", params={"objective": "fastest"})
    assert r.json() == {"error": "objective must be one of asr, slope, worst_asr; got 'fastest'"}
    r = alice.get("/sweeps/hand/select", params={"clean_tolerance": "lots"})
    assert r.status_code == 422 and r.json()["error"].startswith("clean_tolerance ")
    detail = alice.get("/sweeps/hand").json()
    assert detail["status"] == "finished" and detail["done"] == detail["total"] == 72
    verdict = verdict_info(load(store, "hand"))
    assert detail["recommended"]["choice"] == verdict.recommended.choice
    assert detail["recommended"]["objective"] == verdict.basis
    assert set(detail["recommended"]["metrics"]["asr"]) >= {"mean", "std", "n", "ci_low", "ci_high"}
    hm = alice.get("/sweeps/hand/heatmap", params={"metric": "clean_acc", "facet": "none"}).json()
    x, y, _ = detail["heatmap"]["x"], detail["heatmap"]["y"], detail["heatmap"]["facets"]
    assert hm["panels"] == [""] and len(hm["x_values"]) == load(store, "hand")[x].nunique()
    assert hm["figure"]["data"][0]["type"] == "heatmap" and y in json.dumps(hm["figure"]["layout"])
    bad = alice.get("/sweeps/hand/heatmap", params={"x": "C", "y": "C"}).json()
    assert bad == {"error": "--x and --y must be different columns; got 'C' for both"}
    r = alice.get("/sweeps/hand/curves")
    assert r.status_code == 422 and "has no learning curves" in r.json()["error"]


@pytest.mark.slow
def test_one_server_per_store_and_a_server_needs_tokens(served, tmp_path):
    server, store, _ = served
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    second = subprocess.run(
        [*CLI, "serve", "--store", str(store.root), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert second.returncode == 2
    assert second.stderr.strip() == (
        f"error: --store {store.root.resolve()} is already served by pid {server.proc.pid} "
        f"on {os.uname().nodename}; one server per store"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run(
        [*CLI, "serve", "--store", str(empty)], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 2 and "--tokens must hold at least one token" in out.stderr
    out = subprocess.run(
        [*CLI, "serve", "--store", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert (
        out.stderr.strip()
        == f"error: --store must be an existing folder; got '{tmp_path / 'nope'}' (not found)"
    )


@pytest.mark.slow
def test_a_stopped_server_exits_cleanly(tmp_path):
    store = write_sweep(tmp_path, "hand")
    add_token(store.root, "alice")
    server = LiveServer(store.root).start()
    try:
        assert server.stop() == 0
        assert "Application shutdown complete" in server.tail()
    finally:
        server.close()
