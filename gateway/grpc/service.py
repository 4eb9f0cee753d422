"""The gRPC listener of one worker: grpcio's asyncio server on a thread of its own.

Why a thread in every worker (and not one gateway process): grpcio's server needs an asyncio
loop and cannot run inside trio, but it does not need a process of its own. Each worker runs one
`grpc.aio` server on a dedicated thread with its own event loop, bound to GRPC_PORT with
SO_REUSEPORT (grpcio's `grpc.so_reuseport` option, on by default on Linux and set explicitly
here), so the kernel spreads gRPC connections over the workers exactly as it spreads TCP ones.
A request then enters the cluster where it landed, through the same router as a TCP line: no
extra hop, no extra process to supervise, restart or keep in the shard map, and it stops and
restarts with its worker. A separate gateway process would add a forwarding hop to every call
and be a single point of failure that the supervisor (which never runs a loop) would have to
give links of its own. The price is the GIL, shared with the worker's trio thread: gRPC parsing
and serialisation compete with the shards for one core per worker, as HTTP does.

grpcio is imported only here, after the supervisor forked the worker (grpcio's threads must not
exist in a process that forks). The stubs come from `proto.grpc_gen` (generated on first use).

Lifecycle (the node's `Service` protocol):
- `start()` (trio): starts the thread and waits, without blocking trio, until the server is
  bound and serving, or re-raises the reason it could not be (a port in use): the worker then
  fails to start, loudly.
- `stop()` (trio, on SIGTERM once client connections are closed): asks the asyncio loop to stop
  the server with a short grace period. In-flight unary calls finish; streams still open are
  cancelled, and their consumers' jobs go back to the queue through the bridge while the trio
  run is still alive to do it. Returns once the thread has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import trio

from gateway.grpc.bridge import Bridge
from gateway.grpc.servicer import QueueServicer
from proto.grpc_gen import load

if TYPE_CHECKING:
    from gateway.node import Node

log = logging.getLogger("magicqueue.grpc")

# In-flight calls get this long to finish at shutdown; open streams are then cancelled.
STOP_GRACE_S = 1.0
# Time allowed for the thread to wind down after that (releasing consumers, closing the loop).
STOP_TIMEOUT_S = 5.0
# A response may carry a full PullBatch of large jobs (MAX_BATCH jobs of up to MAX_JOB_BYTES).
MAX_SEND_BYTES = 512 * 1024 * 1024
# Keepalive pings find consumers whose host vanished without closing the connection, so their
# jobs go back to the queue instead of staying active until their timeout.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
# Clients may ping this often (their own keepalive) without being told to calm down.
MIN_CLIENT_PING_MS = 10_000


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_request: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._started = trio.Event()
        self._finished = trio.Event()

    # ------------------------------------------------------------ trio side

    async def start(self, nursery: trio.Nursery) -> None:
        bridge = Bridge(self.node)  # on the trio thread: it captures the trio token
        token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(
            target=self._main,
            args=(token, bridge),
            name=f"grpc-{self.node.index}",
            daemon=True,  # never keeps a crashed worker alive
        )
        self._thread.start()
        await self._started.wait()
        if self._error is not None:
            await self._join()
            raise self._error
        self.node.bound_ports["grpc"] = self.port

    def begin_shutdown(self) -> None:
        """Ask the gRPC server to stop taking RPCs now; in-flight ones get the grace period
        while the TCP side drains, instead of after it."""
        loop, request = self._loop, self._stop_request
        if loop is not None and request is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(request.set)

    async def drained(self) -> None:
        with trio.move_on_after(STOP_GRACE_S + STOP_TIMEOUT_S):
            await self._finished.wait()

    async def stop(self) -> None:
        self.begin_shutdown()
        with trio.move_on_after(STOP_GRACE_S + STOP_TIMEOUT_S):
            await self._finished.wait()
        if not self._finished.is_set():
            log.error("gRPC server did not stop in time; leaving its thread behind")
            return
        await self._join()

    async def _join(self) -> None:
        if self._thread is not None:
            await trio.to_thread.run_sync(partial(self._thread.join, STOP_TIMEOUT_S))

    # ------------------------------------------------------------ the gRPC thread

    def _main(self, token: trio.lowlevel.TrioToken, bridge: Bridge) -> None:
        try:
            # Loading may have to generate the stubs (a fresh checkout): not on the trio thread.
            pb2, pb2_grpc = load()
            servicer = QueueServicer(bridge, pb2, self.node.config.auth_tokens)
            asyncio.run(self._serve(token, bridge, servicer, pb2_grpc))
        except BaseException as e:
            if self._loop is None:  # never served: start() re-raises it in the worker
                self._error = e
            else:
                log.exception("gRPC server failed")
        finally:
            # trio.Event is not thread-safe: set both on the trio thread (setting twice is fine;
            # `started` is still unset if serving never began).
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._started.set)
                token.run_sync_soon(self._finished.set)

    async def _serve(
        self,
        token: trio.lowlevel.TrioToken,
        bridge: Bridge,
        servicer: QueueServicer,
        pb2_grpc: Any,
    ) -> None:
        cfg = self.node.config
        bridge.attach(asyncio.get_running_loop())
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1),
                ("grpc.max_receive_message_length", cfg.limits.max_frame_bytes),
                ("grpc.max_send_message_length", MAX_SEND_BYTES),
                ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_MS),
            ],
            maximum_concurrent_rpcs=cfg.max_connections,
        )
        pb2_grpc.add_QueueServiceServicer_to_server(servicer, server)
        try:
            self.port = server.add_insecure_port(_address(cfg.bind, cfg.grpc_port))
            await server.start()
        except Exception as e:
            self._error = RuntimeError(f"gRPC: cannot serve on {cfg.bind}:{cfg.grpc_port}: {e}")
            await server.stop(None)
            return
        self._loop = asyncio.get_running_loop()
        self._stop_request = asyncio.Event()
        token.run_sync_soon(self._started.set)
        await self._stop_request.wait()
        await server.stop(STOP_GRACE_S)
