"""The shard runtime: drives the local shards of one worker under trio.

`ShardHost` executes typed commands (proto.commands) on the shards this worker owns and turns
the core's outboxes into actions:
- **Replies.** `execute()` returns the reply at once (a dict) when it can, or a `Pending` that
  resolves later: a blocking pull parked until a job is ready, a push that must first learn the
  state of parents on other workers, or (with persistence) a mutation waiting for its commit.
  Errors are raised as `QueueError` when immediate, or resolved as `QueueError` values.
- **Parked pulls.** PULL/PULLB with nothing ready wait in a FIFO per queue. Whenever the core
  reports a queue in `ready` (a push, a promotion, a resume, a freed concurrency slot, a rate
  token), waiters are served in order. A waiter whose client went away is cancelled and never
  handed a job. Timeouts ride on the same timer as the shards.
- **Time.** One timer task per worker sleeps until the earliest deadline any local shard (or
  waiter) reports, in a cancel scope whose deadline moves earlier whenever an operation creates
  an earlier one. Nothing polls.
- **Crossing shards.** Dependency outcomes and cron pushes for local shards are delivered by
  `ShardSet.settle()`; those for other workers go to `remote` (the node's links).
- **Events** go to `publish` (the node's event bus) only while somebody listens.
"""

from __future__ import annotations

import heapq
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import trio

from proto import commands as c
from proto.errors import InvalidRequest, PersistenceUnavailable, QueueError
from proto.wire import Event, Fragment, job_to_wire
from shard.core import NEVER, CoreConfig, Shard, merge_metrics, merge_stats
from shard.job import Job
from shard.pending import Pending
from shard.routing import shard_of_id, shard_of_name
from shard.shardset import ShardSet

Reply = dict[str, Any]
Result = Reply | QueueError


SEQ_BLOCK = 100_000  # ids reserved per file write


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _seq_path(seq_dir: str, shard: int) -> str:
    return os.path.join(seq_dir, f"seq-{shard}")


def _read_seq(seq_dir: str, shard: int) -> int:
    try:
        with open(_seq_path(seq_dir, shard)) as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return 0


def _write_seq(seq_dir: str, shard: int, seq: int) -> None:
    path = _seq_path(seq_dir, shard)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(seq))
    os.replace(tmp, path)


class Remote(Protocol):
    """What the host needs from other workers (implemented by the node's links)."""

    def watch(self, parents: list[int], watcher: int) -> Pending[Any]: ...

    def dep_outcome(self, shard: int, parent: int, ok: bool) -> None: ...

    def cron_push(self, queue: str, data: bytes, priority: int) -> None: ...


class Durability(Protocol):
    """Persistence: `commit()` resolves once everything changed so far is durable."""

    healthy: bool

    def commit(self) -> Pending[QueueError | None]: ...

    def poke(self) -> None:
        """Something changed without a reply waiting on it: write it soon."""


@dataclass(slots=True)
class Ctx:
    """Who is asking: the owner token marks jobs a connection pulls (lost-worker release)."""

    owner: Hashable = None
    worker: str | None = None


class Waiter:
    __slots__ = ("batch", "count", "deadline", "done", "owner", "pending", "queue")

    def __init__(self, queue: str, count: int, batch: bool, owner: Hashable) -> None:
        self.queue = queue
        self.count = count
        self.batch = batch
        self.owner = owner
        self.pending: Pending[Result] = Pending()
        self.deadline = NEVER
        self.done = False


@dataclass(slots=True)
class WorkerEntry:
    id: str
    queues: list[str]
    concurrency: int
    last_heartbeat: int


def pull_reply(jobs: list[Job], batch: bool) -> Reply:
    if batch:
        return {"ok": True, "jobs": [job_to_wire(j) for j in jobs]}
    return {"ok": True, "job": job_to_wire(jobs[0]) if jobs else None}


def _job_json(job: Job, state: str) -> bytes:
    w = job_to_wire(job)
    w["state"] = state
    return orjson.dumps(w)


