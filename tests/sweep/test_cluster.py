"""A real two-node Ray cluster on this machine: spread, token authentication, a node that dies.

The cluster (`tests/local_cluster.py`) is two ``ray start --block`` processes with one CPU each and
token authentication on; the CLI runs as a separate client process with ``--address``. Nodes are
stopped by PID, never with ``ray stop`` (other people's Ray processes share this machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweep.plan import plan_trials
from sweep.spec import load_spec, parse_spec
from sweep.store import Store
from tests.local_cluster import HAS_DASHBOARD, HEAD_IP, RAY, WORKER_IP, LocalCluster, cmdline

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
CLI = [sys.executable, "-m", "backdoor_sweep.cli"]
#: seeds per trial: ~10 s of work per trial, longer than a worker actor's start-up even under load
SEEDS = 48


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # a short root: Ray's unix socket paths live under it and must stay under 108 bytes
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="bsc", dir="/tmp"))
    c = LocalCluster(root)
    try:
        c.start_head(dashboard=HAS_DASHBOARD)
        c.start_worker()
        yield c
    finally:
        left = c.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes outlived the cluster: {left}"


def cluster_spec_file(tmp_path: Path, name: str, **execution) -> Path:
    """The default preset cut to 4 long trials (2 C x 2 gamma, 12 attacks x 48 seeds, no curves).

    Trials must outlast an actor's start-up on the worker node: with actor reuse Tune hands a
    pending trial to an actor that frees up rather than wait for a new node's actor, so a node
    whose actor takes longer to start than a trial takes to run never gets one (BENCHMARKS.md).
    """
    raw = load_spec().model_dump(mode="json")
    raw["name"] = name
    raw["grid"]["C"] = [1, 100]
    raw["grid"]["gamma"] = [0.01, 1]
    raw["seeds"] = list(range(SEEDS))
    raw["curves"] = {"enabled": False}
    raw["execution"].update(execution)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def expected_ids(spec_path: Path) -> set[str]:
    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    return {u["result_id"] for p in plan_trials(spec) for u in p.results}


def test_sweep_through_the_cli_runs_on_both_nodes(cluster, tmp_path):
    spec = cluster_spec_file(tmp_path, "cluster-spread")
    store = tmp_path / "store"
    out = subprocess.run(
        [*CLI, "run", str(spec), "--store", str(store), "--address", cluster.address, "--quiet"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    df = Store(store).read_table("trials", "cluster-spread")
    assert sorted(df["result_id"]) == sorted(expected_ids(spec))
    assert (df["status"] == "ok").all()
    nodes = cluster.node_ids()
    assert set(df["node_id"]) == {nodes[HEAD_IP], nodes[WORKER_IP]}
    check = subprocess.run([*CLI, "verify", "--store", str(store)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("token", ["none", "wrong"])
def test_a_client_without_the_token_is_refused(cluster, tmp_path, token):
    env = cluster.env(token=False)
    if token == "wrong":
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN"] = "0" * 64
    store = tmp_path / "store"
    out = subprocess.run(
        [*CLI, "run", "--smoke", "--store", str(store), "--address", cluster.address, "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    error = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and cluster.address in error[0] and "RAY_AUTH_TOKEN" in error[0], (
        out.stderr[-2000:]
    )
    assert not store.exists()  # refused before the store was touched: not even a lock file
    # the refusal is the token's doing, not an unreachable head: the same client with it connects
    with_token = subprocess.run(
        [*CLI, "run", "--smoke", "--store", str(store), "--address", cluster.address, "--quiet"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert with_token.returncode == 0, with_token.stderr[-3000:]
    assert len(Store(store).read_table("trials", "digits_svm_rbf-smoke")) == 16


@pytest.mark.skipif(
    not HAS_DASHBOARD, reason="ray job submit needs the dashboard: pip install 'ray[default]'"
)
def test_ray_job_submit_runs_a_sweep_on_the_cluster(cluster, tmp_path):
    store = tmp_path / "store"
    job = [
        RAY,
        "job",
        "submit",
        "--address",
        cluster.dashboard_address,
        "--",
        sys.executable,
        "-m",
        "backdoor_sweep.cli",
        "run",
        "--smoke",
        "--store",
        str(store),
        "--address",
        "auto",
        "--quiet",
    ]
    out = subprocess.run(job, env=cluster.env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "succeeded" in out.stdout + out.stderr, (
        out.stdout[-3000:] + out.stderr[-3000:]
    )
    df = Store(store).read_table("trials", "digits_svm_rbf-smoke")
    assert len(df) == 16 and (df["status"] == "ok").all()
    refused = subprocess.run(
        [RAY, "job", "list", "--address", cluster.dashboard_address],
        env=cluster.env(token=False),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "Missing authentication token" in refused.stderr


def test_a_worker_node_killed_mid_sweep_has_its_trials_rescheduled(cluster, tmp_path):
    """SIGKILL the worker node's whole process tree while it hosts a trial of the sweep."""
    spec = cluster_spec_file(tmp_path, "cluster-nodekill", max_failures=2)
    store = Store(tmp_path / "store")
    log = tmp_path / "driver.log"
    with open(log, "w") as fh:
        driver = subprocess.Popen(
            [
                *CLI,
                "run",
                str(spec),
                "--store",
                str(store.root),
                "--address",
                cluster.address,
                "--quiet",
            ],
            env=cluster.env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    head = cluster.node_ids()[HEAD_IP]
    try:
        running = _wait_for_trial_on_worker(cluster, store, "cluster-nodekill", driver)
        assert running, "the worker node never ran a trial\n" + log.read_text()[-3000:]
        assert running not in store.done_trials("cluster-nodekill")
        survivors = cluster.kill_node("worker")
        assert not survivors, f"worker processes survived SIGKILL: {survivors}"
        assert driver.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
    df = store.read_table("trials", "cluster-nodekill")
    assert sorted(df["result_id"]) == sorted(expected_ids(spec))  # none lost, none twice
    assert (df["status"] == "ok").all(), df.loc[df["status"] != "ok", "error"].iloc[0]
    # the trial the dead node was running was run again, from scratch, on the head node
    rerun = df[df["trial_id"] == running]
    assert len(rerun) == 12 * SEEDS and set(rerun["node_id"]) == {head}


def _wait_for_trial_on_worker(cluster: LocalCluster, store: Store, name: str, driver) -> str | None:
    """Block until the worker node runs a trial; return its id (the actor's working directory)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        for pid in cluster.nodes["worker"].tree():
            if cmdline(pid).startswith("ray::ImplicitFunc.train"):  # inside Trainable.train
                try:
                    return Path(os.readlink(f"/proc/{pid}/cwd")).name  # Tune's trial dir: our id
                except OSError:
                    continue
        time.sleep(0.1)
    return None
