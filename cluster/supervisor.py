"""The supervisor: starts one worker per CPU, restarts crashed ones, stops them all.

It never runs an event loop or starts a thread: workers are forked from it, and forking a
process that runs trio (or holds threads) is unsafe. Its loop is plain `select()` on two pipes:
the workers' readiness lines and the signal wake-up pipe.

Before forking it claims the ports. SO_REUSEPORT would let a second cluster on the same port
silently take half the connections, so a lock file per port (held by the supervisor and
inherited by its workers) refuses a second MagicQueue at once, and a probe bind refuses a port
that another program holds. Port 0 picks a free port, kept reserved by the probe socket until
the workers have bound it. The Unix socket, when configured, is bound here once and inherited
by every worker (one path cannot be SO_REUSEPORT-shared).

A worker that dies (kill -9 included) is restarted after a short capped backoff (50 ms doubling
to 1 s) while the others keep serving. SIGTERM/SIGINT: every worker gets SIGTERM, answers what
is in flight and exits; stragglers are killed after the grace period; exit status 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace

from cluster.config import Config, ConfigError
from shard.routing import shards_of_worker

_RESTART_MIN_S = 0.05
_RESTART_MAX_S = 1.0
_STABLE_AFTER_S = 10.0
_PR_SET_PDEATHSIG = 1


class StartError(Exception):
    """The cluster cannot start (a port or socket in use); the message says which."""


def _say(msg: str) -> None:
    print(msg, flush=True)


def _lock_port(port: int) -> int:
    path = os.path.join(tempfile.gettempdir(), f"magicqueue-port-{port}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StartError(
            f"port {port} is already served by another MagicQueue cluster (supervisor pid "
            f"{holder}); stop it first or choose another PORT"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _probe(host: str, port: int, what: str) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: fails if another program holds the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        raise StartError(f"{what} port {host}:{port} is not available: {e.strerror}") from None
    return s


def _bind_unix(path: str) -> socket.socket:
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale socket of a server that is gone
        else:
            raise StartError(f"Unix socket {path} is in use by a running server")
        finally:
            probe.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4096)
    s.setblocking(False)
    return s


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.pids: dict[int, int] = {}  # pid -> worker index
        self.started_at: dict[int, float] = {}
        self.failures: dict[int, int] = {}
        self.restart_at: dict[int, float] = {}
        self.ready: set[int] = set()
        self.announced = False
        self.stopping = False
        self.unix: socket.socket | None = None
        self.reserved: list[socket.socket] = []
        self.lock_fd = -1

    def prepare(self) -> None:
        cfg = self.config
        tcp = _probe(cfg.bind, cfg.port, "TCP")
        port = tcp.getsockname()[1]
        self.lock_fd = _lock_port(port)
        self.reserved.append(tcp)
        http_port, grpc_port = cfg.http_port, cfg.grpc_port
        if cfg.http:
            h = _probe(cfg.bind, cfg.http_port, "HTTP")
            http_port = h.getsockname()[1]
            self.reserved.append(h)
        if cfg.grpc:
            g = _probe(cfg.bind, cfg.grpc_port, "gRPC")
            grpc_port = g.getsockname()[1]
            self.reserved.append(g)
        if cfg.unix_socket:
            self.unix = _bind_unix(cfg.unix_socket)
        run_dir = tempfile.mkdtemp(prefix="magicqueue-")
        self.config = replace(
            cfg, port=port, http_port=http_port, grpc_port=grpc_port, run_dir=run_dir
        )

    def run(self) -> int:
        ready_r, ready_w = os.pipe()
        sig_r, sig_w = os.pipe()
        os.set_blocking(sig_w, False)
        os.set_blocking(ready_r, False)
        signal.set_wakeup_fd(sig_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, lambda *_: None)
        self._ready_w = ready_w
        self._close_in_child = [ready_r, sig_r, sig_w]
        # Import the worker's modules once, before any fork: a restarted worker then starts from
        # memory instead of spending 0.5-1 s importing them (measured), which kept a killed
        # worker away for well over a second. Importing them starts no thread and no loop.
        import cluster.worker  # noqa: F401

        if self.config.http:
            import gateway.http  # noqa: F401  (quart, hypercorn: ~0.5 s, no threads)

        for i in range(self.config.workers):
            self._spawn(i)
        buf = b""
        deadline_stop: float | None = None
        while True:
            timeout = 1.0
            if self.restart_at:
                timeout = max(0.0, min(self.restart_at.values()) - time.monotonic())
            if deadline_stop is not None:
                timeout = max(0.0, min(timeout, deadline_stop - time.monotonic()))
            try:
                readable, _, _ = select.select([ready_r, sig_r], [], [], timeout)
            except InterruptedError:
                readable = []
            if sig_r in readable:
                for signum in os.read(sig_r, 64):
                    if signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
                        self.stopping = True
                        deadline_stop = time.monotonic() + self.config.shutdown_grace_s + 1.5
                        _say("MagicQueue stopping: waiting for workers to finish in-flight work")
                        for pid in self.pids:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGTERM)
            if ready_r in readable:
                with contextlib.suppress(BlockingIOError):
                    buf += os.read(ready_r, 4096)
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._on_ready(line.decode())
            self._reap()
            if self.stopping:
                if not self.pids:
                    break
                if deadline_stop is not None and time.monotonic() >= deadline_stop:
                    for pid in list(self.pids):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    deadline_stop = None
                continue
            now = time.monotonic()
            for idx, at in list(self.restart_at.items()):
                if at <= now:
                    del self.restart_at[idx]
                    self._spawn(idx)
        self.cleanup()
        _say("MagicQueue stopped")
        return 0

    def _spawn(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                    signal.signal(sig, signal.SIG_DFL)
                for fd in self._close_in_child:
                    os.close(fd)
                for s in self.reserved:
                    s.close()
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
                if os.getppid() == 1:  # the supervisor died before prctl took effect
                    os._exit(1)
                from cluster.worker import run_worker

                unix_fd = self.unix.fileno() if self.unix is not None else None
                code = run_worker(index, self.config, self._ready_w, unix_fd)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.pids[pid] = index
        self.started_at[index] = time.monotonic()

    def _on_ready(self, line: str) -> None:
        parts = line.split()
        if len(parts) != 3 or parts[0] != "ready":
            return
        index, pid = int(parts[1]), int(parts[2])
        self.ready.add(index)
        shards = shards_of_worker(index, self.config.workers)
        _say(f"worker {index} ready (pid {pid}, shards {','.join(map(str, shards))})")
        if not self.announced and len(self.ready) == self.config.workers:
            self.announced = True
            for s in self.reserved:  # the workers hold the ports now
                s.close()
            self.reserved.clear()
            cfg = self.config
            where = [f"tcp {cfg.bind}:{cfg.port}"]
            if cfg.unix_socket:
                where.append(f"unix {cfg.unix_socket}")
            if cfg.http:
                where.append(f"http {cfg.bind}:{cfg.http_port}")
            if cfg.grpc:
                where.append(f"grpc {cfg.bind}:{cfg.grpc_port}")
            mode = "postgresql" if cfg.database_url else "memory"
            _say(
                f"MagicQueue ready: {cfg.workers} workers, {', '.join(where)}, "
                f"persistence {mode}, supervisor pid {os.getpid()}"
            )

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            self.ready.discard(index)
            if self.stopping:
                continue
            how = (
                f"signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"exit code {os.WEXITSTATUS(status)}"
            )
            up = time.monotonic() - self.started_at.get(index, 0.0)
            fails = 0 if up > _STABLE_AFTER_S else self.failures.get(index, 0) + 1
            self.failures[index] = fails
            delay = min(_RESTART_MIN_S * (2 ** max(fails - 1, 0)), _RESTART_MAX_S)
            _say(f"worker {index} (pid {pid}) died ({how}); restarting in {delay:.2f} s")
            self.restart_at[index] = time.monotonic() + delay

    def cleanup(self) -> None:
        for s in self.reserved:
            s.close()
        if self.unix is not None and self.config.unix_socket:
            self.unix.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.unix_socket)
        if self.config.run_dir:
            shutil.rmtree(self.config.run_dir, ignore_errors=True)
            self.config = replace(self.config, run_dir="")
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1
        self.reserved.clear()
        self.unix = None


def main() -> int:
    try:
        config = Config.from_env()
        sup = Supervisor(config)
        sup.prepare()
    except (ConfigError, StartError) as e:
        print(f"magicqueue: {e}", file=sys.stderr, flush=True)
        return 2
    except OSError as e:
        print(f"magicqueue: cannot start: {e}", file=sys.stderr, flush=True)
        return 2 if e.errno != errno.EACCES else 13
    try:
        return sup.run()
    finally:
        sup.cleanup()