@dataclass
class ShardHost:
    indices: list[int]
    config: CoreConfig = field(default_factory=CoreConfig)
    remote: Remote | None = None
    track_changes: bool = False
    worker_ttl_ms: int = 30_000
    # Memory mode: where each shard records the ids it may hand out, so a restarted worker
    # never reuses an id a client may still hold (with persistence the database does this).
    seq_dir: str | None = None

    def __post_init__(self) -> None:
        self.shardset = ShardSet(self.indices, self.config, track_changes=self.track_changes)
        self.shards = self.shardset.shards
        self.publish: Callable[[list[Event]], None] | None = None
        self.durability: Durability | None = None
        self.waiters: dict[str, deque[Waiter]] = {}
        self._waiter_heap: list[tuple[int, int, Waiter]] = []
        self._seq = itertools.count()
        self._timer_at = NEVER
        self._scope: trio.CancelScope | None = None
        self.workers: dict[str, WorkerEntry] = {}
        self.processed: dict[str, int] = {}
        if self.seq_dir is not None:
            for s in self.shards.values():
                s.seq = s.seq_reserved = _read_seq(self.seq_dir, s.index)
        self._handlers: dict[type[c.Command], Callable[[Any, Ctx], Any]] = {
            c.Push: self._push,
            c.PushBatch: self._push_batch,
            c.Pull: self._pull,
            c.PullBatch: self._pull,
            c.Ack: self._ack,
            c.Fail: self._fail,
            c.GetJob: self._get_job,
            c.GetState: self._get_state,
            c.GetResult: self._get_result,
            c.Cancel: self._cancel,
            c.Progress: self._progress,
            c.GetProgress: self._get_progress,
            c.Dlq: self._dlq,
            c.RetryDlq: self._retry_dlq,
            c.Pause: self._queue_setting,
            c.Resume: self._queue_setting,
            c.RateLimit: self._queue_setting,
            c.RateLimitClear: self._queue_setting,
            c.SetConcurrency: self._queue_setting,
            c.ClearConcurrency: self._queue_setting,
            c.Cron: self._cron,
            c.CronDelete: self._cron_delete,
            c.Heartbeat: self._heartbeat,
        }

    # ------------------------------------------------------------ plumbing

    def shard_for_queue(self, queue: str) -> Shard:
        return self.shards[shard_of_name(queue)]

    def shard_for_id(self, job_id: int) -> Shard | None:
        return self.shards.get(shard_of_id(job_id))

    def execute(self, cmd: c.Command, ctx: Ctx) -> Reply | Pending[Result]:
        """Run a command whose shard is local. Raises QueueError for immediate refusals."""
        handler = self._handlers.get(type(cmd))
        if handler is None:
            raise InvalidRequest(f"command {cmd.name} is not served by a shard")
        d = self.durability
        if d is not None and cmd.mutating and not d.healthy:
            # Refuse before changing anything: a change we could not make durable must not
            # happen at all.
            raise PersistenceUnavailable()
        result: Reply | Pending[Result] = handler(cmd, ctx)
        return result

    def _after(self, shard: Shard) -> None:
        """Act on what the last operation on `shard` left in its outboxes."""
        if shard.seq > shard.seq_reserved and self.seq_dir is not None:
            # Before any reply carries one of the new ids, make sure a restart skips them.
            shard.seq_reserved = shard.seq + SEQ_BLOCK
            _write_seq(self.seq_dir, shard.index, shard.seq_reserved)
        if shard.ready:
            self._serve(shard)
        if shard.dep_out or shard.cron_out:
            self._settle()
        if shard.events:
            pub = self.publish
            if pub is None:
                shard.events.clear()
            else:
                events, shard.events = shard.events, []
                pub(events)
        if shard.wake_at < self._timer_at:
            self._rearm(shard.wake_at)
        if shard.dirty and self.durability is not None:
            self.durability.poke()

    def after_restore(self) -> None:
        """Shards were rebuilt from storage: arm timers, serve, re-watch local parents."""
        self._timer_at = min([s.wake_at for s in self.shards.values()] + [NEVER])
        self.rewatch(lambda parent: shard_of_id(parent) in self.shards)
        for s in self.shards.values():
            self._after(s)

    def rewatch(self, which: Callable[[int], bool]) -> None:
        """Register local waiting-children again with the shards of their parents.

        Watch registrations live in memory on the parent's side, so after either side restarts
        the children must ask again. The answer settles what happened meanwhile: a completed
        parent releases them, a failed one sends them to the DLQ, and one that is gone
        (`unknown`: cancelled, expired, or lost with a worker's memory) fails them too.
        """
        for s in self.shards.values():
            parents = [p for p in s.waiting_for if which(p)]
            if not parents:
                continue
            local, remote = self.shardset.watch_local(parents, s.index)
            self._apply_watch(s, local)
            if remote and self.remote is not None:
                self.remote.watch(remote, s.index).then(self._watch_answer(s))

    def _watch_answer(self, s: Shard) -> Callable[[Any], None]:
        def answer(v: Any) -> None:
            if not isinstance(v, QueueError):  # a peer that is down: it will link up again
                self._apply_watch(s, v)

        return answer

    def _apply_watch(self, s: Shard, states: dict[Any, str]) -> None:
        now = now_ms()
        for p, st in states.items():
            if st != "pending":
                s.resolve(int(p), st == "completed", now)
        self._after(s)

    def _settle(self) -> None:
        out = self.shardset.settle(now_ms())
        if out and self.remote is not None:
            for target, parent, ok in out.dep_outcomes:
                self.remote.dep_outcome(target, parent, ok)
            for queue, data, priority in out.cron_pushes:
                self.remote.cron_push(queue, data, priority)
        for s in self.shards.values():
            if s.ready or s.events or s.wake_at < self._timer_at:
                self._after(s)

    def _durable(self, reply: Reply) -> Reply | Pending[Result]:
        """With persistence on, hold a mutation's reply until its records are committed."""
        d = self.durability
        if d is None:
            return reply
        out: Pending[Result] = Pending()

        def committed(err: QueueError | None) -> None:
            out.resolve(reply if err is None else err)

        d.commit().then(committed)
        return out

    # ------------------------------------------------------------ push

    def _push(self, cmd: c.Push, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self.shard_for_queue(cmd.queue)
        if cmd.job.depends_on:
            return self._push_with_deps(shard, cmd.queue, [cmd.job], False)
        try:
            jid = shard.push(cmd.queue, cmd.job, now_ms())
        finally:
            self._after(shard)
        return self._durable({"ok": True, "id": jid})

    def _push_batch(self, cmd: c.PushBatch, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self.shard_for_queue(cmd.queue)
        if any(s.depends_on for s in cmd.jobs):
            return self._push_with_deps(shard, cmd.queue, cmd.jobs, True)
        try:
            ids = shard.push_batch(cmd.queue, cmd.jobs, now_ms())
        finally:
            self._after(shard)
        return self._durable({"ok": True, "ids": ids})

    def push_local(self, queue: str, specs: list[c.JobSpec]) -> list[int]:
        """A push from inside the cluster (a cron firing on another worker)."""
        shard = self.shard_for_queue(queue)
        try:
            return shard.push_batch(queue, specs, now_ms())
        finally:
            self._after(shard)

    def _push_with_deps(
        self, shard: Shard, queue: str, specs: list[c.JobSpec], batch: bool
    ) -> Reply | Pending[Result]:
        parents = list(dict.fromkeys(p for s in specs for p in s.depends_on))
        states, remote = self.shardset.watch_local(parents, shard.index)

        def finish() -> Reply | Pending[Result]:
            try:
                ids = shard.push_batch(queue, specs, now_ms(), states)
            finally:
                self._after(shard)
            return self._durable({"ok": True, "ids": ids} if batch else {"ok": True, "id": ids[0]})

        if not remote:
            return finish()
        if self.remote is None:
            raise InvalidRequest("dependencies on other workers need a cluster")
        # Outcomes that arrive between the remote watch and our push must not be lost.
        shard.expect(remote)
        out: Pending[Result] = Pending()

        def got(value: Any) -> None:
            try:
                if isinstance(value, QueueError):
                    out.resolve(value)
                    return
                states.update({int(k): v for k, v in value.items()})
                r = finish()
                if isinstance(r, Pending):
                    r.then(out.resolve)
                else:
                    out.resolve(r)
            except QueueError as e:
                out.resolve(e)
            finally:
                shard.unexpect(remote)

        self.remote.watch(remote, shard.index).then(got)
        return out

    def watch(self, parents: Iterable[int], watcher: int) -> dict[int, str]:
        """Another worker's push depends on these local jobs."""
        states, remote = self.shardset.watch_local(parents, watcher)
        for p in remote:  # not ours after all (should not happen): report honestly
            states[p] = "unknown"
        return states

    def resolve_dependency(self, shard: int, parent: int, ok: bool) -> None:
        s = self.shards.get(shard)
        if s is not None:
            s.resolve(parent, ok, now_ms())
            self._after(s)

    # ------------------------------------------------------------ pull

    def _pull(self, cmd: c.Pull | c.PullBatch, ctx: Ctx) -> Reply | Pending[Result]:
        batch = type(cmd) is c.PullBatch
        count = cmd.count if isinstance(cmd, c.PullBatch) else 1
        shard = self.shard_for_queue(cmd.queue)
        queue = cmd.queue
        jobs = shard.pull(queue, count, now_ms(), ctx.owner) if queue not in self.waiters else []
        if jobs or cmd.timeout == 0:
            self._after(shard)
            return pull_reply(jobs, batch)
        w = Waiter(queue, count, batch, ctx.owner)
        self.waiters.setdefault(queue, deque()).append(w)
        if cmd.timeout is not None:
            w.deadline = now_ms() + cmd.timeout
            heapq.heappush(self._waiter_heap, (w.deadline, next(self._seq), w))
            if w.deadline < self._timer_at:
                self._rearm(w.deadline)

        def cancelled() -> None:
            w.done = True

        w.pending.on_cancel = cancelled
        # A queue with earlier waiters serves them first; jobs may be ready for them too.
        if shard.queues.get(queue) is not None:
            shard.ready.add(shard.queue(queue))
        self._after(shard)
        return w.pending

    def _serve(self, shard: Shard) -> None:
        ready, shard.ready = shard.ready, set()
        now = now_ms()
        for q in ready:
            dq = self.waiters.get(q.name)
            if not dq:
                continue
            while dq:
                w = dq[0]
                if w.done:
                    dq.popleft()
                    continue
                jobs = shard.pull(q.name, w.count, now, w.owner)
                if not jobs:
                    break
                dq.popleft()
                w.done = True
                w.pending.resolve(pull_reply(jobs, w.batch))
            if not dq:
                del self.waiters[q.name]

    def _expire_waiters(self, now: int) -> None:
        heap = self._waiter_heap
        while heap and heap[0][0] <= now:
            _, _, w = heapq.heappop(heap)
            if not w.done:
                w.done = True
                w.pending.resolve(pull_reply([], w.batch))

    def release_all_waiters(self) -> None:
        """Shutdown: answer every parked pull as if its timeout had run out."""
        for dq in self.waiters.values():
            for w in dq:
                if not w.done:
                    w.done = True
                    w.pending.resolve(pull_reply([], w.batch))
        self.waiters.clear()

    def release_owner(self, owner: Hashable) -> int:
        """A connection that pulled jobs is gone (lost worker)."""
        n = 0
        now = now_ms()
        for s in self.shards.values():
            if owner in s.held:
                n += s.release_owner(owner, now)
                self._after(s)
        return n

    def release_owners(self, match: Callable[[Hashable], bool]) -> int:
        """Release every owner token `match` accepts (all connections of a dead worker)."""
        n = 0
        now = now_ms()
        for s in self.shards.values():
            for owner in [o for o in s.held if match(o)]:
                n += s.release_owner(owner, now)
            self._after(s)
        return n

    # ------------------------------------------------------------ by id

    def _by_id(self, job_id: int) -> Shard:
        s = self.shard_for_id(job_id)
        if s is None:
            raise InvalidRequest(f"job {job_id} does not belong to this worker")
        return s

    def _ack(self, cmd: c.Ack, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self._by_id(cmd.id)
        try:
            shard.ack(cmd.id, cmd.result, now_ms())
        finally:
            self._after(shard)
        if cmd.worker is not None:
            self.processed[cmd.worker] = self.processed.get(cmd.worker, 0) + 1
        return self._durable({"ok": True})

    def ack_batch(self, ids: list[int]) -> Reply | Pending[Result]:
        """The local part of an ACKB: {"ok": True, "ids": [count]}."""
        by_shard: dict[int, list[int]] = {}
        for i in ids:
            by_shard.setdefault(shard_of_id(i), []).append(i)
        n = 0
        now = now_ms()
        for idx, part in by_shard.items():
            s = self.shards.get(idx)
            if s is None:
                continue
            n += s.ack_batch(part, now)
            self._after(s)
        return self._durable({"ok": True, "ids": [n]})

    def _fail(self, cmd: c.Fail, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self._by_id(cmd.id)
        try:
            shard.fail(cmd.id, cmd.error, now_ms())
        finally:
            self._after(shard)
        return self._durable({"ok": True})

    def _get_job(self, cmd: c.GetJob, ctx: Ctx) -> Reply:
        job, state = self._by_id(cmd.id).get_job(cmd.id)
        return {"ok": True, "job": None if job is None else job_to_wire(job), "state": state}

    def _get_state(self, cmd: c.GetState, ctx: Ctx) -> Reply:
        return {"ok": True, "id": cmd.id, "state": self._by_id(cmd.id).get_state(cmd.id)}

    def _get_result(self, cmd: c.GetResult, ctx: Ctx) -> Reply:
        raw = self._by_id(cmd.id).get_result(cmd.id)
        return {"ok": True, "id": cmd.id, "result": None if raw is None else Fragment(raw)}

    def _cancel(self, cmd: c.Cancel, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self._by_id(cmd.id)
        try:
            shard.cancel(cmd.id, now_ms())
        finally:
            self._after(shard)
        return self._durable({"ok": True})

    def _progress(self, cmd: c.Progress, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self._by_id(cmd.id)
        try:
            shard.progress(cmd.id, cmd.progress, cmd.message, now_ms())
        finally:
            self._after(shard)
        return self._durable({"ok": True})

    def _get_progress(self, cmd: c.GetProgress, ctx: Ctx) -> Reply:
        pct, msg = self._by_id(cmd.id).get_progress(cmd.id)
        return {"ok": True, "progress": {"id": cmd.id, "progress": pct, "message": msg}}

    # ------------------------------------------------------------ queues

    def _dlq(self, cmd: c.Dlq, ctx: Ctx) -> Reply:
        jobs = self.shard_for_queue(cmd.queue).dlq(cmd.queue, cmd.count)
        return {"ok": True, "jobs": [job_to_wire(j) for j in jobs]}

    def _retry_dlq(self, cmd: c.RetryDlq, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self.shard_for_queue(cmd.queue)
        try:
            n = shard.retry_dlq(cmd.queue, cmd.id, now_ms())
        finally:
            self._after(shard)
        return self._durable({"ok": True, "ids": [n]})

    def _queue_setting(self, cmd: Any, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self.shard_for_queue(cmd.queue)
        t = type(cmd)
        if t is c.Pause:
            shard.pause(cmd.queue)
        elif t is c.Resume:
            shard.resume(cmd.queue)
        elif t is c.RateLimit:
            shard.set_rate_limit(cmd.queue, cmd.limit, now_ms())
        elif t is c.RateLimitClear:
            shard.set_rate_limit(cmd.queue, None, now_ms())
        elif t is c.SetConcurrency:
            shard.set_concurrency(cmd.queue, cmd.limit)
        else:
            shard.set_concurrency(cmd.queue, None)
        self._after(shard)
        return self._durable({"ok": True})

    # ------------------------------------------------------------ cron and workers

    def _cron(self, cmd: c.Cron, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self.shards[shard_of_name(cmd.cron_name)]
        shard.cron_add(cmd.cron_name, cmd.queue, cmd.data, cmd.schedule, cmd.priority, now_ms())
        self._after(shard)
        return self._durable({"ok": True})

    def _cron_delete(self, cmd: c.CronDelete, ctx: Ctx) -> Reply | Pending[Result]:
        shard = self.shards[shard_of_name(cmd.cron_name)]
        shard.cron_delete(cmd.cron_name)
        self._after(shard)
        return self._durable({"ok": True})

    def _heartbeat(self, cmd: c.Heartbeat, ctx: Ctx) -> Reply:
        self.workers[cmd.worker_id] = WorkerEntry(
            cmd.worker_id, list(cmd.queues), cmd.concurrency, now_ms()
        )
        return {"ok": True}

    # ------------------------------------------------------------ scatter parts

    def part(self, name: str, args: Any) -> Any:
        """This worker's share of a command that spans every shard (plain msgpack values)."""
        now = now_ms()
        shards = list(self.shards.values())
        if name == "stats":
            return merge_stats(s.stats() for s in shards)
        if name == "metrics":
            return [s.metrics(now) for s in shards]
        if name == "queues":
            return [q for s in shards for q in s.queue_infos()]
        if name == "crons":
            return [
                [e.name, e.queue, e.data, e.schedule.text, e.priority, e.next_run]
                for s in shards
                for e in s.crons.values()
            ]
        if name == "histograms":
            out = [h for s in shards for h in s.histograms()]
            for h in out:
                h["parked_pulls"] = sum(not w.done for w in self.waiters.get(h["name"], ()))
            return out
        if name == "ackb":
            return self.ack_batch(list(args))
        if name == "watch":
            parents, watcher = args
            return self.watch(parents, watcher)
        if name == "listjobs":
            queue, state, limit = args
            if queue is not None:
                shards = (
                    [self.shard_for_queue(queue)] if shard_of_name(queue) in self.shards else []
                )
            rows = []
            for s in shards:
                for job, st in s.list_jobs(queue, state, limit):
                    rows.append([job.created_at, job.id, _job_json(job, st)])
            return rows
        if name == "workers":
            horizon = now - self.worker_ttl_ms
            live = [
                [w.id, w.queues, w.concurrency, w.last_heartbeat]
                for w in self.workers.values()
                if w.last_heartbeat >= horizon
            ]
            return [live, self.processed]
        raise InvalidRequest(f"unknown part {name}")

    # ------------------------------------------------------------ time

    def _rearm(self, t: int) -> None:
        self._timer_at = t
        scope = self._scope
        if scope is not None:
            scope.deadline = trio.current_time() + max(0, t - now_ms()) / 1000.0

    async def run_timer(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Wake exactly when the earliest local deadline is due; nothing polls."""
        self._timer_at = min([s.wake_at for s in self.shards.values()] + [NEVER])
        task_status.started()
        while True:
            now = now_ms()
            if self._timer_at <= now:
                self.tick(now)
                await trio.lowlevel.checkpoint()
                continue
            wait = (self._timer_at - now) / 1000.0 if self._timer_at < NEVER else float("inf")
            with trio.CancelScope(deadline=trio.current_time() + wait) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None

    def tick(self, now: int) -> None:
        for s in self.shards.values():
            if s.wake_at <= now:
                s.tick(now)
        self._settle()
        self._expire_waiters(now)
        nxt = min(s.wake_at for s in self.shards.values())
        if self._waiter_heap:
            nxt = min(nxt, self._waiter_heap[0][0])
        self._timer_at = nxt


def merge_parts(kind: str, parts: list[Any], args: Any = None) -> Reply:
    """Combine the `part()` answers of every worker into the client's reply."""
    if kind == "stats":
        return {"ok": True, **merge_stats(parts)}
    if kind == "metrics":
        return {"ok": True, "metrics": merge_metrics(p for part in parts for p in part)}
    if kind == "queues":
        qs = sorted((q for part in parts for q in part), key=lambda q: q["name"])
        return {"ok": True, "queues": qs}
    if kind == "crons":
        rows = sorted((r for part in parts for r in part), key=lambda r: r[0])
        return {
            "ok": True,
            "crons": [
                {
                    "name": r[0],
                    "queue": r[1],
                    "data": Fragment(r[2]),
                    "schedule": r[3],
                    "priority": r[4],
                    "next_run": r[5],
                }
                for r in rows
            ],
        }
    if kind == "ackb":
        return {"ok": True, "ids": [sum(p["ids"][0] for p in parts)]}
    if kind == "histograms":
        return {"ok": True, "queues": [h for part in parts for h in part]}
    if kind == "listjobs":
        offset, limit = args
        rows = sorted((r for part in parts for r in part), key=lambda r: (r[0], r[1]), reverse=True)
        return {"ok": True, "jobs": [Fragment(r[2]) for r in rows[offset : offset + limit]]}
    if kind == "workers":
        processed: dict[str, int] = {}
        entries: dict[str, list[Any]] = {}
        for live, counts in parts:
            for wid, n in counts.items():
                processed[wid] = processed.get(wid, 0) + n
            for e in live:
                entries[e[0]] = e
        return {
            "ok": True,
            "workers": [
                {
                    "id": e[0],
                    "queues": e[1],
                    "concurrency": e[2],
                    "last_heartbeat": e[3],
                    "jobs_processed": processed.get(e[0], 0),
                }
                for e in sorted(entries.values(), key=lambda e: e[0])
            ],
        }
    raise ValueError(kind)


SCATTER_KIND: dict[type[c.Command], str] = {
    c.Stats: "stats",
    c.Metrics: "metrics",
    c.ListQueues: "queues",
    c.CronList: "crons",
    c.AckBatch: "ackb",
    c.QueueHistograms: "histograms",
    c.ListJobs: "listjobs",
    c.ListWorkers: "workers",
}

__all__ = ["SCATTER_KIND", "Ctx", "Result", "ShardHost", "merge_parts", "now_ms"]
