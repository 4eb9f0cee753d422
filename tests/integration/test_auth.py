"""Authentication over TCP and the Unix socket, with `AUTH_TOKENS=secret-token,other`.

Until a connection sends `AUTH` with a configured token, every other command is answered
`Authentication required` (with its `reqId`) and has no effect; a wrong token answers
`Invalid token`. Authentication belongs to the connection, so it must survive the connection
being handed to another worker (the first request for a queue the other worker owns moves the
socket itself to that worker, together with its "authenticated" flag).

Which worker serves a TCP connection is read from /proc: the worker whose file descriptors
include the server end of our connection (found by its ports in /proc/net/tcp). That lets the
handoff test pick the queue so that a handoff surely happens, and check that it did.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from tests.harness import Client, Cluster
from tests.integration.conftest import Names, owner_of_queue

Connect = Callable[..., Client]
TOKENS = ("secret-token", "other")
REQUIRED = {"ok": False, "error": "Authentication required"}


@pytest.fixture(scope="module")
def cluster(unix_path: str) -> Iterator[Cluster]:
    """This module's own cluster: the shared one runs without tokens."""
    c = Cluster(workers=2, UNIX_SOCKET=unix_path, AUTH_TOKENS=",".join(TOKENS)).start()
    try:
        yield c
    finally:
        assert c.stop() == 0, c.log()


def every_command(q: str) -> list[dict[str, Any]]:
    """One valid request for each command of PROTOCOL.md but AUTH."""
    return [
        {"cmd": "PUSH", "queue": q, "data": 1},
        {"cmd": "PUSHB", "queue": q, "jobs": [{"data": 1}]},
        {"cmd": "PULL", "queue": q},  # would block forever if it were served
        {"cmd": "PULLB", "queue": q, "count": 2},
        {"cmd": "ACK", "id": 33, "result": 1},
        {"cmd": "ACKB", "ids": [33, 34]},
        {"cmd": "FAIL", "id": 33, "error": "x"},
        {"cmd": "GETJOB", "id": 33},
        {"cmd": "GETSTATE", "id": 33},
        {"cmd": "GETRESULT", "id": 33},
        {"cmd": "CANCEL", "id": 33},
        {"cmd": "PROGRESS", "id": 33, "progress": 5},
        {"cmd": "GETPROGRESS", "id": 33},
        {"cmd": "DLQ", "queue": q},
        {"cmd": "RETRYDLQ", "queue": q},
        {"cmd": "PAUSE", "queue": q},
        {"cmd": "RESUME", "queue": q},
        {"cmd": "RATELIMIT", "queue": q, "limit": 5},
        {"cmd": "RATELIMITCLEAR", "queue": q},
        {"cmd": "SETCONCURRENCY", "queue": q, "limit": 5},
        {"cmd": "CLEARCONCURRENCY", "queue": q},
        {"cmd": "LISTQUEUES"},
        {"cmd": "CRON", "name": q, "queue": q, "data": 1, "schedule": "*/1"},
        {"cmd": "CRONDELETE", "name": q},
        {"cmd": "CRONLIST"},
        {"cmd": "STATS"},
        {"cmd": "METRICS"},
    ]


def test_every_command_needs_auth(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    requests = every_command(q)
    for req in requests:
        assert c.call(**req) == REQUIRED, req["cmd"]
    # In one pipelined write too, each with its reqId.
    c.send_raw(b"".join(orjson.dumps({**r, "reqId": i}) + b"\n" for i, r in enumerate(requests)))
    for i in range(len(requests)):
        assert c.recv() == {**REQUIRED, "reqId": i}
    assert c.call("AUTH", token="secret-token") == {"ok": True}
    # Nothing of the above took effect.
    assert q not in {x["name"] for x in c.ok("LISTQUEUES")["queues"]}
    assert q not in {x["name"] for x in c.ok("CRONLIST")["crons"]}
    assert c.ok("PULL", queue=q, timeout=0)["job"] is None
    # Now every command is served.
    jid = c.ok("PUSH", queue=q, data="now")["id"]
    assert c.ok("PULL", queue=q, timeout=5000)["job"]["id"] == jid
    c.ok("ACK", id=jid, result="done")
    assert c.ok("GETRESULT", id=jid)["result"] == "done"
    assert "queued" in c.ok("STATS")


def test_wrong_token(connect: Connect, names: Names) -> None:
    c = connect()
    q = names.queue()
    for wrong in (
        "wrong-token",
        "",
        "secret",
        "secret-token ",
        "Secret-Token",
        "secret-token,other",
    ):
        assert c.call("AUTH", token=wrong) == {"ok": False, "error": "Invalid token"}, wrong
        assert c.call("PUSH", queue=q, data=1) == REQUIRED
    assert c.call("AUTH", token="nope", reqId="a") == {
        "ok": False,
        "error": "Invalid token",
        "reqId": "a",
    }
    assert c.call("AUTH", token="other", reqId="b") == {"ok": True, "reqId": "b"}
    assert c.ok("PUSH", queue=q, data=1)["id"] > 0


@pytest.mark.parametrize("token", TOKENS)
def test_each_token_works(connect: Connect, names: Names, token: str) -> None:
    c = connect()
    q = names.queue()
    c.ok("AUTH", token=token)
    jid = c.ok("PUSH", queue=q, data=token)["id"]
    assert c.ok("PULL", queue=q, timeout=5000)["job"]["data"] == token
    c.ok("ACK", id=jid)
    # Authentication belongs to a connection, not to the client or its address.
    with connect() as other:
        assert other.call("GETSTATE", id=jid) == REQUIRED


def test_auth_and_requests_in_one_write(connect: Connect, names: Names) -> None:
    c = connect()
    q0, q1 = names.queue(worker=0), names.queue(worker=1)
    lines = [
        {"cmd": "PUSH", "queue": q0, "data": "early"},
        {"cmd": "AUTH", "token": "other"},
        {"cmd": "PUSH", "queue": q0, "data": 0},
        {"cmd": "PUSH", "queue": q1, "data": 1},
    ]
    c.send_raw(b"".join(orjson.dumps(r) + b"\n" for r in lines))
    assert c.recv() == REQUIRED
    assert c.recv() == {"ok": True}
    a, b = c.recv()["id"], c.recv()["id"]
    assert c.ok("PULL", queue=q0, timeout=5000)["job"]["id"] == a
    assert c.ok("PULL", queue=q1, timeout=5000)["job"]["id"] == b
    assert c.ok("ACKB", ids=[a, b])["ids"] == [2]


# ---------------------------------------------------------------- handoff keeps auth


def _server_inodes(port: int, client_port: int) -> set[str]:
    with open("/proc/net/tcp") as f:
        rows = f.read().splitlines()[1:]
    out = set()
    for row in rows:
        cols = row.split()
        local, remote, inode = cols[1], cols[2], cols[9]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
            out.add(inode)
    return out


def serving_workers(cluster: Cluster, c: Client) -> set[int]:
    """The workers holding a file descriptor of the server end of `c`'s TCP connection."""
    inodes = _server_inodes(cluster.port, c.sock.getsockname()[1])
    holders = set()
    for index, pid in cluster.worker_pids.items():
        fd_dir = f"/proc/{pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:[") and target[8:-1] in inodes:
                holders.add(index)
    return holders


