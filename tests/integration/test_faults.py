"""Faults: a worker killed with SIGKILL, the supervisor stopped with SIGTERM, a second cluster on
the same port. Each test starts its own cluster (the shared one must not be disturbed) and stops
it by its own pid.

Waiting is by probing the cluster's output (`wait_for` a line) or the process (`wait` with a
bound), never by sleeping. The bounds are generous: the VM is shared and noisy.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.harness import ROOT, Client, Cluster
from tests.integration.conftest import Names

# The brief: back within 1 s of the kill; the rest is slack for a loaded 2-core VM.
RESTART_BOUND_S = 1.0 + 4.0


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    c = Cluster(workers=2).start()
    try:
        yield c
    finally:
        if c.proc is not None and c.proc.poll() is None:
            assert c.stop() == 0, c.log()


def roundtrip(c: Client, queue: str, data: object) -> None:
    jid = c.ok("PUSH", queue=queue, data=data)["id"]
    job = c.ok("PULL", queue=queue, timeout=5000)["job"]
    assert job is not None and (job["id"], job["data"]) == (jid, data)
    c.ok("ACK", id=jid)
    assert c.ok("GETSTATE", id=jid)["state"] == "completed"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("victim", [0, 1])
def test_kill_9_of_a_worker(own_cluster: Cluster, names: Names, victim: int) -> None:
    cluster = own_cluster
    survivor = 1 - victim
    q_live, q_dead = names.queue("live", survivor), names.queue("dead", victim)
    q_kept, q_held = names.queue("kept", survivor), names.queue("held", survivor)
    q_down = names.queue("down", victim)
    old_pid = cluster.worker_pids[victim]
    with cluster.client() as live, cluster.client() as doomed:
        roundtrip(live, q_live, "before")  # `live` now lives on the survivor
        pending = live.ok("PUSH", queue=q_kept, data="kept")["id"]
        # `doomed` lives on the victim and holds a job of the survivor's (pulled over a link).
        doomed.ok("DLQ", queue=q_dead)
        held = live.ok("PUSH", queue=q_held, data="held")["id"]
        assert doomed.ok("PULL", queue=q_held, timeout=5000)["job"]["id"] == held

        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # Meanwhile the survivor keeps answering for its own queues on a connection it holds.
        roundtrip(live, q_live, "during")
        assert live.ok("GETSTATE", id=pending)["state"] == "waiting"
        # The victim's clients are gone, so the job `doomed` held goes back to the queue.
        deadline = time.monotonic() + 10
        while (got := live.ok("GETJOB", id=held))["state"] != "waiting":
            assert time.monotonic() < deadline, got
            time.sleep(0.005)
        assert (got["job"]["attempts"], got["job"]["progress_msg"]) == (
            1,
            "Worker connection lost",
        )
        # A request for the victim's queue meanwhile waits for it or fails cleanly: never hangs.
        down = live.call("PUSH", queue=q_down, data="while down", reqId="down")
        assert "id" in down or down["error"] == f"Worker {victim} unavailable, retry", down

        died = cluster.wait_for(re.compile(rf"worker {victim} \(pid {old_pid}\) died"), 10)
        assert "signal 9" in died.string and "restarting" in died.string
        # New connections too. Only once the victim is reaped: a connection the kernel queued
        # on the dying worker's SO_REUSEPORT listener is reset with it (no migration).
        with cluster.client() as fresh:
            roundtrip(fresh, q_live, "during, new connection")
            assert fresh.ok("GETSTATE", id=pending)["state"] == "waiting"

        back = cluster.wait_for(re.compile(rf"worker {victim} ready \(pid (\d+)"), RESTART_BOUND_S)
        new_pid = int(back.group(1))
        assert new_pid != old_pid and cluster.worker_pids[victim] == new_pid
        took = time.monotonic() - killed_at
        assert took < RESTART_BOUND_S, f"worker {victim} took {took:.1f} s to come back"
        os.kill(new_pid, 0)

        # After the restart its queues work again, from the old connection and from new ones.
        roundtrip(live, q_dead, "after, forwarded")
        for _ in range(4):  # new connections land on either worker
            with cluster.client() as c:
                roundtrip(c, q_dead, "after")
                roundtrip(c, q_live, "after")
                assert c.ok("GETSTATE", id=pending)["state"] == "waiting"
        assert live.ok("PULL", queue=q_held, timeout=5000)["job"]["id"] == held
        live.ok("ACK", id=held)
        if "id" in down:  # it waited for the restart and was pushed to the new process
            assert live.ok("PULL", queue=q_down, timeout=5000)["job"]["id"] == down["id"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("parked_on", [0, 1])
def test_sigterm_stops_the_cluster_with_a_parked_pull(
    own_cluster: Cluster, names: Names, parked_on: int
) -> None:
    cluster = own_cluster
    q, other = names.queue(worker=parked_on), names.queue(worker=1 - parked_on)
    c = cluster.client(timeout=15)
    c.ok("PUSH", queue=other, data="pending")  # the connection lives on the other worker
    c.send({"cmd": "PULL", "queue": q})  # parked through the link, no timeout
    assert c.call("DLQ", queue=q, reqId=1) == {"ok": True, "jobs": [], "reqId": 1}
    idle = cluster.client(timeout=15)  # an open connection that never sent a thing
    assert cluster.proc is not None
    os.kill(cluster.pid, signal.SIGTERM)
    try:
        code = cluster.proc.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the supervisor did not exit within 10 s:\n{cluster.log()}")
    assert code == 0, cluster.log()
    # The parked PULL got its empty answer, or its connection was closed: it never hangs.
    try:
        line = c.recv_line()
    except (ConnectionError, OSError):
        pass
    else:
        assert line == b'{"ok":true,"job":null}'
    assert idle.closed_by_server(5.0)
    cluster.drain_remaining()
    assert any("MagicQueue stopped" in line for line in cluster.output), cluster.log()
    for pid in cluster.worker_pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    c.close()
    idle.close()


@pytest.mark.timeout(60)
def test_second_cluster_on_the_same_port_fails_at_once(own_cluster: Cluster, names: Names) -> None:
    first = own_cluster
    q = names.queue()
    env = dict(os.environ, WORKERS="2", PORT=str(first.port), BIND="127.0.0.1")
    env.update(HTTP_PORT="0", GRPC_PORT="0", PYTHONUNBUFFERED="1")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "cluster"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=15,
        )
    except subprocess.TimeoutExpired as e:  # it started serving: the worst outcome
        pytest.fail(f"a second cluster on port {first.port} kept running: {e.output!r}")
    out = second.stdout.decode()
    assert second.returncode != 0, out
    assert f"port {first.port}" in out and "already served by another MagicQueue" in out, out
    assert "MagicQueue ready" not in out
    # The first one never noticed.
    for _ in range(4):
        with first.client() as c:
            roundtrip(c, q, "still here")
    first.drain_output()
    assert not any("died" in line for line in first.output), first.log()
