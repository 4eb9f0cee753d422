"""The cluster starts, serves both transports, and spreads queues over both workers."""

from __future__ import annotations

from tests.harness import Cluster


def test_push_pull_ack_over_tcp_and_unix(cluster: Cluster) -> None:
    with cluster.client() as c, cluster.unix_client() as u:
        for i in range(64):
            q = f"smoke-{i}"
            jid = c.ok("PUSH", queue=q, data={"i": i})["id"]
            job = u.ok("PULL", queue=q)["job"]
            assert job["id"] == jid and job["data"] == {"i": i} and job["queue"] == q
            assert c.ok("GETSTATE", id=jid)["state"] == "active"
            u.ok("ACK", id=jid, result={"done": i})
            assert c.ok("GETRESULT", id=jid)["result"] == {"done": i}
        owners = {q["name"] for q in c.ok("LISTQUEUES")["queues"]}
        assert {f"smoke-{i}" for i in range(64)} <= owners


def test_restarted_worker_never_reuses_ids() -> None:
    """Memory mode: a worker killed with -9 comes back with ids past every id it handed out."""
    import os
    import re
    import signal
    import zlib

    with Cluster(workers=2) as cl, cl.client() as c:
        q = next(f"reuse-{i}" for i in range(100) if zlib.crc32(f"reuse-{i}".encode()) % 32 % 2)
        before = [c.ok("PUSH", queue=q, data=i)["id"] for i in range(5)]
        old = cl.worker_pids[1]
        os.kill(old, signal.SIGKILL)
        cl.wait_for(re.compile(rf"worker 1 ready \(pid (?!{old}\b)\d+"), 10)
        with cl.client() as c2:
            after = c2.ok("PUSH", queue=q, data="new")["id"]
            assert after > max(before)
            assert c2.ok("GETSTATE", id=before[0])["state"] == "unknown"
