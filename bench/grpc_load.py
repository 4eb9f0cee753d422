"""gRPC push throughput: how many jobs per second the gRPC API accepts.

Three closed-loop measurements against a running cluster (GRPC=1), one grpcio client channel:
- `push_seq`:      single `Push` calls, one after another (latency-bound: one round trip each);
- `push_inflight`: single `Push` calls with `INFLIGHT` outstanding at once (futures);
- `push_batch`:    `PushBatch` calls of `BATCH` jobs each, one after another.
Then the queue is drained with PullBatch + AckBatch of `BATCH` (`drain`, also timed), so the
server is left as it was. Each measurement uses its own fresh queue.

Usage from code: `run(host, port, n)` -> dict of figures (jobs/s, and seconds taken).
From the shell, against a running cluster:

    GRPC=1 WORKERS=2 .venv/bin/python -m cluster &          # prints its gRPC port
    .venv/bin/python -m bench.grpc_load --port 6791 -n 20000

The figures are noisy on a shared 2-vCPU VM (client and server share the cores): compare runs
made close together.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import deque
from typing import Any

import grpc

from proto.grpc_gen import load

BATCH = 1_000
INFLIGHT = 64
PAYLOAD = b'{"task":"bench","size":1}'


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def run(host: str, port: int, n: int, token: str | None = None) -> dict[str, Any]:
    """Measure gRPC push throughput with `n` jobs per measurement; returns the figures."""
    pb, pb_grpc = load()
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    tag = f"grpc-bench-{os.getpid()}-{time.time_ns()}"
    out: dict[str, Any] = {"transport": "grpc", "n": n, "batch": BATCH, "inflight": INFLIGHT}
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = pb_grpc.QueueServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=10)
        queues = []

        q = f"{tag}-seq"
        queues.append(q)
        req = pb.PushRequest(queue=q, data=PAYLOAD)
        t0 = time.perf_counter()
        for _ in range(n):
            stub.Push(req, metadata=metadata, timeout=30)
        dt = time.perf_counter() - t0
        out["push_seq_per_s"], out["push_seq_s"] = _rate(n, dt), round(dt, 3)

        q = f"{tag}-inflight"
        queues.append(q)
        req = pb.PushRequest(queue=q, data=PAYLOAD)
        window: deque[Any] = deque()
        t0 = time.perf_counter()
        for _ in range(n):
            if len(window) >= INFLIGHT:
                window.popleft().result()
            window.append(stub.Push.future(req, metadata=metadata, timeout=30))
        for f in window:
            f.result()
        dt = time.perf_counter() - t0
        out["push_inflight_per_s"], out["push_inflight_s"] = _rate(n, dt), round(dt, 3)

        q = f"{tag}-batch"
        queues.append(q)
        batches = [
            pb.PushBatchRequest(queue=q, jobs=[pb.JobInput(data=PAYLOAD)] * min(BATCH, n - i))
            for i in range(0, n, BATCH)
        ]
        t0 = time.perf_counter()
        for b in batches:
            stub.PushBatch(b, metadata=metadata, timeout=60)
        dt = time.perf_counter() - t0
        out["push_batch_per_s"], out["push_batch_s"] = _rate(n, dt), round(dt, 3)

        drained = 0
        t0 = time.perf_counter()
        for q in queues:
            while True:
                jobs = stub.PullBatch(
                    pb.PullBatchRequest(queue=q, count=BATCH, timeout_ms=0),
                    metadata=metadata,
                    timeout=60,
                ).jobs
                if not jobs:
                    break
                stub.AckBatch(
                    pb.AckBatchRequest(ids=[j.id for j in jobs]), metadata=metadata, timeout=60
                )
                drained += len(jobs)
        dt = time.perf_counter() - t0
        out["drain_pull_ack_batch_per_s"], out["drained"] = _rate(drained, dt), drained
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6791)
    ap.add_argument("-n", type=int, default=10_000, help="jobs per measurement")
    ap.add_argument("--token", default=os.environ.get("MQ_TOKEN"), help="AUTH_TOKENS token")
    args = ap.parse_args()
    print(json.dumps(run(args.host, args.port, args.n, args.token), indent=2))


if __name__ == "__main__":
    main()
