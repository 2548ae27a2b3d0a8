"""The launcher refuses early and replaces late: nothing lost, nothing hangs, nothing written.

- ``--overwrite`` keeps the stored sweep until the new run is ready, and puts it back if the run
  fails;
- an unreachable ``--address`` is one line after a bounded wait, not ray.init's minutes of retries;
- a trial larger than any node is refused before Tune would leave it pending forever;
- a refused run creates nothing in the store, not even a lock file.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backdoor_sweep.errors import SweepError
from sweep import claim, launcher
from sweep.cluster import probe_address
from sweep.launcher import run_sweep
from sweep.spec import load_spec, parse_spec
from sweep.store import LOCK_DIR, Store
from tests.conftest import ROOT, cli
from tests.handmade import write_sweep


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: equal snapshots, untouched folder."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def hand_spec(store: Store, **changes):
    """The hand-made sweep's own spec (so the run would replace exactly that sweep)."""
    raw = store.read_meta("hand")["spec"]
    raw.update(changes)
    return parse_spec(raw)


def smoke_spec(store_root: Path, name: str = "fresh", **execution):
    raw = load_spec().smoke().model_dump(mode="json")
    raw.update(name=name, store=str(store_root))
    raw["execution"].update(execution)
    return parse_spec(raw)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- --overwrite --------------------------------------------------------------------------------
def test_overwrite_keeps_the_old_sweep_when_the_new_run_fails_before_it_is_ready(tmp_path):
    store = write_sweep(tmp_path / "store")
    before = snapshot(store.root)
    absent = str(tmp_path / "no-mnist-here")
    spec = hand_spec(store, dataset={"name": "mnist", "classes": [7, 1], "data_root": absent})
    with pytest.raises(SweepError, match="train-images-idx3-ubyte"):
        run_sweep(spec, overwrite=True, show_progress=False)
    assert snapshot(store.root) == before  # old results intact, no lock file added


def test_overwrite_through_the_cli_keeps_the_old_sweep_on_a_bad_address(tmp_path, closed_port):
    store = write_sweep(tmp_path / "store")
    before = snapshot(store.root)
    spec = tmp_path / "hand.yaml"
    import yaml

    spec.write_text(yaml.safe_dump(store.read_meta("hand")["spec"]))
    address = f"127.0.0.1:{closed_port}"
    res = cli("run", spec, "--overwrite", "--address", address, "--store", store.root)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(
        f"error: --address must reach a running Ray cluster; got {address!r}"
    )
    assert snapshot(store.root) == before


@pytest.mark.slow
def test_overwrite_puts_the_old_sweep_back_when_the_run_fails(ray_runtime, tmp_path, monkeypatch):
    store = write_sweep(tmp_path / "store")
    before = snapshot(store.root)

    def failing_fit(*args, **kwargs):
        # the old sweep is aside and the new one has its sweep.json when Tune would start
        assert not (store.root / "hand" / "trials").exists()
        assert (store.root / LOCK_DIR / "hand.replaced" / "sweep.json").is_file()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(launcher, "_fit", failing_fit)
    with pytest.raises(OSError, match="No space left"):
        run_sweep(hand_spec(store), overwrite=True, show_progress=False)
    after = snapshot(store.root)
    assert {k: v for k, v in after.items() if not k.startswith(LOCK_DIR)} == before


def test_a_replacing_run_killed_outright_is_recovered_by_the_next_run(tmp_path):
    """SIGKILL between moving the old sweep aside and writing the new sweep.json."""
    store = write_sweep(tmp_path / "store")
    before = snapshot(store.root)
    aside = store.root / LOCK_DIR / "hand.replaced"
    aside.parent.mkdir()
    os.replace(store.sweep_dir("hand"), aside)
    claim._recover_replaced(store, "hand")
    assert snapshot(store.root) == before and not aside.exists()
    # killed after the new sweep.json: the new sweep is kept (resume finishes it), the old dropped
    os.replace(store.sweep_dir("hand"), aside)
    write_sweep(store.root)
    claim._recover_replaced(store, "hand")
    assert store.exists("hand") and not aside.exists()


# -- refused runs create nothing ----------------------------------------------------------------
def test_rerunning_an_existing_sweep_is_refused_without_a_lock_file(tmp_path):
    store = write_sweep(tmp_path / "store")
    before = snapshot(store.root)
    with pytest.raises(SweepError, match="already exists"):
        run_sweep(hand_spec(store), show_progress=False)
    assert snapshot(store.root) == before and not (store.root / LOCK_DIR).exists()


