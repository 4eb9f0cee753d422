"""A client that does not read its replies: the server stops reading it instead of buffering
without bound, and answers everything once the client reads again."""

from __future__ import annotations

import threading

from tests.harness import Cluster


def test_unread_replies_pause_the_connection_then_all_arrive(cluster: Cluster) -> None:
    blob = "x" * 1200
    with cluster.client() as c:
        jid = c.ok("PUSH", queue="backpressure", data=blob)["id"]
        n = 20_000  # ~24 MB of replies: far past the 8 MiB high-water mark and the kernel buffers
        request = b'{"cmd":"GETJOB","id":%d}\n' % jid
        sent = threading.Event()

        def send() -> None:
            c.send_raw(request * n)  # blocks while the server is not reading us
            sent.set()

        t = threading.Thread(target=send, daemon=True)
        t.start()
        c.sock.settimeout(30)
        for i in range(n):
            reply = c.recv()
            assert reply["ok"] is True and reply["job"]["data"] == blob, (i, reply)
        t.join(30)
        assert sent.is_set()
        # the connection is still healthy afterwards
        assert c.ok("GETSTATE", id=jid)["state"] == "waiting"
    with cluster.client() as other:  # and so is everyone else
        assert other.ok("STATS")["queued"] >= 1
