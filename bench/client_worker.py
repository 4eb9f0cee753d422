"""Worker throughput of the Python client library: how fast `magicqueue_client.Worker` drains.

The measurement the BullMQ side mirrors with its own `Worker`: pre-push `n_jobs` no-op jobs
into a fresh queue (PUSHB, timed separately), then start one `Worker` with `concurrency` slots
and an async no-op handler, and time it from start until every job has been acked (the worker
returns only once its last ACK is answered). The queue is checked empty afterwards, so a
figure never counts jobs that were not really finished.

Usage from code: `run(host, port, n_jobs=100_000, concurrency=50)` -> dict with `jobs_per_s`.
From the shell, against a running cluster:

    WORKERS=2 .venv/bin/python -m cluster &          # prints its port
    .venv/bin/python -m bench.client_worker --port 6789 -n 100000 -c 50

The client runs in this process on the asyncio loop by default (`backend="trio"` for trio).
The figures are noisy on a shared 2-vCPU VM (client and server share the cores): compare runs
made close together.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from typing import Any

import anyio

from magicqueue_client import AsyncClient, ConnectionSettings, Job, JobSpec, Worker

PAYLOAD = {"task": "bench", "size": 1}


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


async def _run(
    host: str, port: int, n_jobs: int, concurrency: int, token: str | None, queue: str
) -> dict[str, Any]:
    settings = ConnectionSettings(host=host, port=port, token=token)
    async with AsyncClient(settings=settings) as c:
        t0 = time.perf_counter()
        await c.push_batch(queue, [JobSpec(PAYLOAD)] * n_jobs)
        push_s = time.perf_counter() - t0

        done = 0

        async def noop(job: Job) -> None:
            nonlocal done
            done += 1
            if done == n_jobs:
                worker.stop()

        worker = Worker(
            settings,
            queue,
            noop,
            concurrency=concurrency,
            handle_signals=False,
            poll_timeout=0.5,
        )
        t1 = time.perf_counter()
        await worker.run()
        drain_s = time.perf_counter() - t1

        info = {q.name: q for q in await c.list_queues()}.get(queue)
        left = (info.pending + info.processing) if info is not None else 0
    if left or worker.stats.completed != n_jobs:
        raise RuntimeError(f"drain incomplete: {left} jobs left, stats {worker.stats}")
    return {
        "library": "magicqueue_client",
        "jobs": n_jobs,
        "concurrency": concurrency,
        "push_s": round(push_s, 3),
        "push_jobs_per_s": _rate(n_jobs, push_s),
        "drain_s": round(drain_s, 3),
        "jobs_per_s": _rate(n_jobs, drain_s),
        "queue": queue,
    }


def run(
    host: str,
    port: int,
    n_jobs: int = 100_000,
    concurrency: int = 50,
    *,
    token: str | None = None,
    backend: str = "asyncio",
) -> dict[str, Any]:
    """Pre-push `n_jobs` no-op jobs, drain them with one `Worker`; returns the figures."""
    if n_jobs < 1 or concurrency < 1:
        raise ValueError("n_jobs and concurrency must be >= 1")
    queue = f"bench-client-worker-{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = anyio.run(
        _run, host, port, n_jobs, concurrency, token, queue, backend=backend
    )
    out["backend"] = backend
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6789)
    ap.add_argument("-n", "--jobs", type=int, default=100_000)
    ap.add_argument("-c", "--concurrency", type=int, default=50)
    ap.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    ap.add_argument("--token", default=os.environ.get("MQ_TOKEN"), help="AUTH_TOKENS token")
    args = ap.parse_args()
    res = run(
        args.host,
        args.port,
        args.jobs,
        args.concurrency,
        token=args.token,
        backend=args.backend,
    )
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
