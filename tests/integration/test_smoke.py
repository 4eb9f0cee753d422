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
