"""Sweeps run by a real server: a race for a name, cancel and resume, a server killed mid-sweep.

Each sweep runs in the server's runner process on its own in-process Ray, as ``run`` would.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from analysis.load import load
from analysis.verdict import verdict_info
from sweep.plan import plan_trials
from sweep.spec import load_spec, parse_spec
from sweep.store import Store
from sweep.verify import verify_store
from tests.local_cluster import HEAD_IP, LocalCluster, cmdline, descendants, kill_pids, wait_gone
from tests.service.live_server import LiveServer, add_token, gone, wait_for

pytestmark = pytest.mark.slow


def smoke_yaml(name: str) -> str:
    """The default spec's smoke grid: 4 trials of 4 results, with learning curves."""
    raw = load_spec().smoke().model_dump(mode="json")
    raw["name"] = name
    return yaml.safe_dump(raw)


def longer_yaml(name: str) -> str:
    """6 trials of 12 results run one at a time, each with its learning curve."""
    raw = load_spec().model_dump(mode="json")
    raw["name"] = name
    raw["grid"].update(C=[0.01, 1, 100], gamma=[0.01, 1])
    raw["seeds"] = [0]
    raw["execution"]["max_concurrent_trials"] = 1
    return yaml.safe_dump(raw)


def expected_ids(text: str, store: Store) -> list[str]:
    spec = parse_spec({**yaml.safe_load(text), "store": str(store.root)})
    return sorted(u["result_id"] for p in plan_trials(spec) for u in p.results)


@pytest.fixture
def served(tmp_path):
    store = Store(tmp_path / "store")
    token = add_token(store.root, "alice")
    server = LiveServer(store.root).start()
    yield server, store, token
    server.close()


