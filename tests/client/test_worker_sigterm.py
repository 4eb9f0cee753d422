"""SIGTERM to a worker process while it holds jobs: nothing is lost.

The worker runs as a real script in a subprocess (worker_script.py). Half the jobs are short
(they finish within the grace period and must end `completed` with their result), half are long
(the grace period runs out and they must be failed back to `waiting`). No job may end active,
failed or unknown.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from magicqueue_client import Client, JobSpec
from magicqueue_client.worker import SHUTDOWN_ERROR
from tests.client.helpers import qname
from tests.harness import ROOT, Cluster

SCRIPT = Path(__file__).with_name("worker_script.py")


def _read_until(proc: subprocess.Popen[bytes], want_starts: int, timeout: float) -> list[str]:
    """Lines the script printed, until `want_starts` START lines have appeared."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    buf = b""
    deadline = time.monotonic() + timeout
    while sum(1 for ln in lines if ln.startswith("START ")) < want_starts:
        left = deadline - time.monotonic()
        assert left > 0, f"the worker never started {want_starts} jobs: {lines}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"the worker exited early ({proc.poll()}): {lines}"
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines.extend(x.decode() for x in done)
    return lines


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_sigterm_loses_nothing(cluster: Cluster, mode: str) -> None:
    q = qname("term")
    concurrency = 8
    with Client(port=cluster.port) as c:
        specs = [JobSpec({"sleep": 60.0 if i % 2 else 0.3}, backoff=0) for i in range(40)]
        ids = c.push_batch(q, specs)
        long_ids = {jid for i, jid in enumerate(ids) if i % 2}
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(cluster.port), q, mode, str(concurrency), "1.5"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        try:
            lines = _read_until(proc, concurrency, 30)
            os.kill(proc.pid, signal.SIGTERM)  # while it holds jobs
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0
        lines += out.decode().splitlines()
        assert any(ln.startswith("STOPPED ") for ln in lines), lines
        started = {int(ln.split()[1]) for ln in lines if ln.startswith("START ")}

        states = {jid: c.get_job(jid) for jid in ids}
        for jid, (job, state) in states.items():
            assert state in ("completed", "waiting"), (jid, state, job)
            if state == "completed":
                assert jid not in long_ids and jid in started
                assert c.get_result(jid) == {"id": jid}
            else:
                assert job is not None
                if jid in started:
                    # Pulled, then given back when the grace period ran out.
                    assert jid in long_ids
                    assert job.attempts == 1 and job.progress_msg == SHUTDOWN_ERROR
                else:
                    assert job.attempts == 0
        given_back = [j for j, (job, _) in states.items() if job and job.attempts == 1]
        assert given_back and len(given_back) <= concurrency
        assert any(state == "completed" for _, state in states.values())
        info = {x.name: x for x in c.list_queues()}[q]
        assert info.processing == 0 and info.dlq == 0
