"""The shard core: one shard's queues and every rule of the job state machine.

Pure: no I/O, no clock, no trio. Every operation takes `now` (epoch ms) and either returns its
answer or raises a `proto.errors.QueueError`; side effects for the outside world are appended to
outboxes that the runtime drains after each call:
  `events`     (type, queue, job_id, ts, extra) for subscribers and webhooks
  `dep_out`    (shard, parent_id, ok) dependency outcomes owed to the shards that watch a job
  `cron_out`   (queue, data, priority) pushes owed by cron firings (the queue may live elsewhere)
  `ready`      queues that may now hand out jobs (wake parked pulls)
  `dirty*`     what changed since the last commit (only with persistence on)
and `wake_at` tells the earliest moment the runtime must call `tick()` again. Nothing is found
by polling.

States and transitions (the only place they change):

    push ──> waiting ──pull──> active ──ack──> completed (id + result kept for a while)
      │        ^  ^              │ └──fail/timeout/lost──> retry: delayed (backoff) or waiting
      │        │  └──run_at──────┼──────── delayed <── push with delay
      │        └── parents done ─┼──────── waiting-children <── push with depends_on
      │                          └──fail with attempts >= max_attempts──> failed (DLQ)
      └─ cancel (any live state) / ttl expiry (not active) ──> unknown
    failed ──RETRYDLQ──> waiting;  a parent failing, cancelled or expiring sends its
    waiting-children to the DLQ ("Dependency <id> failed").

Data structures, chosen so nothing costs more as the backlog grows:
- `jobs`: id -> Job for every live job (waiting, delayed, active, waiting-children, failed).
- Per queue, one `Level` per priority in use, and a heap of those priorities. A level is a FIFO
  deque of jobs kept in (run_at, id) order, so the common case (jobs arriving in time order)
  costs one append and one popleft, whatever the backlog; a job that arrives out of that order
  (a delayed job promoted a little late) goes to the level's small `late` heap of int keys
  `run_at<<52 | id` instead, and a pull takes the smaller of the two heads. Priority, then
  run_at, then push order, exactly. A cancelled or expired job is marked DEAD and skipped when
  its entry comes up (lazy deletion: O(1)); dead entries are compacted away when they outnumber
  live ones.
- One shard-wide heap each for delayed jobs (run_at), job timeouts and TTL deadlines, keyed
  `deadline<<52 | id` and compared in C. The id in the low bits finds the job; a delayed entry
  is live only if it `is` the job's `hkey`, deadline entries are re-validated against the job,
  and each heap is compacted when it outgrows twice its live size.
- Completed ids (with results) in insertion order, evicted by count and age.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proto.commands import JobSpec
from proto.errors import (
    CronNotFound,
    DuplicateJob,
    InvalidRequest,
    JobFinished,
    JobNotActive,
    JobNotFound,
    UnknownDependency,
)
from proto.wire import Event
from shard.cron import Schedule, parse_schedule
from shard.job import (
    ACTIVE,
    DEAD,
    DELAYED,
    FAILED,
    STATE_NAMES,
    WAITING,
    WAITING_CHILDREN,
    Job,
    retry_delay,
    should_go_to_dlq,
)
from shard.routing import NUM_SHARDS, shard_of_id

ID_BITS = 52
ID_MASK = (1 << ID_BITS) - 1
RUN_BITS = 45
RUN_AT_MAX = (1 << RUN_BITS) - 1
NEVER = 1 << 62

LOST_WORKER = "Worker connection lost"
TIMED_OUT = "Job timed out"

# Histogram bucket upper bounds in ms (queue wait and processing time).
HIST_BOUNDS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)

# A deadline heap is compacted when it grows past max(this, 2x its size after the last pass).
_COMPACT_MIN = 4096
# The counters every shard keeps (METRICS, Prometheus, and what persistence stores per shard).
TOTALS = (
    "total_pushed",
    "total_completed",
    "total_failed",
    "total_expired",
    "total_retried",
    "total_cancelled",
)
_RATE_WINDOW_S = 10


@dataclass(frozen=True, slots=True)
class CoreConfig:
    completed_keep: int = 100_000  # completed ids (and results) remembered per shard
    completed_ttl_ms: int = 3_600_000  # ... and for how long


class Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(HIST_BOUNDS) + 1)
        self.sum = 0

    def observe(self, ms: int) -> None:
        self.counts[bisect_left(HIST_BOUNDS, ms)] += 1
        self.sum += ms


class Level:
    """The waiting jobs of one priority: an ordered deque plus a heap for late arrivals."""

    __slots__ = ("fifo", "late", "tail")

    def __init__(self) -> None:
        self.fifo: deque[Job] = deque()  # sorted by (run_at, id)
        self.late: list[int] = []  # keys run_at<<52|id that arrived out of order
        self.tail = -1  # key of the last job appended to fifo

    def __len__(self) -> int:
        return len(self.fifo) + len(self.late)


class Queue:
    __slots__ = (
        "active",
        "children",
        "concurrency",
        "delayed",
        "dlq",
        "levels",
        "name",
        "paused",
        "prios",
        "proc_hist",
        "rate_limit",
        "rate_wake",
        "stale",
        "tokens",
        "tokens_at",
        "unique",
        "wait_hist",
        "waiting",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.levels: dict[int, Level] = {}
        self.prios: list[int] = []  # heap of -priority, one per level in `levels`
        self.stale = 0  # level entries whose job died without being popped
        self.waiting = 0
        self.delayed = 0
        self.active = 0
        self.children = 0  # waiting-children
        self.dlq: dict[int, int] = {}  # id -> arrival time; insertion order = oldest first
        self.unique: dict[str, int] = {}  # held unique key -> job id
        self.paused = False
        self.rate_limit: int | None = None
        self.tokens = 0.0
        self.tokens_at = 0
        self.rate_wake = 0  # when a rate-blocked queue gets its next token (0: none pending)
        self.concurrency: int | None = None
        self.wait_hist = Histogram()
        self.proc_hist = Histogram()

    def info(self) -> dict[str, Any]:
        """The LISTQUEUES entry."""
        return {
            "name": self.name,
            "pending": self.waiting + self.delayed,
            "processing": self.active,
            "dlq": len(self.dlq),
            "paused": self.paused,
            "rate_limit": self.rate_limit,
            "concurrency_limit": self.concurrency,
        }


class CronEntry:
    __slots__ = ("data", "name", "next_run", "priority", "queue", "schedule")

    def __init__(
        self, name: str, queue: str, data: bytes, schedule: Schedule, priority: int, next_run: int
    ) -> None:
        self.name = name
        self.queue = queue
        self.data = data
        self.schedule = schedule
        self.priority = priority
        self.next_run = next_run

    def info(self) -> dict[str, Any]:
        from proto.wire import Fragment

        return {
            "name": self.name,
            "queue": self.queue,
            "data": Fragment(self.data),
            "schedule": self.schedule.text,
            "priority": self.priority,
            "next_run": self.next_run,
        }


class Shard:
    def __init__(
        self, index: int, config: CoreConfig | None = None, *, track_changes: bool = False
    ) -> None:
        self.index = index
        self.config = config or CoreConfig()
        self.seq = 0  # last sequence number handed out; id = seq * 32 + index
        self.seq_reserved = 0  # the runtime's durable high-water mark for `seq` (memory mode)
        self.jobs: dict[int, Job] = {}
        self.queues: dict[str, Queue] = {}
        self.delayed: list[int] = []
        self.timeouts: list[int] = []
        self.ttls: list[int] = []
        self._compact_at = {"delayed": _COMPACT_MIN, "timeouts": _COMPACT_MIN, "ttls": _COMPACT_MIN}
        self.rate_wakes: list[tuple[int, str]] = []
        self.crons: dict[str, CronEntry] = {}
        self.cron_heap: list[tuple[int, str]] = []
        # completed jobs: id -> result bytes (or None); eviction order with completion times
        self.done: dict[int, bytes | None] = {}
        self.done_order: deque[tuple[int, int]] = deque()
        # lost-worker tracking: owner token -> ids of the active jobs it holds
        self.held: dict[Hashable, set[int]] = {}
        # dependencies
        self.watchers: dict[int, set[int]] = {}  # local job id -> shards awaiting its outcome
        self.waiting_for: dict[int, list[int]] = {}  # parent id (any shard) -> local child ids
        self.pending_deps: dict[int, set[int]] = {}  # local child id -> unresolved parents
        self.expecting: dict[int, int] = {}  # parent id -> pushes in flight that watch it
        self.early: dict[int, bool] = {}  # outcomes that arrived while a push was in flight
        # metrics
        self.total_pushed = 0
        self.total_completed = 0
        self.total_failed = 0  # moved to the DLQ
        self.total_expired = 0
        self.total_retried = 0
        self.total_cancelled = 0
        self._win_sec = [0] * _RATE_WINDOW_S  # per-second completion window
        self._win_count = [0] * _RATE_WINDOW_S
        self._win_lat = [0] * _RATE_WINDOW_S
        # outboxes
        self.events: list[Event] = []
        self.dep_out: list[tuple[int, int, bool]] = []
        self.cron_out: list[tuple[str, bytes, int]] = []
        self.ready: set[Queue] = set()
        self.wake_at = NEVER
        # persistence change tracking (None when persistence is off)
        self.dirty: set[int] | None = set() if track_changes else None
        self.dirty_queues: set[str] = set()
        self.dirty_crons: set[str] = set()
        self._restored_active: list[Job] = []

    # ------------------------------------------------------------ helpers

    def queue(self, name: str) -> Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = Queue(name)
        return q

    def _touch(self, job_id: int) -> None:
        d = self.dirty
        if d is not None:
            d.add(job_id)

    def _touch_queue(self, q: Queue) -> None:
        if self.dirty is not None:
            self.dirty_queues.add(q.name)

    def _alarm(self, t: int) -> None:
        if t < self.wake_at:
            self.wake_at = t

    def _active_job(self, job_id: int, now: int) -> Job:
        """The active job with this id, or `JobNotFound`. A job past its timeout is failed
        first (so a late ACK is refused exactly as if the timer had already fired)."""
        job = self.jobs.get(job_id)
        if job is None or job.state != ACTIVE:
            raise JobNotFound(job_id)
        if job.timeout and now > job.started_at + job.timeout:
            self._fail_active(job, TIMED_OUT, now)
            raise JobNotFound(job_id)
        return job

    # ------------------------------------------------------------ push

    def watch(self, job_id: int, shard: int) -> str:
        """Register `shard` for the outcome of local job `job_id`; answer its state now.

        "pending" (registered: an outcome will be sent), "completed", "failed" or "unknown".
        """
        job = self.jobs.get(job_id)
        if job is None:
            return "completed" if job_id in self.done else "unknown"
        if job.state == FAILED:
            return "failed"
        self.watchers.setdefault(job_id, set()).add(shard)
        return "pending"

    def expect(self, parents: Iterable[int]) -> None:
        """A push watching these parents is in flight: keep outcomes that arrive meanwhile."""
        for p in parents:
            self.expecting[p] = self.expecting.get(p, 0) + 1

    def unexpect(self, parents: Iterable[int]) -> None:
        for p in parents:
            n = self.expecting.get(p, 0) - 1
            if n <= 0:
                self.expecting.pop(p, None)
                self.early.pop(p, None)
            else:
                self.expecting[p] = n

    def _dep_plan(
        self, deps: tuple[int, ...], states: Mapping[int, str] | None
    ) -> tuple[list[int], int | None]:
        """(parents still pending, first failed parent) for a push; raises on unknown ids."""
        pending: list[int] = []
        failed: int | None = None
        for p in deps:
            st = states.get(p) if states is not None else None
            if st is None:
                st = self.watch(p, self.index) if shard_of_id(p) == self.index else "unknown"
            if st == "pending" and p in self.early:
                st = "completed" if self.early[p] else "failed"
            if st == "unknown":
                raise UnknownDependency(p)
            if st == "failed":
                if failed is None:
                    failed = p
            elif st == "pending":
                pending.append(p)
        return pending, failed

    def push(
        self, queue: str, spec: JobSpec, now: int, dep_states: Mapping[int, str] | None = None
    ) -> int:
        # The queue is created only once the job is admitted: a refused push must not make a
        # queue appear in LISTQUEUES (it lists queues that held a job or have a setting).
        q = self.queues.get(queue)
        key = spec.unique_key
        if key is not None and q is not None and key in q.unique:
            raise DuplicateJob(key)
        pending: list[int] | None = None
        failed: int | None = None
        if spec.depends_on:
            pending, failed = self._dep_plan(spec.depends_on, dep_states)
        if q is None:
            q = self.queue(queue)
        return self._admit(q, spec, now, pending, failed)

    def push_batch(
        self,
        queue: str,
        specs: list[JobSpec],
        now: int,
        dep_states: Mapping[int, str] | None = None,
    ) -> list[int]:
        """All or nothing: every check runs before the first job is admitted."""
        existing = self.queues.get(queue)
        held = existing.unique if existing is not None else {}
        seen: set[str] = set()
        plans: list[tuple[list[int], int | None] | None] = []
        any_deps = False
        for spec in specs:
            key = spec.unique_key
            if key is not None:
                if key in held or key in seen:
                    raise DuplicateJob(key)
                seen.add(key)
            if spec.depends_on:
                any_deps = True
                plans.append(self._dep_plan(spec.depends_on, dep_states))
            else:
                plans.append(None)
        if not specs:
            return []
        q = self.queue(queue)
        admit = self._admit
        if not any_deps and not seen:
            return [admit(q, spec, now, None, None) for spec in specs]
        return [
            admit(q, spec, now, *plan) if plan else admit(q, spec, now, None, None)
            for spec, plan in zip(specs, plans, strict=True)
        ]

    def _admit(
        self, q: Queue, spec: JobSpec, now: int, pending: list[int] | None, failed: int | None
    ) -> int:
        self.seq += 1
        jid = self.seq * NUM_SHARDS + self.index
        job = Job()
        job.id = jid
        job.q = q
        job.data = spec.data
        job.priority = spec.priority
        job.created_at = now
        run_at = now + spec.delay if spec.delay else now
        job.run_at = run_at if run_at <= RUN_AT_MAX else RUN_AT_MAX
        job.started_at = 0
        job.attempts = 0
        job.max_attempts = spec.max_attempts
        job.backoff = spec.backoff
        job.ttl = spec.ttl
        job.timeout = spec.timeout
        job.unique_key = key = spec.unique_key
        job.depends_on = spec.depends_on
        job.progress = 0
        job.progress_msg = None
        job.tags = spec.tags
        job.owner = None
        job.hkey = None
        self.jobs[jid] = job
        self.total_pushed += 1
        self.events.append(("pushed", q.name, jid, now, None))
        if self.dirty is not None:
            self.dirty.add(jid)
        if failed is not None:
            job.state = WAITING_CHILDREN  # transient: _to_dlq moves it out at once
            q.children += 1
            self._to_dlq(job, f"Dependency {failed} failed", now)
            return jid
        if key is not None:
            q.unique[key] = jid
        if spec.ttl:
            # Compact before adding this job's entry: the job has no state yet, and the
            # compaction's validity check reads the state of every job its entries name.
            if len(self.ttls) >= self._compact_at["ttls"]:
                self._compact("ttls")
            t = now + spec.ttl + 1
            heapq.heappush(self.ttls, t << ID_BITS | jid)
            if t < self.wake_at:
                self.wake_at = t
        if pending:
            job.state = WAITING_CHILDREN
            q.children += 1
            self.pending_deps[jid] = set(pending)
            for p in pending:
                self.waiting_for.setdefault(p, []).append(jid)
            return jid
        self._enqueue(job, q, now)
        return jid

    def _enqueue(self, job: Job, q: Queue, now: int) -> None:
        """Put a job that may run into `waiting` (or `delayed` until its run_at)."""
        if job.run_at > now:
            job.state = DELAYED
            q.delayed += 1
            k = job.run_at << ID_BITS | job.id
            job.hkey = k
            heapq.heappush(self.delayed, k)
            if job.run_at < self.wake_at:
                self.wake_at = job.run_at
            if len(self.delayed) > self._compact_at["delayed"]:
                self._compact("delayed")
        else:
            self._wait(job, q)

    def _wait(self, job: Job, q: Queue) -> None:
        job.state = WAITING
        q.waiting += 1
        lvl = q.levels.get(job.priority)
        if lvl is None:
            lvl = q.levels[job.priority] = Level()
            heapq.heappush(q.prios, -job.priority)
        k = job.run_at << ID_BITS | job.id
        if k > lvl.tail:
            lvl.fifo.append(job)
            lvl.tail = k
        else:
            heapq.heappush(lvl.late, k)
        self.ready.add(q)

    # ------------------------------------------------------------ pull

    def pull(self, queue: str, count: int, now: int, owner: Hashable = None) -> list[Job]:
        """Hand out up to `count` ready jobs (never waits: the runtime parks the caller)."""
        if self.delayed and self.delayed[0] >> ID_BITS <= now:
            self._promote(now)
        q = self.queues.get(queue)
        if q is None or q.paused or not q.waiting:
            return []
        n = count
        if q.concurrency is not None:
            n = min(n, q.concurrency - q.active)
            if n <= 0:
                return []
        if q.rate_limit is not None:
            self._refill(q, now)
            tokens = int(q.tokens)
            if tokens < n:
                n = tokens
                if n <= 0:
                    self._rate_block(q, now)
                    return []
        prios = q.prios
        levels = q.levels
        jobs = self.jobs
        out: list[Job] = []
        events = self.events
        name = q.name
        observe = q.wait_hist.observe
        dirty = self.dirty
        while n and prios:
            prio = -prios[0]
            lvl = levels[prio]
            fifo = lvl.fifo
            late = lvl.late
            if late and (not fifo or late[0] < (fifo[0].run_at << ID_BITS | fifo[0].id)):
                found = jobs.get(heapq.heappop(late) & ID_MASK)
                if found is None or found.state != WAITING:
                    q.stale -= 1
                    continue
                job = found
            elif fifo:
                job = fifo.popleft()
                if job.state != WAITING:
                    q.stale -= 1
                    continue
            else:
                heapq.heappop(prios)
                del levels[prio]
                continue
            if job.ttl and now > job.created_at + job.ttl:
                job.state = ACTIVE  # its entry is gone: leave as a job that was just handed out
                q.waiting -= 1
                q.active += 1
                self._expire(job, now)
                continue
            q.waiting -= 1
            job.state = ACTIVE
            job.started_at = now
            job.owner = owner
            observe(now - job.run_at)
            if job.timeout:
                t = now + job.timeout + 1
                heapq.heappush(self.timeouts, t << ID_BITS | job.id)
                if t < self.wake_at:
                    self.wake_at = t
            events.append(("active", name, job.id, now, None))
            if dirty is not None:
                dirty.add(job.id)
            out.append(job)
            n -= 1
        if out:
            got = len(out)
            q.active += got
            if q.rate_limit is not None:
                q.tokens -= got
            if owner is not None:
                held = self.held.get(owner)
                if held is None:
                    held = self.held[owner] = set()
                held.update(j.id for j in out)
        if len(self.timeouts) > self._compact_at["timeouts"]:
            self._compact("timeouts")
        return out

    def _refill(self, q: Queue, now: int) -> None:
        limit = q.rate_limit
        assert limit is not None
        if now > q.tokens_at:
            q.tokens = min(float(limit), q.tokens + (now - q.tokens_at) * limit / 1000.0)
            q.tokens_at = now

    def _rate_block(self, q: Queue, now: int) -> None:
        """Jobs are ready but the bucket is empty: wake the runtime when a token is due."""
        limit = q.rate_limit
        assert limit is not None
        missing = 1.0 - q.tokens
        t = now + max(1, int(missing * 1000.0 / limit + 0.999))
        if q.rate_wake == 0 or t < q.rate_wake:
            q.rate_wake = t
            heapq.heappush(self.rate_wakes, (t, q.name))
            if t < self.wake_at:
                self.wake_at = t

    # ------------------------------------------------------------ finish

    def ack(self, job_id: int, result: bytes | None, now: int) -> None:
        job = self._active_job(job_id, now)
        self._complete(job, result, now)

    def ack_batch(self, ids: Iterable[int], now: int) -> int:
        """Ack the ids that are active here; skip the rest. Returns how many were acked."""
        jobs = self.jobs
        n = 0
        for jid in ids:
            job = jobs.get(jid)
            if job is None or job.state != ACTIVE:
                continue
            if job.timeout and now > job.started_at + job.timeout:
                self._fail_active(job, TIMED_OUT, now)
                continue
            self._complete(job, None, now)
            n += 1
        return n

    def _complete(self, job: Job, result: bytes | None, now: int) -> None:
        jid = job.id
        q = job.q
        del self.jobs[jid]
        q.active -= 1
        self._release_owner_of(job)
        key = job.unique_key
        if key is not None and q.unique.get(key) == jid:
            del q.unique[key]
        lat = now - job.started_at
        q.proc_hist.observe(lat)
        self.total_completed += 1
        sec = now // 1000
        slot = sec % _RATE_WINDOW_S
        if self._win_sec[slot] != sec:
            self._win_sec[slot] = sec
            self._win_count[slot] = 0
            self._win_lat[slot] = 0
        self._win_count[slot] += 1
        self._win_lat[slot] += lat
        self.done[jid] = result
        self.done_order.append((now, jid))
        self._alarm(now + self.config.completed_ttl_ms + 1)  # age eviction needs a tick
        if len(self.done) > self.config.completed_keep:
            self._evict_done(now)
        self.events.append(("completed", q.name, jid, now, result))
        if self.dirty is not None:
            self.dirty.add(jid)
        if jid in self.watchers:
            self._notify(jid, True)
        if q.concurrency is not None:
            self.ready.add(q)

    def fail(self, job_id: int, error: str | None, now: int) -> None:
        job = self._active_job(job_id, now)
        self._fail_active(job, error, now)

    def _fail_active(self, job: Job, error: str | None, now: int) -> None:
        """An active job failed (FAIL, timeout or lost worker): retry it or send it to the DLQ."""
        q = job.q
        job.attempts += 1
        job.progress_msg = error
        if should_go_to_dlq(job.attempts, job.max_attempts):
            self._to_dlq(job, error, now)
            return
        if job.ttl and now > job.created_at + job.ttl:
            self._expire(job, now)
            return
        self._leave(job)
        job.started_at = 0
        job.progress = 0
        run_at = now + retry_delay(job.backoff, job.attempts)
        job.run_at = run_at if run_at <= RUN_AT_MAX else RUN_AT_MAX
        self.total_retried += 1
        self.events.append(("retried", q.name, job.id, now, error))
        self._touch(job.id)
        self._enqueue(job, q, now)

    def _release_owner_of(self, job: Job) -> None:
        owner = job.owner
        if owner is not None:
            job.owner = None
            held = self.held.get(owner)
            if held is not None:
                held.discard(job.id)
                if not held:
                    del self.held[owner]

    def _leave(self, job: Job) -> None:
        """Take a live job out of its current state's structures and counters."""
        q = job.q
        st = job.state
        if st == WAITING:
            q.waiting -= 1
            q.stale += 1  # its level entry stays behind until popped or compacted
            if q.stale > 64 and q.stale > q.waiting:
                job.state = DEAD
                self._compact_queue(q)
        elif st == DELAYED:
            q.delayed -= 1
            job.hkey = None
        elif st == ACTIVE:
            q.active -= 1
            self._release_owner_of(job)
            if q.concurrency is not None:
                self.ready.add(q)
        elif st == WAITING_CHILDREN:
            q.children -= 1
            self.pending_deps.pop(job.id, None)
        elif st == FAILED:
            q.dlq.pop(job.id, None)

    def _to_dlq(self, job: Job, reason: str | None, now: int) -> None:
        q = job.q
        self._leave(job)
        job.state = FAILED
        job.progress_msg = reason
        q.dlq[job.id] = now
        key = job.unique_key
        if key is not None and q.unique.get(key) == job.id:
            del q.unique[key]
        self.total_failed += 1
        self.events.append(("failed", q.name, job.id, now, reason))
        self._touch(job.id)
        if job.id in self.watchers:
            self._notify(job.id, False)

    def _drop(self, job: Job) -> None:
        """Remove a live job entirely (cancel, expiry): state becomes `unknown`."""
        self._leave(job)
        job.state = DEAD
        q = job.q
        del self.jobs[job.id]
        key = job.unique_key
        if key is not None and q.unique.get(key) == job.id:
            del q.unique[key]
        self._touch(job.id)
        if job.id in self.watchers:
            self._notify(job.id, False)

    def _expire(self, job: Job, now: int) -> None:
        self._drop(job)
        self.total_expired += 1
        self.events.append(("expired", job.q.name, job.id, now, None))

    def cancel(self, job_id: int, now: int) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            if job_id in self.done:
                raise JobFinished(job_id, "completed")
            raise JobNotFound(job_id)
        if job.state == FAILED:
            raise JobFinished(job_id, "failed")
        self._drop(job)
        self.total_cancelled += 1
        self.events.append(("cancelled", job.q.name, job_id, now, None))

    def release_owner(self, owner: Hashable, now: int) -> int:
        """A connection that pulled jobs is gone: fail what it still holds (lost worker)."""
        ids = self.held.pop(owner, None)
        if not ids:
            return 0
        n = 0
        for jid in list(ids):
            job = self.jobs.get(jid)
            if job is not None and job.state == ACTIVE and job.owner == owner:
                job.owner = None
                self._fail_active(job, LOST_WORKER, now)
                n += 1
        return n

    # ------------------------------------------------------------ dependencies

    def _notify(self, job_id: int, ok: bool) -> None:
        for shard in self.watchers.pop(job_id, ()):
            self.dep_out.append((shard, job_id, ok))

    def resolve(self, parent: int, ok: bool, now: int) -> None:
        """The outcome of a parent job (of any shard) that local jobs wait for."""
        children = self.waiting_for.pop(parent, None)
        if children is None:
            if parent in self.expecting:
                self.early[parent] = ok
            return
        if parent in self.expecting:
            self.early[parent] = ok
        for cid in children:
            job = self.jobs.get(cid)
            if job is None or job.state != WAITING_CHILDREN:
                continue
            if not ok:
                self._to_dlq(job, f"Dependency {parent} failed", now)
                continue
            left = self.pending_deps.get(cid)
            if left is None:
                continue
            left.discard(parent)
            if not left:
                del self.pending_deps[cid]
                job.q.children -= 1
                self._touch(cid)
                self._enqueue(job, job.q, now)

    # ------------------------------------------------------------ queries

    def get_job(self, job_id: int) -> tuple[Job | None, str]:
        job = self.jobs.get(job_id)
        if job is not None:
            return job, STATE_NAMES[job.state]
        return None, ("completed" if job_id in self.done else "unknown")

    def get_state(self, job_id: int) -> str:
        return self.get_job(job_id)[1]

    def get_result(self, job_id: int) -> bytes | None:
        return self.done.get(job_id)

    def has_result(self, job_id: int) -> bool:
        return job_id in self.done

    def progress(self, job_id: int, pct: int, message: str | None, now: int) -> None:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.state != ACTIVE:
            raise JobNotActive(job_id)
        job = self._active_job(job_id, now)
        job.progress = min(pct, 100)
        job.progress_msg = message
        self.events.append(("progress", job.q.name, job_id, now, job.progress))
        self._touch(job_id)

    def get_progress(self, job_id: int) -> tuple[int, str | None]:
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.state != ACTIVE:
            raise JobNotActive(job_id)
        return job.progress, job.progress_msg

    def dlq(self, queue: str, count: int) -> list[Job]:
        q = self.queues.get(queue)
        if q is None:
            return []
        out: list[Job] = []
        jobs = self.jobs
        for jid in q.dlq:
            if len(out) >= count:
                break
            out.append(jobs[jid])
        return out

    def retry_dlq(self, queue: str, job_id: int | None, now: int) -> int:
        q = self.queues.get(queue)
        if q is None or not q.dlq:
            return 0
        if job_id is None:
            candidates = list(q.dlq)
        else:
            candidates = [job_id] if job_id in q.dlq else []
        n = 0
        for jid in candidates:
            job = self.jobs[jid]
            key = job.unique_key
            if key is not None:
                holder = q.unique.get(key)
                if holder is not None and holder != jid:
                    continue  # the key is held by another live job: stays in the DLQ
                q.unique[key] = jid
            del q.dlq[jid]
            job.attempts = 0
            job.started_at = 0
            job.progress = 0
            job.run_at = now
            self.total_retried += 1
            self.events.append(("retried", q.name, jid, now, job.progress_msg))
            self._touch(jid)
            self._enqueue(job, q, now)
            if job.ttl:
                # Its TTL entry may have been dropped while it sat in the DLQ: arm it again, so
                # expiry stays eager (a deadline already past fires at the next tick).
                t = job.created_at + job.ttl + 1
                heapq.heappush(self.ttls, t << ID_BITS | jid)
                self._alarm(t)
            n += 1
        return n

    # ------------------------------------------------------------ queue settings

    def pause(self, queue: str) -> None:
        q = self.queue(queue)
        q.paused = True
        self._touch_queue(q)

    def resume(self, queue: str) -> None:
        q = self.queue(queue)
        q.paused = False
        self.ready.add(q)
        self._touch_queue(q)

    def set_rate_limit(self, queue: str, limit: int | None, now: int) -> None:
        q = self.queue(queue)
        q.rate_limit = limit
        if limit is not None:
            q.tokens = float(limit)  # full at start
            q.tokens_at = now
        q.rate_wake = 0
        self.ready.add(q)
        self._touch_queue(q)

    def set_concurrency(self, queue: str, limit: int | None) -> None:
        q = self.queue(queue)
        q.concurrency = limit
        self.ready.add(q)
        self._touch_queue(q)

    # ------------------------------------------------------------ cron

    def cron_add(
        self, name: str, queue: str, data: bytes, schedule: str, priority: int, now: int
    ) -> None:
        sched = parse_schedule(schedule, now)
        nxt = sched.next_after(now)
        self.crons[name] = CronEntry(name, queue, data, sched, priority, nxt)
        heapq.heappush(self.cron_heap, (nxt, name))
        self._alarm(nxt)
        if self.dirty is not None:
            self.dirty_crons.add(name)

    def cron_delete(self, name: str) -> None:
        if self.crons.pop(name, None) is None:
            raise CronNotFound()
        if self.dirty is not None:
            self.dirty_crons.add(name)

    def cron_list(self) -> list[dict[str, Any]]:
        return [c.info() for c in self.crons.values()]

    # ------------------------------------------------------------ time

    def tick(self, now: int) -> None:
        """Do everything that is due at `now`, then compute the next wake-up."""
        if self.delayed and self.delayed[0] >> ID_BITS <= now:
            self._promote(now)
        jobs = self.jobs
        timeouts = self.timeouts
        while timeouts and timeouts[0] >> ID_BITS <= now:
            k = heapq.heappop(timeouts)
            job = jobs.get(k & ID_MASK)
            if (
                job is not None
                and job.state == ACTIVE
                and job.timeout
                and job.started_at + job.timeout + 1 == k >> ID_BITS
            ):
                self._fail_active(job, TIMED_OUT, now)
        ttls = self.ttls
        while ttls and ttls[0] >> ID_BITS <= now:
            k = heapq.heappop(ttls)
            job = jobs.get(k & ID_MASK)
            if job is not None and job.state in (WAITING, DELAYED, WAITING_CHILDREN):
                self._expire(job, now)
        wakes = self.rate_wakes
        while wakes and wakes[0][0] <= now:
            t, name = heapq.heappop(wakes)
            q = self.queues.get(name)
            if q is not None and q.rate_wake == t:
                q.rate_wake = 0
                self.ready.add(q)
        crons = self.cron_heap
        while crons and crons[0][0] <= now:
            t, name = heapq.heappop(crons)
            c = self.crons.get(name)
            if c is None or c.next_run != t:
                continue
            self.cron_out.append((c.queue, c.data, c.priority))
            # Missed firings (server down) collapse into one; the next is after `now`.
            c.next_run = c.schedule.next_after(max(now, t))
            heapq.heappush(crons, (c.next_run, name))
            if self.dirty is not None:
                self.dirty_crons.add(name)
        if self.done_order and self.done_order[0][0] + self.config.completed_ttl_ms < now:
            self._evict_done(now)
        self.wake_at = self.next_deadline()

    def next_deadline(self) -> int:
        t = NEVER
        if self.delayed:
            t = min(t, self.delayed[0] >> ID_BITS)
        if self.timeouts:
            t = min(t, self.timeouts[0] >> ID_BITS)
        if self.ttls:
            t = min(t, self.ttls[0] >> ID_BITS)
        if self.rate_wakes:
            t = min(t, self.rate_wakes[0][0])
        if self.cron_heap:
            t = min(t, self.cron_heap[0][0])
        if self.done_order:
            t = min(t, self.done_order[0][0] + self.config.completed_ttl_ms + 1)
        return t

    def _promote(self, now: int) -> None:
        delayed = self.delayed
        jobs = self.jobs
        while delayed and delayed[0] >> ID_BITS <= now:
            k = heapq.heappop(delayed)
            job = jobs.get(k & ID_MASK)
            if job is None or job.hkey is not k:
                continue
            job.hkey = None
            q = job.q
            q.delayed -= 1
            self._wait(job, q)
            self._touch(job.id)
        if len(delayed) > self._compact_at["delayed"]:
            self._compact("delayed")

    def _evict_done(self, now: int) -> None:
        order = self.done_order
        done = self.done
        keep = self.config.completed_keep
        horizon = now - self.config.completed_ttl_ms
        dirty = self.dirty
        while order and (len(done) > keep or order[0][0] < horizon):
            _, jid = order.popleft()
            done.pop(jid, None)
            if dirty is not None:
                dirty.add(jid)  # its stored row goes too

    def _compact_queue(self, q: Queue) -> None:
        jobs = self.jobs
        for prio, lvl in list(q.levels.items()):
            lvl.fifo = deque(j for j in lvl.fifo if j.state == WAITING)
            live = [
                k
                for k in lvl.late
                if (j := jobs.get(k & ID_MASK)) is not None and j.state == WAITING
            ]
            heapq.heapify(live)
            lvl.late = live
            if not lvl:
                del q.levels[prio]
        q.prios = [-p for p in q.levels]
        heapq.heapify(q.prios)
        q.stale = 0

    def _compact(self, which: str) -> None:
        heap: list[int] = getattr(self, which)
        jobs = self.jobs
        valid: Callable[[int], bool]
        if which == "delayed":

            def valid(k: int) -> bool:
                j = jobs.get(k & ID_MASK)
                return j is not None and j.hkey is k

        elif which == "timeouts":

            def valid(k: int) -> bool:
                j = jobs.get(k & ID_MASK)
                return (
                    j is not None
                    and j.state == ACTIVE
                    and j.started_at + j.timeout + 1 == k >> ID_BITS
                )

        else:
            # An active job keeps its TTL entry: if it fails before its TTL and is retried,
            # that entry is what expires it on time.
            def valid(k: int) -> bool:
                j = jobs.get(k & ID_MASK)
                return j is not None and j.state in (WAITING, DELAYED, WAITING_CHILDREN, ACTIVE)

        live = [k for k in heap if valid(k)]
        heapq.heapify(live)
        setattr(self, which, live)
        self._compact_at[which] = max(_COMPACT_MIN, 2 * len(live))

    # ------------------------------------------------------------ restore (persistence)
    # Rebuild a shard from stored rows at start. Nothing here marks anything dirty: the state
    # equals what is stored, except what `finish_restore` changes on purpose.

    def restore_meta(self, seq: int, totals: Mapping[str, int]) -> None:
        self.seq = max(self.seq, seq)
        for k in TOTALS:
            setattr(self, k, int(totals.get(k, 0)))

    def restore_queue(
        self, name: str, paused: bool, rate_limit: int | None, concurrency: int | None, now: int
    ) -> None:
        q = self.queue(name)
        q.paused = paused
        q.concurrency = concurrency
        q.rate_limit = rate_limit
        if rate_limit is not None:
            q.tokens = float(rate_limit)
            q.tokens_at = now

    def restore_cron(
        self,
        name: str,
        queue: str,
        data: bytes,
        schedule: str,
        priority: int,
        next_run: int,
        now: int,
    ) -> None:
        sched = parse_schedule(schedule, now)
        self.crons[name] = CronEntry(name, queue, data, sched, priority, next_run)
        heapq.heappush(self.cron_heap, (next_run, name))

    def restore_done(self, job_id: int, result: bytes | None, completed_at: int) -> None:
        """A completed job (call in completion order)."""
        self.done[job_id] = result
        self.done_order.append((completed_at, job_id))
        self.seq = max(self.seq, job_id // NUM_SHARDS)

    def restore_job(self, r: Mapping[str, Any], now: int) -> None:
        """A live job from its stored row (`state` is a small int of shard.job)."""
        q = self.queue(r["queue"])
        job = Job()
        jid = job.id = int(r["id"])
        job.q = q
        job.data = bytes(r["data"])
        job.priority = r["priority"]
        job.created_at = r["created_at"]
        job.run_at = r["run_at"]
        job.started_at = r["started_at"]
        job.attempts = r["attempts"]
        job.max_attempts = r["max_attempts"]
        job.backoff = r["backoff"]
        job.ttl = r["ttl"]
        job.timeout = r["timeout"]
        job.unique_key = key = r["unique_key"]
        job.depends_on = tuple(r["depends_on"] or ())
        job.progress = r["progress"]
        job.progress_msg = r["progress_msg"]
        job.tags = tuple(r["tags"] or ())
        job.owner = None
        job.hkey = None
        self.jobs[jid] = job
        self.seq = max(self.seq, jid // NUM_SHARDS)
        state = r["state"]
        if state == FAILED:
            job.state = FAILED
            q.dlq[jid] = r["dlq_at"]
            return
        if key is not None:
            q.unique[key] = jid
        if job.ttl:
            heapq.heappush(self.ttls, (job.created_at + job.ttl + 1) << ID_BITS | jid)
        pending = [int(p) for p in (r["pending_deps"] or ())]
        if state == WAITING_CHILDREN and pending:
            job.state = WAITING_CHILDREN
            q.children += 1
            self.pending_deps[jid] = set(pending)
            for p in pending:
                self.waiting_for.setdefault(p, []).append(jid)
        elif state == ACTIVE:
            job.state = ACTIVE
            q.active += 1
            self._restored_active.append(job)
        else:
            self._enqueue(job, q, now)

    def finish_restore(self, now: int) -> None:
        """After every row is in: DLQ order, and active jobs failed as lost (their workers
        are gone with the old process), under the usual retry rules."""
        for q in self.queues.values():
            if q.dlq:
                q.dlq = dict(sorted(q.dlq.items(), key=lambda kv: (kv[1], kv[0])))
        active, self._restored_active = self._restored_active, []
        for job in active:
            self._fail_active(job, LOST_WORKER, now)
        self._evict_done(now)
        self.events.clear()
        self.wake_at = self.next_deadline()

    # ------------------------------------------------------------ listing and counters

    def queue_infos(self) -> list[dict[str, Any]]:
        return [q.info() for q in self.queues.values()]

    def stats(self) -> dict[str, int]:
        queued = processing = delayed = dlq = children = 0
        for q in self.queues.values():
            queued += q.waiting
            processing += q.active
            delayed += q.delayed
            dlq += len(q.dlq)
            children += q.children
        return {
            "queued": queued,
            "processing": processing,
            "delayed": delayed,
            "dlq": dlq,
            "waiting_children": children,
        }

    def metrics(self, now: int) -> dict[str, Any]:
        """Totals and the completion window; gathered over shards by `merge_metrics`."""
        sec = now // 1000
        count = lat = 0
        for i in range(_RATE_WINDOW_S):
            # the last full seconds, not the one still filling up
            if sec - _RATE_WINDOW_S <= self._win_sec[i] < sec:
                count += self._win_count[i]
                lat += self._win_lat[i]
        return {
            "total_pushed": self.total_pushed,
            "total_completed": self.total_completed,
            "total_failed": self.total_failed,
            "total_expired": self.total_expired,
            "total_retried": self.total_retried,
            "total_cancelled": self.total_cancelled,
            "window_completed": count,
            "window_latency_ms": lat,
            "queues": [
                {
                    "name": q.name,
                    "pending": q.waiting + q.delayed,
                    "processing": q.active,
                    "dlq": len(q.dlq),
                    "rate_limit": q.rate_limit,
                }
                for q in self.queues.values()
            ],
        }

    def histograms(self) -> list[dict[str, Any]]:
        return [
            {
                "name": q.name,
                "wait": [q.wait_hist.counts, q.wait_hist.sum],
                "processing": [q.proc_hist.counts, q.proc_hist.sum],
                "waiting": q.waiting,
                "delayed": q.delayed,
                "active": q.active,
                "dlq": len(q.dlq),
                "waiting_children": q.children,
                "paused": q.paused,
            }
            for q in self.queues.values()
        ]

    def list_jobs(self, queue: str | None, state: str | None, limit: int) -> list[tuple[Job, str]]:
        """Up to `limit` live jobs, newest first (created_at, then id, descending)."""
        if state is not None and state not in STATE_NAMES:
            raise InvalidRequest(f"field 'state' has an unknown state: {state}")
        want = None if state is None else STATE_NAMES.index(state)
        if queue is not None:
            q = self.queues.get(queue)
            if q is None:
                return []
        it = (
            j
            for j in self.jobs.values()
            if (want is None or j.state == want) and (queue is None or j.q.name == queue)
        )
        top = heapq.nlargest(limit, it, key=lambda j: (j.created_at, j.id))
        return [(j, STATE_NAMES[j.state]) for j in top]


def merge_metrics(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine per-shard `Shard.metrics()` into the METRICS reply body."""
    totals = dict.fromkeys(TOTALS, 0)
    count = lat = 0
    queues: list[dict[str, Any]] = []
    for p in parts:
        for k in totals:
            totals[k] += p[k]
        count += p["window_completed"]
        lat += p["window_latency_ms"]
        queues.extend(p["queues"])
    queues.sort(key=lambda q: q["name"])
    return {
        **totals,
        "jobs_per_second": count / _RATE_WINDOW_S,
        "avg_latency_ms": (lat / count) if count else 0.0,
        "queues": queues,
    }


def merge_stats(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out = {"queued": 0, "processing": 0, "delayed": 0, "dlq": 0, "waiting_children": 0}
    for p in parts:
        for k in out:
            out[k] += p[k]
    return out