def sweep_state(client, name: str) -> dict:
    r = client.get(f"/sweeps/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_status(client, name: str, status: str, timeout: float = 400) -> dict:
    return wait_for(
        lambda: (s := sweep_state(client, name))["status"] == status and s,
        timeout,
        f"sweep {name} did not become {status}",
    )


def runner_pid(store: Store, name: str) -> int:
    return json.loads((store.root / ".service" / "sweeps" / name / "job.json").read_text())["run"][
        "pid"
    ]


def test_one_of_two_submissions_of_a_name_wins_and_its_sweep_finishes(served):
    server, store, token = served
    spec = smoke_yaml("race")
    barrier, codes = threading.Barrier(2), []

    def submit():
        with server.client(token) as c:
            barrier.wait()
            r = c.post("/sweeps", content=spec, headers={"content-type": "application/yaml"})
            codes.append((r.status_code, r.json()))

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(code for code, _ in codes) == [201, 409], codes
    lost = next(body for code, body in codes if code == 409)
    assert lost["error"].startswith("sweep name must be new; 'race' ")

    with server.client(token) as c:
        done = wait_status(c, "race", "finished")
        assert (done["done"], done["total"], done["submitter"]) == (16, 16, "alice")
        assert [h["action"] for h in done["history"]] == ["submit"]
        df = store.read_table("trials", "race")
        assert sorted(df["result_id"]) == expected_ids(spec, store)
        assert store.read_meta("race")["submitter"] == "alice"
        assert verify_store(store).ok
        assert done["recommended"]["choice"] == verdict_info(load(store, "race")).recommended.choice
        assert c.get("/sweeps").json()["sweeps"][0]["status"] == "finished"
        rows = c.get("/query", params={"sql": "select count(*) from trials where sweep = 'race'"})
        assert rows.json()["rows"] == [[16]]
        hm = c.get("/sweeps/race/heatmap").json()
        assert len(hm["panels"]) == 4 and hm["x_values"] and hm["figure"]["data"]
        assert c.get("/sweeps/race/curves").json()["panels"] == 4
        report = c.get("/sweeps/race/report")
        assert report.status_code == 200 and "backdoor-sweep report: race" in report.text
        explain = c.get("/sweeps/race/explain")
        assert explain.status_code == 200 and "input-gradient maps" in explain.text
        r = c.post("/sweeps/race/cancel")
        assert (r.status_code, r.json()) == (
            409,
            {"error": "sweep 'race' must be queued or running to cancel it; it is finished"},
        )
        r = c.post("/sweeps/race/resume")
        assert r.json() == {"error": "sweep 'race' is finished; there is nothing to resume"}
        again = c.post("/sweeps", content=spec).json()["error"]
        assert again.startswith("sweep name must be new; 'race' is already in the store")


def test_cancel_stops_the_trials_keeps_what_finished_and_resume_completes(served):
    server, store, token = served
    spec = longer_yaml("long")
    with server.client(token) as c:
        assert c.post("/sweeps", content=spec).status_code == 201
        running = wait_for(
            lambda: (s := sweep_state(c, "long"))["done"] >= 12 and s["eta_s"] is not None and s,
            400,
            "the first trial was not stored with an ETA",
        )
        assert running["status"] == "running" and running["total"] == 72
        pid = runner_pid(store, "long")
        assert c.post("/sweeps/long/cancel").json()["status"] in ("cancelling", "cancelled")
        cancelled = wait_status(c, "long", "cancelled", 120)
        assert gone(pid, 30), "the runner outlived its cancel"
        kept = store.read_table("trials", "long")
        assert 12 <= len(kept) < 72 and (kept["status"] == "ok").all()
        assert cancelled["done"] == len(kept)
        assert verify_store(store).ok  # a cancelled sweep is an unfinished one, not a broken one

        assert c.post("/sweeps/long/resume").status_code == 202
        finished = wait_status(c, "long", "finished")
        assert [h["action"] for h in finished["history"]] == ["submit", "cancel", "resume"]
    df = store.read_table("trials", "long")
    assert sorted(df["result_id"]) == expected_ids(spec, store)  # each result exactly once
    assert set(df.loc[df["result_id"].isin(kept["result_id"]), "trial_id"]) == set(kept["trial_id"])
    curves = store.read_table("curves", "long")
    assert not curves.duplicated(["result_id", "beta"]).any()
    assert verify_store(store).ok


def test_a_killed_server_leaves_an_interrupted_sweep_that_resumes_on_request(tmp_path):
    store = Store(tmp_path / "store")
    token = add_token(store.root, "alice")
    spec = longer_yaml("crash")
    first = LiveServer(store.root).start()
    try:
        with first.client(token) as c:
            assert c.post("/sweeps", content=spec).status_code == 201
            wait_for(
                lambda: sweep_state(c, "crash")["done"] >= 24, 400, "two trials were not stored"
            )
        pid = runner_pid(store, "crash")
        ray_processes = descendants(pid)
        assert any("raylet" in cmdline(p) for p in ray_processes)
        first.kill()  # SIGKILL: no shutdown, no goodbye
        assert gone(pid, 20), "the runner outlived the killed server"
        # as after a killed `run` (tests/sweep/test_faults.py): two Ray agents outlive their
        # raylet by Ray's fixed 60 s attempt to report its death; the test does not wait for them
        left = {p: cmdline(p).strip() for p in wait_gone(ray_processes, 20)}
        kill_pids(list(left))
        assert set(left.values()) <= {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}, left
    finally:
        first.close()
    stored = store.read_table("trials", "crash")
    assert 24 <= len(stored) < 72 and not store.is_locked("crash")

    second = LiveServer(store.root).start()
    try:
        with second.client(token) as c:
            view = sweep_state(c, "crash")
            assert (view["status"], view["done"], view["total"]) == ("interrupted", len(stored), 72)
            # nothing resumes by itself: the store is untouched while the server runs
            before = sorted(p.name for p in store.parts("crash"))
            time.sleep(3)
            assert sweep_state(c, "crash")["status"] == "interrupted"
            assert sorted(p.name for p in store.parts("crash")) == before
            assert c.post("/sweeps/crash/resume").status_code == 202
            finished = wait_status(c, "crash", "finished")
            assert finished["submitter"] == "alice" and finished["done"] == 72
    finally:
        second.close()
    df = store.read_table("trials", "crash")
    assert sorted(df["result_id"]) == expected_ids(spec, store)  # nothing lost, nothing twice
    assert (df["status"] == "ok").all()
    assert verify_store(store).ok


@pytest.mark.cluster
def test_with_an_address_the_sweeps_run_on_that_cluster(tmp_path):
    """A one-node cluster with token authentication; the server's runners are its clients."""
    root = Path(tempfile.mkdtemp(prefix="bsc", dir="/tmp"))
    cluster = LocalCluster(root)
    store = Store(tmp_path / "store")
    token = add_token(store.root, "alice")
    server = None
    try:
        cluster.start_head()
        server = LiveServer(store.root, "--address", cluster.address, env=cluster.env()).start()
        with server.client(token) as c:
            assert c.post("/sweeps", content=smoke_yaml("remote")).status_code == 201
            wait_status(c, "remote", "finished")
        df = store.read_table("trials", "remote")
        assert len(df) == 16 and set(df["node_id"]) == {cluster.node_ids()[HEAD_IP]}
        log = (store.root / ".service" / "sweeps" / "remote" / "runner.log").read_text()
        assert f"Ray at {cluster.address}" in log
    finally:
        if server is not None:
            server.close()
        left = cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"Ray processes outlived the cluster: {left}"
