"""The MagicQueue side of the bench: the cluster under test and the C load generator.

`MQCluster` runs `python -m cluster` as a subprocess (WORKERS = CPU count, in memory unless a
DATABASE_URL is given, PORT=0 so the supervisor picks a free port) with its output going to a log
file: a pipe that nobody drains while the cluster is under load could fill and stall a worker that
logs a warning. Readiness is the supervisor's `MagicQueue ready:` line, read back from that file
(a probe of the real process, never a sleep). It is stopped by its own pid: SIGTERM, then SIGKILL.

`Loadgen` compiles `bench/loadgen.c` with gcc into `bench/build/` (only when the source is newer
than the binary) and runs one closed-loop workload per call, returning its JSON figures. The
loadgen reads the workers' CPU itself at the start and the end of its timed phase, so the figures
cover exactly the measured interval.

`queue_names` picks queue names whose shards are owned by the workers in turn, so that the
connections of a workload spread over every worker (connections are handed to the owner of their
first request's queue).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shard.routing import owner_of, shard_of_name

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / "build"
READY_RE = re.compile(r"MagicQueue ready: (\d+) workers, (.*), supervisor pid (\d+)")
WORKER_RE = re.compile(r"worker (\d+) ready \(pid (\d+)")
START_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """Something the bench cannot go on without (a build failed, the cluster died)."""


def queue_names(prefix: str, count: int, workers: int) -> list[str]:
    """`count` names `prefix-N`, the i-th owned by worker i % workers."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        name = f"{prefix}-{i}"
        i += 1
        if owner_of(shard_of_name(name), workers) == len(out) % workers:
            out.append(name)
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in kB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


@dataclass
class MQCluster:
    workers: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    http_port: int = 0
    grpc_port: int = 0
    persistence: str = ""
    worker_pids: dict[int, int] = field(default_factory=dict)

    def start(self) -> MQCluster:
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)  # persistence only when this cluster is asked for it
        env.update(
            {
                "WORKERS": str(self.workers),
                "PORT": "0",
                "HTTP_PORT": "0",
                "GRPC_PORT": "0",
                "BIND": "127.0.0.1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cluster"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            text = self.log_path.read_text(errors="replace")
            m = READY_RE.search(text)
            if m:
                break
            if self.proc.poll() is not None:
                raise BenchError(f"cluster exited with {self.proc.returncode}:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(
                    f"cluster not ready after {START_TIMEOUT_S:.0f} s:\n{text[-3000:]}"
                )
            time.sleep(0.05)  # polling a log file the cluster writes; readiness is the line itself
        for wm in WORKER_RE.finditer(text):
            self.worker_pids[int(wm.group(1))] = int(wm.group(2))
        where = m.group(2)
        self.port = _port(r"tcp [^ ,]+:(\d+)", where)
        self.http_port = _port(r"http [^ ,]+:(\d+)", where)
        self.grpc_port = _port(r"grpc [^ ,]+:(\d+)", where)
        pm = re.search(r"persistence (\w+)", where)
        self.persistence = pm.group(1) if pm else "unknown"
        if len(self.worker_pids) != self.workers:
            raise BenchError(f"expected {self.workers} worker pids in the log:\n{text[-2000:]}")
        return self

    def pids(self) -> list[int]:
        return [self.worker_pids[i] for i in sorted(self.worker_pids)]

    def rss(self) -> int:
        return sum(rss_bytes(p) for p in self.pids())

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        for pid in self.pids():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
        return True

    def restarts_seen(self) -> list[str]:
        """Lines in which the supervisor reports a worker death (a crash under load)."""
        text = self.log_path.read_text(errors="replace")
        return [ln for ln in text.splitlines() if " died (" in ln]

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in [self.proc.pid, *self.pids()]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


def _port(pattern: str, where: str) -> int:
    m = re.search(pattern, where)
    return int(m.group(1)) if m else 0


class Loadgen:
    """The compiled C load generator."""

    def __init__(self) -> None:
        self.src = BENCH_DIR / "loadgen.c"
        self.exe = BUILD_DIR / "loadgen"

    def build(self) -> None:
        if self.exe.exists() and self.exe.stat().st_mtime >= self.src.stat().st_mtime:
            return
        BUILD_DIR.mkdir(exist_ok=True)
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(self.exe), str(self.src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"building the load generator failed:\n{r.stderr}")

    def run(
        self,
        mode: str,
        port: int,
        *,
        queues: list[str],
        total: int,
        conns: int = 1,
        batch: int = 1000,
        watch: list[int] | None = None,
        deadline_s: float = 120.0,
        budget_s: float = 0.0,
    ) -> dict[str, Any]:
        cmd = [
            str(self.exe),
            mode,
            "-p",
            str(port),
            "-c",
            str(conns),
            "-n",
            str(total),
            "-b",
            str(batch),
            "-q",
            ",".join(queues),
            "-T",
            str(deadline_s),
            "-B",
            str(budget_s),
        ]
        if watch:
            cmd += ["-W", ",".join(map(str, watch))]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=deadline_s + 60)
        if r.returncode == 2 or not r.stdout.strip():
            raise BenchError(f"loadgen {mode} failed ({r.returncode}): {r.stderr.strip()}")
        out: dict[str, Any] = json.loads(r.stdout)
        if r.stderr.strip():
            out["stderr"] = r.stderr.strip()[-500:]
        watched = out.pop("cpu_watch_s", {})
        out["cpu_server_s"] = sum(v for v in watched.values() if v >= 0)
        out["cpu_server_by_pid"] = watched
        return out
