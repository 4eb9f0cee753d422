"""A worker process: one trio run holding one `gateway.node.Node`.

Entered right after `os.fork()` in the supervisor, before any event loop exists in this process
(forking inside `trio.run` is unsupported). Everything that needs a loop is created here. The
readiness line goes to the supervisor's pipe; a crash prints its traceback and exits non-zero so
the supervisor restarts the worker.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import trio

from cluster.config import Config
from gateway.node import Node


def run_worker(index: int, config: Config, ready_fd: int, unix_fd: int | None) -> int:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "WARNING").upper(),
        format=f"%(asctime)s worker-{index} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )

    async def main() -> None:
        node = Node(index, config)
        if config.http:
            from gateway.http import HttpService  # quart and hypercorn load only when enabled

            node.services.append(HttpService(node))
        if config.grpc:
            # grpcio is imported here, after the fork: its threads must never exist in the
            # supervisor, which forks.
            from gateway.grpc.service import GrpcService

            node.services.append(GrpcService(node))

        def announce() -> None:
            os.write(ready_fd, f"ready {index} {os.getpid()}\n".encode())

        await node.run(announce, unix_fd)

    try:
        trio.run(main)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0
