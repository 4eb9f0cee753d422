"""A worker as a user's script would run it, for the SIGTERM test (test_worker_sigterm.py).

usage: python tests/client/worker_script.py PORT QUEUE async|sync CONCURRENCY GRACE

Each job's data is `{"sleep": seconds}`. The handler prints `START <id>` when it begins (the
test waits for those lines to know the worker holds jobs), sleeps, and returns `{"id": <id>}`.
The worker runs with `run_sync()` and its default signal handling; when it returns the script
prints `STOPPED <stats>` and exits 0 without waiting for abandoned handler threads.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from magicqueue_client import ConnectionSettings, Job, Worker


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    port, queue, mode, concurrency, grace = sys.argv[1:6]

    async def async_handler(job: Job) -> dict[str, int]:
        say(f"START {job.id}")
        await anyio.sleep(job.data["sleep"])
        return {"id": job.id}

    def sync_handler(job: Job) -> dict[str, int]:
        say(f"START {job.id}")
        time.sleep(job.data["sleep"])
        return {"id": job.id}

    worker = Worker(
        ConnectionSettings(port=int(port)),
        queue,
        async_handler if mode == "async" else sync_handler,
        concurrency=int(concurrency),
        grace=float(grace),
        poll_timeout=0.2,
    )
    worker.run_sync()
    say(f"STOPPED {worker.stats}")
    # Sync handlers past the grace period still sleep in their threads; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
