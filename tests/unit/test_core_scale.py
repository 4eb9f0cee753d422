"""Paths that only large backlogs reach: lazy deletion and the compaction of queue levels and of
the shard-wide deadline heaps. Order and counters must come out exactly as without them."""

from __future__ import annotations

from shard.core import Shard

from .helpers import spec


def test_cancelling_most_waiting_jobs_compacts_and_keeps_order() -> None:
    s = Shard(0)
    ids = s.push_batch("q", [spec(i, priority=i % 3) for i in range(300)], 0)
    keep = set(ids[::7])
    for jid in ids:
        if jid not in keep:
            s.cancel(jid, 1)
    q = s.queues["q"]
    assert q.waiting == len(keep)
    assert q.stale <= max(64, q.waiting)  # compaction ran
    got = [j.id for j in s.pull("q", 1000, 2)]
    expected = sorted(keep, key=lambda jid: (-(ids.index(jid) % 3), jid))
    assert got == expected
    assert q.waiting == 0
    assert q.active == len(keep)


def test_expired_waiting_jobs_are_skipped_after_compaction() -> None:
    s = Shard(0)
    s.push_batch("q", [spec(i, ttl=10) for i in range(200)], 0)
    survivors = s.push_batch("q", [spec(i) for i in range(5)], 0)
    s.tick(11)
    assert s.total_expired == 200
    assert s.queues["q"].waiting == 5
    assert [j.id for j in s.pull("q", 100, 12)] == survivors


def test_delayed_heap_compaction_keeps_the_live_entries() -> None:
    s = Shard(0)
    ids = s.push_batch("q", [spec(i, delay=1000 + i) for i in range(4000)], 0)
    for jid in ids[:3990]:
        s.cancel(jid, 1)
    assert len(s.delayed) == 4000  # lazy deletion: dead entries stay until compaction
    # crossing the threshold compacts the dead entries away
    late = s.push_batch("q", [spec(i, delay=50) for i in range(200)], 2)
    assert len(s.delayed) == 210
    assert s.next_deadline() == 52
    s.tick(10_000)
    assert s.queues["q"].delayed == 0
    assert [j.id for j in s.pull("q", 1000, 10_000)] == late + ids[3990:]


def test_timeout_heap_compaction() -> None:
    s = Shard(0)
    s.push_batch("q", [spec(i, timeout=100) for i in range(4200)], 0)
    jobs = s.pull("q", 4000, 0)
    assert s.ack_batch([j.id for j in jobs], 1) == 4000
    assert len(s.timeouts) == 4000
    rest = s.pull("q", 500, 2)
    assert len(rest) == 200
    assert len(s.timeouts) == 200  # the acked jobs' entries were dropped
    s.tick(102)
    assert s.queues["q"].active == 200
    s.tick(103)
    assert s.queues["q"].active == 0
    assert s.queues["q"].waiting == 200
    assert s.total_retried == 200


def test_ttl_heap_compaction() -> None:
    s = Shard(0)
    ids = s.push_batch("q", [spec(i, ttl=1000) for i in range(4000)], 0)
    jobs = s.pull("q", 4000, 1)
    assert s.ack_batch([j.id for j in jobs], 2) == 4000
    more = s.push_batch("q", [spec(i, ttl=10) for i in range(300)], 3)
    assert len(s.ttls) == 300  # the acked jobs' entries were dropped
    assert s.next_deadline() == 14
    s.tick(13)
    assert s.total_expired == 0
    s.tick(14)
    assert s.total_expired == 300
    assert [s.get_state(j) for j in (ids[0], more[0], more[-1])] == [
        "completed",
        "unknown",
        "unknown",
    ]
    assert s.queues["q"].waiting == 0


def test_ttl_compaction_keeps_the_entry_of_an_active_job() -> None:
    # An active job's TTL entry must survive a compaction: if it fails before its TTL and is
    # retried, the entry is what expires it on time.
    s = Shard(0)
    [x] = s.push_batch("x", [spec("x", ttl=1000)], 0)
    assert [j.id for j in s.pull("x", 1, 1)] == [x]
    s.push_batch("q", [spec(i, ttl=5000) for i in range(4200)], 2)  # compacts on the way
    assert len(s.ttls) == 4201
    s.fail(x, "transient", 3)
    assert s.get_state(x) == "waiting"
    s.tick(1000)
    assert s.get_state(x) == "waiting"
    s.tick(1001)
    assert s.get_state(x) == "unknown"
    assert s.total_expired == 1
