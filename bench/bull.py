"""The BullMQ side, driven from Python: installs the pinned packages and talks to the node script.

`ensure_node_modules` runs `npm ci` (the exact versions of `bench/package-lock.json`) when
`bench/node_modules` is missing or older than the lock file. `BullSide` starts
`node bench/bullmq_side.mjs` once and sends it one JSON command per line; each answer is one JSON
line (see that script's header). Redis must answer on 127.0.0.1:6379; every key the bench writes
lives under its own prefix and is deleted with `flush`.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from typing import Any

from bench.mq import BENCH_DIR, BenchError

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
KEY_PREFIX = "mqbench"


def redis_available() -> str | None:
    """None when Redis answers PING, else why not."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError as e:
        return f"no Redis on {REDIS_HOST}:{REDIS_PORT} ({e})"
    if not reply.startswith(b"+PONG"):
        return f"Redis on {REDIS_HOST}:{REDIS_PORT} answered {reply!r} to PING"
    return None


def ensure_node_modules() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise BenchError("node and npm are needed for the BullMQ side (or pass --skip-bullmq)")
    lock = BENCH_DIR / "package-lock.json"
    marker = BENCH_DIR / "node_modules" / ".package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    r = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=BENCH_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        raise BenchError(f"npm ci failed in bench/:\n{r.stdout}\n{r.stderr}")


class BullSide:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [
                "node",
                str(BENCH_DIR / "bullmq_side.mjs"),
                f"--host={REDIS_HOST}",
                f"--port={REDIS_PORT}",
                f"--prefix={KEY_PREFIX}",
            ],
            cwd=BENCH_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = self.call("info")

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the BullMQ script exited ({self.proc.poll()}) during {op}")
        out: dict[str, Any] = json.loads(line)
        if "error" in out:
            raise BenchError(f"BullMQ {op} failed: {out['error']}")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("flush")
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op":"quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(30)
            except (BenchError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
