"""A two-node Ray cluster on this machine for tests, started and stopped by PID only.

``ray stop`` would kill every Ray process of the machine, other people's included; here each node
is a ``ray start --block`` subprocess in its own session, and stopping a node signals that process
and then every process it had spawned (a snapshot of its process tree taken just before).

Addresses: Ray rewrites ``127.0.0.1`` given as ``--node-ip-address`` or ``--address`` to the
machine's outward address (``resolve_ip_for_localhost``), so the nodes use ``127.0.0.2`` (head)
and ``127.0.0.3`` (worker): loopback addresses Ray keeps, so all traffic stays on ``lo``, and
each node has its own IP. Token authentication is on (``RAY_AUTH_MODE=token``) with a fresh
token in a temporary file (``RAY_AUTH_TOKEN_PATH``), so ``~/.ray/auth_token`` is never touched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
#: the job server of the dashboard needs ``ray[default]`` (aiohttp…), which ``ray[tune]`` lacks
HAS_DASHBOARD = all(
    importlib.util.find_spec(m) for m in ("aiohttp", "aiohttp_cors", "prometheus_client")
)
HEAD_IP = "127.0.0.2"
WORKER_IP = "127.0.0.3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` right now (children, grandchildren…)."""
    tree = children_map()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pids: list[int]) -> list[int]:
    """The pids that still run (zombies count as gone)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Node:
    name: str
    ip: str
    proc: subprocess.Popen
    log: Path

    def tree(self) -> list[int]:
        return [self.proc.pid, *descendants(self.proc.pid)]


class LocalCluster:
    """Head and worker nodes under ``root`` (temp dirs, logs, token)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.token_path = root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self.nodes: dict[str, Node] = {}

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.port}"

    def env(self, token: bool = True) -> dict[str, str]:
        """Environment for a process of this cluster; ``token=False``: a client without the token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        if token:
            env["RAY_AUTH_MODE"] = "token"
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_path)
        else:
            env.pop("RAY_AUTH_MODE", None)
            home = self.root / "home-without-token"
            home.mkdir(exist_ok=True)
            env["HOME"] = str(home)  # no ~/.ray/auth_token either
            env["RAY_NUM_REDIS_GET_RETRIES"] = "3"  # give up after ~3 s instead of ~20 s
        return env

    def _start(self, name: str, ip: str, args: list[str], extra_env: dict[str, str]) -> Node:
        temp = self.root / name
        temp.mkdir()
        log = self.root / f"{name}.log"
        cmd = [
            RAY,
            "start",
            *args,
            f"--node-ip-address={ip}",
            "--num-cpus=1",
            f"--temp-dir={temp}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--disable-usage-stats",
            "--block",
        ]
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**self.env(), **extra_env},
                start_new_session=True,
            )
        node = Node(name, ip, proc, log)
        self.nodes[name] = node
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start {name} failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        return node

    def start_head(self, dashboard: bool = False) -> Node:
        """The head node; with ``dashboard`` (needs ``ray[default]``) it serves job submission."""
        # detect a dead node in ~3 s instead of ~30 s (health checks every second, 3 misses)
        fast_health = {
            "RAY_health_check_initial_delay_ms": "1000",
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
        }
        self.dashboard_port = free_port()
        return self._start(
            "head",
            HEAD_IP,
            [
                "--head",
                f"--port={self.port}",
                f"--include-dashboard={str(dashboard).lower()}",
                f"--dashboard-host={HEAD_IP}",
                f"--dashboard-port={self.dashboard_port}",
            ],
            fast_health,
        )

    @property
    def dashboard_address(self) -> str:
        return f"http://{HEAD_IP}:{self.dashboard_port}"

    def start_worker(self) -> Node:
        return self._start("worker", WORKER_IP, [f"--address={self.address}"], {})

    def node_ids(self) -> dict[str, str]:
        """Node IP -> Ray node id of the live nodes, asked through a client with the token."""
        code = (
            "import json, sys, ray; ray.init(address=sys.argv[1], logging_level='ERROR'); "
            "print(json.dumps({n['NodeManagerAddress']: n['NodeID'] for n in ray.nodes() if n['Alive']}))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, self.address],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL a node's whole process tree (a crash, not a shutdown); returns survivors."""
        node = self.nodes[name]
        pids = node.tree()
        kill_pids(pids)
        node.proc.wait(timeout=30)
        return wait_gone(pids, 10)

    def stop(self) -> list[int]:
        """SIGTERM each node (Ray shuts its processes down), then SIGKILL what is left, by PID."""
        snapshot = {name: node.tree() for name, node in self.nodes.items()}
        for name in reversed(list(self.nodes)):
            node = self.nodes[name]
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        left: list[int] = []
        for name, node in self.nodes.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(timeout=30)
            left += wait_gone(snapshot[name], 15)
        kill_pids(left)
        return left
