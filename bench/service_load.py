"""Load on the team service while a sweep runs: latency percentiles, errors, a complete sweep.

Bounded and on loopback only: one ``backdoor-sweep serve`` on 127.0.0.1 (a subprocess, stopped by
its PID), one sweep submitted to it (the default sweep with two seeds: 20 trials of 24 results
run one at a time, with learning curves; ``--smoke``: 6 trials — it runs in the server's runner
process on its own in-process Ray), and, once its first trial is stored, ``--clients`` threads each sending ``--requests`` requests over one keep-alive connection,
in a seeded mix:

- ``list``   GET /sweeps                                   (40 %)
- ``query``  GET /query (results per sweep)               (25 %)
- ``sweep``  GET /sweeps/{name} (progress, recommendation)  (15 %)
- ``page``   GET /ui/ then /ui/static/app.js (a page load) (20 %)

A request fails if it raises or answers anything but 2xx. Afterwards the sweep must finish with
every result stored exactly once (`sweep.verify.verify_store`). Exit code 1 if anything failed.

Usage::

    python bench/service_load.py                  # 20 clients x 50 requests
    python bench/service_load.py --smoke          # 2 clients x 10 requests
    python bench/service_load.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIX = (("list", 40), ("query", 25), ("sweep", 15), ("page", 20))
SQL = "select sweep, count(*) as results from trials group by sweep order by sweep"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_spec(name: str, smoke: bool) -> str:
    """The default sweep with two seeds: 20 trials of 24 results (``smoke``: 6 of 12)."""
    import yaml

    from sweep.spec import load_spec

    raw = load_spec().model_dump(mode="json")
    raw["name"] = name
    raw["seeds"] = [0, 1]
    if smoke:
        raw["grid"].update(C=[0.01, 1, 100], gamma=[0.01, 1])
        raw["seeds"] = [0]
    raw["execution"]["max_concurrent_trials"] = 1
    return yaml.safe_dump(raw)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def client(url: str, token: str, name: str, n: int, seed: int, out: list, start: threading.Event):
    import httpx

    rng = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w)]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        start.wait()
        for _ in range(n):
            kind = rng.choice(kinds)
            t0 = time.perf_counter()
            try:
                if kind == "list":
                    codes = [c.get("/sweeps").status_code]
                elif kind == "query":
                    codes = [c.get("/query", params={"sql": SQL}).status_code]
                elif kind == "sweep":
                    codes = [c.get(f"/sweeps/{name}").status_code]
                else:
                    codes = [c.get("/ui/").status_code, c.get("/ui/static/app.js").status_code]
                error = "" if all(200 <= s < 300 for s in codes) else f"HTTP {codes}"
            except Exception as err:  # a refused or dropped connection counts as a failure
                error = f"{type(err).__name__}: {err}"
            out.append((kind, time.perf_counter() - t0, error))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="2 clients x 10 requests")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.requests = 2, 10

    import httpx

    from backdoor_sweep.service.auth import Tokens
    from sweep.store import SERVICE_DIR, Store
    from sweep.verify import verify_store

    work = Path(tempfile.mkdtemp(prefix="bsl", dir="/tmp"))  # short: Ray's socket paths
    store = Store(work / "store")
    store.root.mkdir()
    token = Tokens(store.root / SERVICE_DIR / "tokens.json").add("bench")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(work)}
    log = open(work / "server.log", "wb")  # noqa: SIM115  (closed at the end)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backdoor_sweep.cli",
            "serve",
            "--store",
            str(store.root),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    name = "loaded"
    try:
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start within 60 s; see " + str(work))
            time.sleep(0.1)
        r = httpx.post(
            url + "/sweeps", content=sweep_spec(name, args.smoke), headers=auth, timeout=60
        )
        r.raise_for_status()
        total = r.json()["total"]
        deadline = time.monotonic() + 300  # its first trial stored: the load meets running trials
        while httpx.get(f"{url}/sweeps/{name}", headers=auth, timeout=60).json()["done"] == 0:
            if time.monotonic() > deadline:
                raise SystemExit("the sweep stored no trial within 300 s")
            time.sleep(0.2)
        started = httpx.get(f"{url}/sweeps/{name}", headers=auth, timeout=60).json()

        load_before = os.getloadavg()[0]
        out: list = []
        start = threading.Event()
        threads = [
            threading.Thread(
                target=client, args=(url, token, name, args.requests, seed, out, start)
            )
            for seed in range(args.clients)
        ]
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        start.set()
        for t in threads:
            t.join(900)
        wall = time.perf_counter() - t0
        during = httpx.get(f"{url}/sweeps/{name}", headers=auth, timeout=60).json()

        deadline = time.monotonic() + 900
        while (view := httpx.get(f"{url}/sweeps/{name}", headers=auth, timeout=60).json())[
            "status"
        ] not in ("finished", "failed", "interrupted", "cancelled"):
            if time.monotonic() > deadline:
                raise SystemExit("the sweep did not finish within 900 s")
            time.sleep(0.5)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()

    df = store.read_table("trials", name)
    report = verify_store(store)
    complete = (
        view["status"] == "finished"
        and len(df) == total
        and df["result_id"].is_unique
        and (df["status"] == "ok").all()
        and report.ok
    )
    rows = []
    for kind in [k for k, _ in MIX] + ["all"]:
        lat = [t * 1000 for k, t, e in out if kind in (k, "all")]
        errs = [e for k, _, e in out if kind in (k, "all") and e]
        if not lat:
            continue
        rows.append(
            {
                "kind": kind,
                "requests": len(lat),
                "errors": len(errs),
                "p50_ms": round(percentile(lat, 0.5), 1),
                "p90_ms": round(percentile(lat, 0.9), 1),
                "p99_ms": round(percentile(lat, 0.99), 1),
                "max_ms": round(max(lat), 1),
                "mean_ms": round(statistics.fmean(lat), 1),
            }
        )
    result = {
        "clients": args.clients,
        "requests_per_client": args.requests,
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(out) / wall, 1),
        "load_average_before": round(load_before, 2),
        "sweep_done_when_load_started": f"{started['done']}/{started['total']}",
        "sweep_done_when_load_ended": f"{during['done']}/{during['total']} ({during['status']})",
        "sweep_status": view["status"],
        "sweep_results": f"{len(df)}/{total}",
        "sweep_wall_s": store.read_meta(name).get("wall_seconds"),
        "sweep_complete_and_verified": bool(complete),
        "latency": rows,
        "first_errors": [e for _, _, e in out if e][:5],
        "cpus": os.cpu_count(),
    }
    print(
        f"{args.clients} clients x {args.requests} requests in {wall:.1f} s "
        f"({result['requests_per_s']} req/s), load average before {load_before:.2f}"
    )
    print(
        f"{'kind':6} {'n':>5} {'errors':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    for r in rows:
        print(
            f"{r['kind']:6} {r['requests']:5d} {r['errors']:6d} {r['p50_ms']:8.1f} "
            f"{r['p90_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}"
        )
    print(
        f"sweep: {result['sweep_done_when_load_started']} results when the load started, "
        f"{result['sweep_done_when_load_ended']} when it ended; then "
        f"{view['status']} with {len(df)}/{total} results, wall {result['sweep_wall_s']} s, "
        f"store verified: {report.ok}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    failed = sum(r["errors"] for r in rows if r["kind"] == "all")
    return 0 if complete and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