def test_a_run_refused_for_its_data_creates_no_store(tmp_path):
    absent = str(tmp_path / "absent")
    raw = load_spec().smoke().model_dump(mode="json")
    raw.update(store=str(tmp_path / "store"))
    raw["dataset"] = {"name": "mnist", "classes": [7, 1], "data_root": absent}
    with pytest.raises(SweepError):
        run_sweep(parse_spec(raw), show_progress=False)
    assert not (tmp_path / "store").exists()


# -- bounded connection -------------------------------------------------------------------------
def test_an_unreachable_address_is_one_line_and_creates_no_store(tmp_path, closed_port):
    spec = smoke_spec(tmp_path / "store")
    with pytest.raises(SweepError) as err:
        run_sweep(spec, address=f"127.0.0.1:{closed_port}", show_progress=False)
    assert str(err.value) == (
        f"--address must reach a running Ray cluster; got '127.0.0.1:{closed_port}' "
        f"(127.0.0.1:{closed_port}: Connection refused)"
    )
    assert not (tmp_path / "store").exists()


def test_a_silent_server_is_refused_after_the_timeout():
    """A port that accepts connections and never answers (a hung or firewalled service)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(SweepError, match=r"no answer within 0.5 s"):
            probe_address(f"127.0.0.1:{port}", timeout=0.5)


def test_a_server_that_is_not_ray_is_refused():
    """An HTTP/1 web server on the port: ray.init would retry it for minutes."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(SweepError, match="not a Ray head node"):
            probe_address(f"127.0.0.1:{server.server_port}", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "address, needle",
    [
        ("nonsense", "--address must be auto, HOST:PORT or ray://HOST:PORT; got 'nonsense'"),
        ("127.0.0.1:99999", "--address must be auto, HOST:PORT"),
        ("no-such-host.invalid:6379", "unknown host"),
    ],
)
def test_malformed_or_unknown_addresses(address, needle):
    with pytest.raises(SweepError, match=needle.replace("(", r"\(").replace("+", r"\+")):
        probe_address(address, timeout=1)


@pytest.mark.slow
def test_a_running_ray_answers_the_probe(ray_runtime):
    probe_address(ray_runtime.get_runtime_context().gcs_address, timeout=5)


# -- resources ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "execution, needle",
    [
        ({"cpus_per_trial": 64}, "execution.cpus_per_trial must be at most 2, the most CPUs"),
        # in-process, the machine's own CUDA devices are checked first (sweep.execution); on a
        # cluster the nodes' resources are (sweep.cluster.check_resources)
        (
            {"gpus_per_trial": 1},
            "execution.gpus_per_trial must be at most the GPUs there are (0 CUDA devices",
        ),
    ],
)
def test_a_trial_larger_than_any_node_is_refused(ray_runtime, tmp_path, execution, needle):
    spec = smoke_spec(tmp_path / "store", **execution)
    with pytest.raises(SweepError) as err:
        run_sweep(spec, show_progress=False)
    assert needle in str(err.value) and "got" in str(err.value)
    assert not (tmp_path / "store").exists()


# -- signals ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_leaves_the_callers_signal_handlers_in_place(ray_runtime, tmp_path):
    """Tune installs a SIGINT handler and Ray a SIGTERM one; after a run the caller's are back
    (else Ctrl-C would do nothing in a notebook or a test process that ran a sweep)."""
    import signal

    def mine(signum, frame):  # a caller's own handler
        raise KeyboardInterrupt

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    before = [signal.signal(sig, mine) for sig in signals]
    try:
        outcome = run_sweep(smoke_spec(tmp_path / "store"), show_progress=False)
        assert outcome.complete
        assert [signal.getsignal(sig) for sig in signals] == [mine] * 3
    finally:
        for sig, handler in zip(signals, before, strict=True):
            signal.signal(sig, handler)


@pytest.mark.slow
def test_an_in_process_ray_asks_for_token_auth_without_rays_warning(tmp_path):
    """Ray turns token authentication on for a new local runtime and warns on every run; we ask
    for the same mode, and an explicit RAY_AUTH_MODE is kept."""
    code = (
        "import os, ray\n"
        "from sweep.cluster import init_ray\n"
        "init_ray(None, 1)\n"
        "print('mode', os.environ.get('RAY_AUTH_MODE'))\n"
        "print('value', ray.get(ray.remote(lambda: 41 + 1).remote()))\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env.update(PYTHONPATH=str(ROOT), HOME=str(tmp_path))  # the token goes to ~/.ray
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "mode token" in out.stdout and "value 42" in out.stdout
    assert "Token authentication is enabled" not in out.stderr
    assert (tmp_path / ".ray" / "auth_token").is_file()
    env["RAY_AUTH_MODE"] = "disabled"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0 and "mode disabled" in out.stdout, out.stderr
