"""Start and drive a real cluster from tests.

`Cluster` runs `python -m cluster` as a subprocess on free ports (PORT=0 and friends: the
supervisor picks free ports and reports them), waits for its `MagicQueue ready:` line (a probe of
the real process, never a sleep), and stops it by its own process id: SIGTERM, then SIGKILL if it
does not exit in time. `Client` is a minimal blocking newline-JSON client for assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
READY_RE = re.compile(r"MagicQueue ready: (\d+) workers, (.*), supervisor pid (\d+)")
WORKER_RE = re.compile(r"worker (\d+) ready \(pid (\d+)")


class Cluster:
    def __init__(self, workers: int = 2, **env: str) -> None:
        self.workers = workers
        self.env = {k: str(v) for k, v in env.items()}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.http_port = 0
        self.grpc_port = 0
        self.unix_socket: str | None = self.env.get("UNIX_SOCKET")
        self.worker_pids: dict[int, int] = {}
        self.output: list[str] = []
        self._buf = b""

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 20.0) -> Cluster:
        env = dict(os.environ)
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
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(READY_RE, timeout)
        return self

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Read the cluster's output until a line matches `pattern`."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.output.append(line)
                self._note(line)
                m = pattern.search(line)
                if m:
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"cluster never printed {pattern.pattern!r}:\n{self.log()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise RuntimeError(f"cluster exited ({self.proc.poll()}):\n{self.log()}")
                self._buf += chunk

    def _note(self, line: str) -> None:
        m = WORKER_RE.search(line)
        if m:
            self.worker_pids[int(m.group(1))] = int(m.group(2))
        m = READY_RE.search(line)
        if m:
            where = m.group(2)
            self.port = int(re.search(r"tcp [^ ,]+:(\d+)", where).group(1))  # type: ignore[union-attr]
            h = re.search(r"http [^ ,]+:(\d+)", where)
            g = re.search(r"grpc [^ ,]+:(\d+)", where)
            self.http_port = int(h.group(1)) if h else 0
            self.grpc_port = int(g.group(1)) if g else 0

    def drain_output(self) -> None:
        """Collect whatever the cluster printed so far (non-blocking)."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._buf += chunk
        while b"\n" in self._buf:
            raw, self._buf = self._buf.split(b"\n", 1)
            line = raw.decode(errors="replace")
            self.output.append(line)
            self._note(line)

    def log(self) -> str:
        return "\n".join(self.output[-80:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 12.0) -> int:
        """SIGTERM the supervisor by its pid; returns its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        code = self.proc.returncode
        self.drain_remaining()
        return code

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker it reported."""
        assert self.proc is not None
        for pid in [self.proc.pid, *self.worker_pids.values()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        for pid in self.worker_pids.values():
            _wait_gone(pid, 5.0)
        self.drain_remaining()

    def drain_remaining(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        if self.proc.stdout.closed:
            return
        with contextlib.suppress(Exception):
            rest = self.proc.stdout.read()
            if rest:
                self._buf += rest
        while self._buf:
            raw, _, self._buf = self._buf.partition(b"\n")
            self.output.append(raw.decode(errors="replace"))
        self.proc.stdout.close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ clients

    def client(self, timeout: float = 10.0) -> Client:
        return Client.tcp("127.0.0.1", self.port, timeout)

    def unix_client(self, timeout: float = 10.0) -> Client:
        assert self.unix_socket
        return Client.unix(self.unix_socket, timeout)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


class Client:
    """Blocking newline-JSON client: `call()` sends one request and returns its reply."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = 10.0) -> Client:
        s = socket.create_connection((host, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(s)

    @classmethod
    def unix(cls, path: str, timeout: float = 10.0) -> Client:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(path)
        return cls(s)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, obj: Any) -> None:
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self) -> dict[str, Any]:
        line = self.recv_line()
        out: dict[str, Any] = json.loads(line)
        return out

    def recv_line(self) -> bytes:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        self.send({"cmd": cmd, **fields})
        return self.recv()

    def ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """`call()` that asserts the reply is ok."""
        r = self.call(cmd, **fields)
        assert r.get("ok") is True, r
        return r

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self._buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def temp_socket_path() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="mqtest-")
    path = os.path.join(d, "mq.sock")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.rmdir(d)


def free_port() -> int:
    """A port nobody listens on right now, on 127.0.0.1 (for servers that need one up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