def serving_worker(cluster: Cluster, c: Client, timeout: float = 10.0) -> int:
    """The one worker serving `c` (probe until exactly one holds it: a handoff settles)."""
    deadline = time.monotonic() + timeout
    while True:
        holders = serving_workers(cluster, c)
        if len(holders) == 1:
            return holders.pop()
        assert time.monotonic() < deadline, f"connection held by {holders}"
        time.sleep(0.002)


def test_auth_survives_the_handoff_to_the_other_worker(cluster: Cluster, names: Names) -> None:
    for _ in range(4):
        with cluster.client() as c:
            assert c.call("AUTH", token="secret-token") == {"ok": True}
            acceptor = serving_worker(cluster, c)  # AUTH is answered where it landed
            q_other, q_here = names.queue(worker=1 - acceptor), names.queue(worker=acceptor)
            # The first request for a queue of the other worker moves the connection there.
            jid = c.ok("PUSH", queue=q_other, data="handed off")["id"]
            assert serving_worker(cluster, c) == 1 - acceptor
            # Still authenticated: on the new worker, and forwarded back to the first one.
            assert c.ok("PULL", queue=q_other, timeout=5000)["job"]["id"] == jid
            c.ok("ACK", id=jid)
            j2 = c.ok("PUSH", queue=q_here, data="forwarded")["id"]
            assert c.ok("PULL", queue=q_here, timeout=5000)["job"]["id"] == j2
            c.ok("ACK", id=j2)
            assert c.ok("GETSTATE", id=jid)["state"] == "completed"
            assert serving_worker(cluster, c) == 1 - acceptor


def test_unauthenticated_connection_handed_off_stays_unauthenticated(
    cluster: Cluster, names: Names
) -> None:
    for _ in range(2):
        with cluster.client() as c:
            c.ok("AUTH", token="other")  # authenticate a sibling connection first
            with cluster.client() as bare:
                # `bare` never authenticated: a wrong AUTH does not route it anywhere.
                assert bare.call("AUTH", token="bad") == {"ok": False, "error": "Invalid token"}
                acceptor = serving_worker(cluster, bare)
                q_other = names.queue(worker=1 - acceptor)
                assert bare.call("PUSH", queue=q_other, data=1) == REQUIRED
                assert bare.call("LISTQUEUES") == REQUIRED
            assert q_other not in {x["name"] for x in c.ok("LISTQUEUES")["queues"]}


def test_auth_over_unix_socket_across_both_workers(cluster: Cluster, names: Names) -> None:
    """Unix connections land on either worker; whichever worker owns the queue, auth holds."""
    for k in range(6):
        with cluster.unix_client() as c:
            q_first, q_second = names.queue(worker=k % 2), names.queue(worker=1 - k % 2)
            assert c.call("PUSH", queue=q_first, data=1) == REQUIRED
            c.ok("AUTH", token=TOKENS[k % 2])
            for q in (q_first, q_second):
                jid = c.ok("PUSH", queue=q, data=q)["id"]
                assert owner_of_queue(q) == jid % 32 % 2
                job = c.ok("PULL", queue=q, timeout=5000)["job"]
                assert (job["id"], job["data"]) == (jid, q)
                c.ok("ACK", id=jid)


def test_scatter_commands_first_do_not_prevent_the_handoff(cluster: Cluster, names: Names) -> None:
    """STATS/LISTQUEUES leave nothing behind, so the first queue request still moves the
    connection to that queue's owner."""
    for _ in range(4):
        with cluster.client() as c:
            c.ok("AUTH", token="secret-token")
            c.ok("STATS")
            c.ok("LISTQUEUES")
            acceptor = serving_worker(cluster, c)
            q_other = names.queue(worker=1 - acceptor)
            jid = c.ok("PUSH", queue=q_other, data="after stats")["id"]
            assert serving_worker(cluster, c) == 1 - acceptor
            assert c.ok("PULL", queue=q_other, timeout=5000)["job"]["id"] == jid
            c.ok("ACK", id=jid)
