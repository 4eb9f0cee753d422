"""Random sequences of operations over all 32 shards, checked against a model after every step.

The model below restates PROTOCOL.md's job lifecycle in the simplest way it can (a dict of jobs
and linear scans). After every rule the runtime's duties are played out (settle, then tick at
the current time), and the invariants compare the core with the model: each job in exactly one
state, per-queue counters, unique keys, attempts, totals, events, and wake-ups.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from proto.commands import JobSpec
from proto.errors import (
    DuplicateJob,
    JobFinished,
    JobNotActive,
    JobNotFound,
    QueueError,
    UnknownDependency,
)
from shard.core import LOST_WORKER, TIMED_OUT, merge_metrics, merge_stats
from shard.job import STATE_NAMES, retry_delay, should_go_to_dlq
from shard.routing import shard_of_id
from shard.shardset import ShardSet

from .helpers import queues_on_distinct_shards, queues_on_same_shard

# Two queues in different shards, and a third sharing a shard with the first.
Q_A, Q_B = queues_on_distinct_shards(2, prefix="sm")
Q_C = queues_on_same_shard(2, prefix="sm")[1]
QUEUES = [Q_A, Q_B, Q_C]
assert len({Q_A, Q_B, Q_C}) == 3
OWNERS = [None, "w1", "w2"]
NEVER_ISSUED = 31  # seq 0 of shard 31: ids start at seq 1
LIVE = ("waiting", "delayed", "active", "waiting-children")
DEP_FAILED = re.compile(r"Dependency (\d+) failed")


@dataclass
class MJob:
    id: int
    queue: str
    priority: int
    key: str | None
    max_attempts: int
    backoff: int
    ttl: int
    timeout: int
    created: int
    run_at: int
    deps: tuple[int, ...]
    state: str = "waiting"
    started: int = 0
    attempts: int = 0
    owner: Any = None
    pending: set[int] = field(default_factory=set)
    msg: str | None = None
    # msg is "Dependency <id> failed" for one of several parents that failed in the same step:
    # which one the core names depends on delivery order, so any failed parent is accepted
    msg_names_a_parent: bool = False
    result: bytes | None = None


job_options = st.fixed_dictionaries(
    {
        "priority": st.sampled_from([0, 0, 1, 5]),
        "delay": st.sampled_from([0, 0, 0, 20, 100]),
        "ttl": st.sampled_from([0, 0, 50, 300]),
        "timeout": st.sampled_from([0, 0, 40, 150]),
        "max_attempts": st.sampled_from([0, 1, 1, 2, 3]),
        "backoff": st.sampled_from([0, 0, 10, 100]),
        "unique_key": st.sampled_from([None, None, None, None, "k1", "k2"]),
    }
)


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ss = ShardSet()
        self.now = 0
        self.jobs: dict[int, MJob] = {}
        self.totals: Counter[str] = Counter()  # what the model expects to have happened
        self.seen_events: Counter[str] = Counter()

    # ------------------------------------------------------------ model helpers

    def ids(self) -> list[int]:
        return [*sorted(self.jobs), NEVER_ISSUED]

    def pick(self, data: st.DataObject, *states: str) -> int:
        """An id: mostly one in the given states (when there is one), else any id at all."""
        preferred = sorted(j.id for j in self.jobs.values() if j.state in states)
        if preferred and data.draw(st.integers(0, 3), label="prefer") < 3:
            return data.draw(st.sampled_from(preferred), label="id")
        return data.draw(st.sampled_from(self.ids()), label="id")

    def pick_deps(self, data: st.DataObject) -> list[int]:
        """Mostly none; else parents that exist (live, completed or failed); rarely unknown ones."""
        if data.draw(st.integers(0, 9), label="has deps") < 6:
            return []
        known = sorted(j.id for j in self.jobs.values() if j.state != "unknown")
        if data.draw(st.integers(0, 9), label="known deps") < 8:
            if not known:
                return []
            return data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=2, unique=True))
        return [data.draw(st.sampled_from(self.ids()), label="any dep")]  # maybe unknown

    def key_holder(self, queue: str, key: str) -> MJob | None:
        for j in self.jobs.values():
            if j.queue == queue and j.key == key and j.state in LIVE:
                return j
        return None

    def dep_state(self, jid: int) -> str:
        j = self.jobs.get(jid)
        return "unknown" if j is None else j.state

    def enqueue(self, j: MJob) -> None:
        j.state = "delayed" if j.run_at > self.now else "waiting"

    def to_dlq(self, j: MJob, reason: str | None, outcomes: list[tuple[int, bool]]) -> None:
        j.state = "failed"
        j.msg = reason
        j.msg_names_a_parent = False
        j.owner = None
        j.pending = set()
        self.totals["failed"] += 1
        outcomes.append((j.id, False))

    def drop(self, j: MJob, kind: str, outcomes: list[tuple[int, bool]]) -> None:
        j.state = "unknown"
        j.owner = None
        self.totals[kind] += 1
        outcomes.append((j.id, False))

    def fail_active(self, j: MJob, error: str | None, outcomes: list[tuple[int, bool]]) -> None:
        j.attempts += 1
        j.msg = error
        j.msg_names_a_parent = False
        j.owner = None
        if should_go_to_dlq(j.attempts, j.max_attempts):
            self.to_dlq(j, error, outcomes)
        elif j.ttl and self.now > j.created + j.ttl:
            self.drop(j, "expired", outcomes)
        else:
            j.started = 0
            j.run_at = self.now + retry_delay(j.backoff, j.attempts)
            self.totals["retried"] += 1
            self.enqueue(j)

    def settle(self, outcomes: list[tuple[int, bool]]) -> None:
        """Deliver parent outcomes to waiting children, cascading failures."""
        while outcomes:
            parent, ok = outcomes.pop(0)
            for child in self.jobs.values():
                if child.state != "waiting-children" or parent not in child.pending:
                    continue
                if ok:
                    child.pending.discard(parent)
                    if not child.pending:
                        event("dependant released")
                        self.enqueue(child)
                else:
                    event("dependency cascade")
                    self.to_dlq(child, f"Dependency {parent} failed", outcomes)
                    child.msg_names_a_parent = True

    def model_tick(self) -> None:
        now = self.now
        outcomes: list[tuple[int, bool]] = []
        for j in self.jobs.values():
            if j.state == "delayed" and j.run_at <= now:
                j.state = "waiting"
        for j in list(self.jobs.values()):
            if j.state == "active" and j.timeout and now > j.started + j.timeout:
                event("timeout")
                self.fail_active(j, TIMED_OUT, outcomes)
        for j in list(self.jobs.values()):
            expirable = j.state in ("waiting", "delayed", "waiting-children")
            if expirable and j.ttl and now > j.created + j.ttl:
                event(f"expired while {j.state}")
                self.drop(j, "expired", outcomes)
        self.settle(outcomes)

    def after(self) -> None:
        """What the runtime does after every call: settle (done by the rule), then run timers."""
        self.ss.settle(self.now)
        self.ss.tick(self.now)
        self.model_tick()
        for s in self.ss:
            for ev in s.events:
                self.seen_events[ev[0]] += 1
            s.events.clear()

    # ------------------------------------------------------------ rules

    @initialize(
        options=st.lists(
            st.tuples(st.sampled_from(QUEUES), st.lists(job_options, min_size=1, max_size=3)),
            min_size=2,
            max_size=5,
        ),
        data=st.data(),
    )
    def populate(
        self, options: list[tuple[str, list[dict[str, Any]]]], data: st.DataObject
    ) -> None:
        """Start with a few batches, so the rules find jobs to work on from the first step."""
        for queue, opts in options:
            self.push_jobs(queue, opts, data)

    @rule(
        queue=st.sampled_from(QUEUES),
        options=st.lists(job_options, min_size=1, max_size=3),
        data=st.data(),
    )
    def push(self, queue: str, options: list[dict[str, Any]], data: st.DataObject) -> None:
        """PUSH (one job) or PUSHB (several), with unique keys and dependencies."""
        self.push_jobs(queue, options, data)

    def push_jobs(self, queue: str, options: list[dict[str, Any]], data: st.DataObject) -> None:
        specs: list[JobSpec] = []
        for i, o in enumerate(options):
            deps = self.pick_deps(data)
            specs.append(JobSpec(orjson.dumps(i), depends_on=tuple(deps), **o))
        # the model's verdict first
        expected_error: QueueError | None = None
        seen: set[str] = set()
        for sp in specs:
            key = sp.unique_key
            if key is not None:
                if self.key_holder(queue, key) is not None or key in seen:
                    expected_error = DuplicateJob(key)
                    break
                seen.add(key)
            unknown = [d for d in sp.depends_on if self.dep_state(d) == "unknown"]
            if unknown:
                expected_error = UnknownDependency(unknown[0])
                break
        try:
            ids = self.ss.push(queue, specs, self.now)
        except QueueError as e:
            assert expected_error is not None, f"unexpected refusal {e.message}"
            assert type(e) is type(expected_error)
            assert e.message == expected_error.message
            event(f"push refused: {type(e).__name__}")
            self.after()
            return
        assert expected_error is None, f"expected {expected_error.message}"
        assert len(ids) == len(specs)
        outcomes: list[tuple[int, bool]] = []
        for jid, sp in zip(ids, specs, strict=True):
            assert jid not in self.jobs
            j = MJob(
                id=jid,
                queue=queue,
                priority=sp.priority,
                key=sp.unique_key,
                max_attempts=sp.max_attempts,
                backoff=sp.backoff,
                ttl=sp.ttl,
                timeout=sp.timeout,
                created=self.now,
                run_at=self.now + sp.delay,
                deps=sp.depends_on,
            )
            self.jobs[jid] = j
            self.totals["pushed"] += 1
            failed = [d for d in sp.depends_on if self.dep_state(d) == "failed"]
            if failed:
                event("push straight to the DLQ")
                j.state = "waiting-children"
                self.to_dlq(j, f"Dependency {failed[0]} failed", outcomes)
                continue
            j.pending = {d for d in sp.depends_on if self.dep_state(d) in LIVE}
            if j.pending:
                j.state = "waiting-children"
            else:
                self.enqueue(j)
        self.settle(outcomes)
        self.after()

    @rule(
        data=st.data(),
        count=st.integers(1, 4),
        owner=st.sampled_from(OWNERS),
        fates=st.lists(
            st.sampled_from(["keep", "keep", "ack", "fail", "fail"]), min_size=4, max_size=4
        ),
    )
    def pull(self, data: st.DataObject, count: int, owner: Any, fates: list[str]) -> None:
        """Pull (mostly from a queue with something to hand out), then maybe ACK or FAIL some
        of the jobs at once, as a worker would."""
        ready = sorted({j.queue for j in self.jobs.values() if j.state == "waiting"})
        if ready and data.draw(st.integers(0, 3), label="prefer") < 3:
            queue = data.draw(st.sampled_from(ready), label="queue")
        else:
            queue = data.draw(st.sampled_from(QUEUES), label="queue")
        shard = self.ss.for_queue(queue)
        assert shard is not None
        got = [j.id for j in shard.pull(queue, count, self.now, owner)]
        expected = sorted(
            (j for j in self.jobs.values() if j.queue == queue and j.state == "waiting"),
            key=lambda j: (-j.priority, j.run_at, j.id),
        )
        assert got == [j.id for j in expected[:count]]
        for jid in got:
            j = self.jobs[jid]
            j.state = "active"
            j.started = self.now
            j.owner = owner
            self.totals["active"] += 1
        for jid, fate in zip(got, fates, strict=False):
            if fate == "ack":
                self.ack_one(jid, b'{"done":true}')
            elif fate == "fail":
                self.fail_one(jid, "worker error")
        self.after()

    def ack_one(self, jid: int, result: bytes | None) -> None:
        shard = self.ss.for_id(jid)
        assert shard is not None
        j = self.jobs.get(jid)
        if j is None or j.state != "active":
            try:
                shard.ack(jid, result, self.now)
            except JobNotFound as e:
                assert e.message == f"Job {jid} not found"
            else:
                raise AssertionError(f"ACK of a {self.dep_state(jid)} job was accepted")
            return
        shard.ack(jid, result, self.now)
        self.ss.settle(self.now)
        self.complete(j, result)

    def complete(self, j: MJob, result: bytes | None) -> None:
        j.state = "completed"
        j.result = result
        j.owner = None
        self.totals["completed"] += 1
        self.settle([(j.id, True)])

    def fail_one(self, jid: int, error: str | None) -> None:
        shard = self.ss.for_id(jid)
        assert shard is not None
        j = self.jobs.get(jid)
        if j is None or j.state != "active":
            try:
                shard.fail(jid, error, self.now)
            except JobNotFound as e:
                assert e.message == f"Job {jid} not found"
            else:
                raise AssertionError(f"FAIL of a {self.dep_state(jid)} job was accepted")
            return
        shard.fail(jid, error, self.now)
        self.ss.settle(self.now)
        outcomes: list[tuple[int, bool]] = []
        self.fail_active(j, error, outcomes)
        self.settle(outcomes)

    @rule(data=st.data(), result=st.sampled_from([None, b'{"r":1}', b"[true]"]))
    def ack(self, data: st.DataObject, result: bytes | None) -> None:
        self.ack_one(self.pick(data, "active"), result)
        self.after()

    @rule(data=st.data())
    def ack_batch(self, data: st.DataObject) -> None:
        ids = [self.pick(data, "active") for _ in range(data.draw(st.integers(0, 4)))]
        n = sum(s.ack_batch(ids, self.now) for s in self.ss)
        expected = 0
        for jid in ids:
            j = self.jobs.get(jid)
            if j is not None and j.state == "active":
                self.complete(j, None)
                expected += 1
        assert n == expected
        self.after()

    @rule(data=st.data(), error=st.sampled_from([None, "boom"]))
    def fail(self, data: st.DataObject, error: str | None) -> None:
        self.fail_one(self.pick(data, "active"), error)
        self.after()

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        jid = self.pick(data, *LIVE)
        shard = self.ss.for_id(jid)
        assert shard is not None
        st_ = self.dep_state(jid)
        if st_ in LIVE:
            shard.cancel(jid, self.now)
            outcomes: list[tuple[int, bool]] = []
            self.drop(self.jobs[jid], "cancelled", outcomes)
            self.settle(outcomes)
        else:
            expected = JobFinished if st_ in ("completed", "failed") else JobNotFound
            try:
                shard.cancel(jid, self.now)
            except QueueError as e:
                assert type(e) is expected
            else:
                raise AssertionError(f"CANCEL of a {st_} job was accepted")
        self.after()

    @rule(data=st.data(), pct=st.sampled_from([0, 50, 100, 150]))
    def progress(self, data: st.DataObject, pct: int) -> None:
        jid = self.pick(data, "active")
        shard = self.ss.for_id(jid)
        assert shard is not None
        st_ = self.dep_state(jid)
        if st_ == "active":
            shard.progress(jid, pct, "msg", self.now)
            self.jobs[jid].msg = "msg"
            self.jobs[jid].msg_names_a_parent = False
            self.totals["progress"] += 1
            assert shard.get_progress(jid) == (min(pct, 100), "msg")
        else:
            expected = JobNotActive if st_ in LIVE or st_ == "failed" else JobNotFound
            try:
                shard.progress(jid, pct, "msg", self.now)
            except QueueError as e:
                assert type(e) is expected, (e, st_)
            else:
                raise AssertionError(f"PROGRESS of a {st_} job was accepted")
        self.after()

    # steps that land exactly on the timeout and TTL boundaries (40, 150; 50, 300) and past them
    @rule(dt=st.sampled_from([1, 10, 40, 50, 100, 150, 300, 1000]))
    def advance(self, dt: int) -> None:
        self.now += dt
        self.after()

    @rule(owner=st.sampled_from(["w1", "w2"]))
    def release_owner(self, owner: str) -> None:
        n = sum(s.release_owner(owner, self.now) for s in self.ss)
        outcomes: list[tuple[int, bool]] = []
        expected = 0
        for j in list(self.jobs.values()):
            if j.state == "active" and j.owner == owner:
                event("lost worker")
                self.fail_active(j, LOST_WORKER, outcomes)
                expected += 1
        assert n == expected
        self.settle(outcomes)
        self.after()

    @rule(data=st.data())
    def retry_dlq(self, data: st.DataObject) -> None:
        with_dlq = sorted({j.queue for j in self.jobs.values() if j.state == "failed"})
        if with_dlq and data.draw(st.integers(0, 3), label="prefer") < 3:
            queue = data.draw(st.sampled_from(with_dlq), label="queue")
        else:
            queue = data.draw(st.sampled_from(QUEUES), label="queue")
        shard = self.ss.for_queue(queue)
        assert shard is not None
        in_dlq = [j.id for j in shard.dlq(queue, 10_000)]  # the core's arrival order
        one = data.draw(st.one_of(st.none(), st.sampled_from([*in_dlq, NEVER_ISSUED])), label="one")
        candidates = in_dlq if one is None else [one] if one in in_dlq else []
        n = shard.retry_dlq(queue, one, self.now)
        expected = 0
        for jid in candidates:
            j = self.jobs[jid]
            if j.key is not None and self.key_holder(queue, j.key) is not None:
                continue  # its key is held by another live job: it stays in the DLQ
            j.state = "waiting"
            j.attempts = 0
            j.started = 0
            j.run_at = self.now
            self.totals["retried"] += 1
            expected += 1
            if j.ttl and self.now > j.created + j.ttl:
                event("retried from the DLQ past its TTL")
        if expected:
            event("retry_dlq retried")
        if candidates and not expected:
            event("retry_dlq kept a job whose key is held")
        assert n == expected
        self.after()

    # ------------------------------------------------------------ invariants

    @invariant()
    def each_job_in_exactly_the_modelled_state(self) -> None:
        live_ids: set[int] = set()
        for s in self.ss:
            for jid, job in s.jobs.items():
                assert shard_of_id(jid) == s.index
                live_ids.add(jid)
                assert job.state_name in STATE_NAMES
        expected_live = {j.id for j in self.jobs.values() if j.state in (*LIVE, "failed")}
        assert live_ids == expected_live
        for j in self.jobs.values():
            shard = self.ss.for_id(j.id)
            assert shard is not None
            job, state = shard.get_job(j.id)
            assert state == j.state, (j, state)
            if job is None:
                assert j.state in ("completed", "unknown")
                if j.state == "completed":
                    assert shard.get_result(j.id) == j.result
                continue
            assert (job.attempts, job.run_at, job.started_at) == (j.attempts, j.run_at, j.started)
            assert job.queue == j.queue
            if j.msg_names_a_parent:
                m = DEP_FAILED.fullmatch(job.progress_msg or "")
                assert m is not None, job.progress_msg
                assert int(m.group(1)) in j.deps  # (the parent may have been retried since)
            else:
                assert job.progress_msg == j.msg, j

    @invariant()
    def queue_counters_equal_the_jobs_in_each_state(self) -> None:
        for name in QUEUES:
            shard = self.ss.for_queue(name)
            assert shard is not None
            q = shard.queues.get(name)
            mine = Counter(j.state for j in self.jobs.values() if j.queue == name)
            if q is None:
                assert not mine
                continue
            assert (q.waiting, q.delayed, q.active, q.children, len(q.dlq)) == (
                mine["waiting"],
                mine["delayed"],
                mine["active"],
                mine["waiting-children"],
                mine["failed"],
            )
            assert set(q.dlq) == {
                j.id for j in self.jobs.values() if j.queue == name and j.state == "failed"
            }
            info = q.info()
            assert info["pending"] == mine["waiting"] + mine["delayed"]
            assert info["processing"] == mine["active"]

    @invariant()
    def unique_keys_are_held_exactly_by_live_jobs(self) -> None:
        for name in QUEUES:
            shard = self.ss.for_queue(name)
            assert shard is not None
            q = shard.queues.get(name)
            held = dict(q.unique) if q is not None else {}
            expected = {
                j.key: j.id
                for j in self.jobs.values()
                if j.queue == name and j.key is not None and j.state in LIVE
            }
            assert held == expected

    @invariant()
    def attempts_never_exceed_max_attempts(self) -> None:
        for s in self.ss:
            for job in s.jobs.values():
                if job.max_attempts > 0:
                    assert job.attempts <= job.max_attempts

    @invariant()
    def totals_equal_the_sum_over_jobs(self) -> None:
        stats = merge_stats(s.stats() for s in self.ss)
        mine = Counter(j.state for j in self.jobs.values())
        assert stats == {
            "queued": mine["waiting"],
            "processing": mine["active"],
            "delayed": mine["delayed"],
            "dlq": mine["failed"],
            "waiting_children": mine["waiting-children"],
        }
        m = merge_metrics(s.metrics(self.now) for s in self.ss)
        for k in ("pushed", "completed", "failed", "expired", "retried", "cancelled"):
            assert m[f"total_{k}"] == self.totals[k], k
        assert m["total_pushed"] == len(self.jobs)

    @invariant()
    def events_match_what_happened(self) -> None:
        for kind in ("pushed", "active", "completed", "failed", "retried", "cancelled", "expired"):
            assert self.seen_events[kind] == self.totals[kind], kind
        assert self.seen_events["progress"] == self.totals["progress"]

    @invariant()
    def nothing_is_overdue_and_outboxes_are_drained(self) -> None:
        for s in self.ss:
            assert s.wake_at > self.now
            assert s.wake_at <= s.next_deadline()
            assert s.dep_out == []
            assert s.cron_out == []


QueueMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestQueueMachine = QueueMachine.TestCase
