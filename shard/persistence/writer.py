"""Persistence, trio side: recovery at start, then group commit.

**Durable means committed.** The shard cores mark what every operation changes (job ids, queue
settings, cron names). A mutating command's reply waits on `commit()`, which resolves only after
a transaction containing that change has committed. One writer task per worker runs the loop:

    wait for changes -> take every shard's dirty sets (a snapshot of the *current* state of each
    changed job, read on the trio thread, so it is consistent) -> one transaction, one round trip
    (shard.persistence.commit) -> resolve every reply that was waiting when the snapshot was taken

Everything that arrives while a transaction is in flight goes into the next one, so commits
carry more rows as load grows and throughput scales with concurrency (group commit). Commits go
over a PostgreSQL connection driven by trio itself (shard.persistence.pgwire): crossing to an
asyncio thread for each one cost more CPU than the commit (measured; see that module).

Pulls, timers and cron firings change state without a waiting reply; they only wake the writer
(`poke`), so an active job is stored as active and comes back after a crash as a job to retry.

**The shard row** (`mq_shards`: id sequence and counters) is not rewritten by every commit: that
second statement cost a sequential push ~30% of its latency (measured). Its `seq` is a
reservation: when a shard's sequence passes the stored bound, the same commit that carries the
new ids stores `seq + SEQ_BLOCK`, so a restart continues above every id ever handed out (ids skip
ahead by up to a block at each restart, and are never reused). The counters ride along with any
shard-row write and are otherwise flushed about `TOTALS_EVERY_S` after they change (checked every
`TICK_S`), and at stop: a clean restart keeps them exact; a crash can lose the last second or so
of counts, never a job.

**Faults.** A failed or timed-out commit marks the store unhealthy: the replies waiting on it
answer `Persistence unavailable` (never ok), their changes stay dirty (memory and database
converge once it is back), and from then on mutating commands are refused before they change
anything. Reads keep answering. The writer reconnects by itself with capped backoff; when a
connection works again everything still dirty is written and mutations are accepted again.
No worker exits because of the database.

**Recovery** (before the worker serves anyone, on asyncpg through the bridge thread, which stops
afterwards): migrate, load the rows of this worker's shards,
rebuild each core (waiting, delayed, active -> failed as `Worker connection lost`,
waiting-children, DLQ in arrival order, results, unique keys, crons with their next run, queue
settings, counters, and each shard's id sequence, so ids are never reused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from proto.errors import PersistenceUnavailable, QueueError
from shard.core import TOTALS, Shard
from shard.pending import Pending
from shard.persistence import commit
from shard.persistence.bridge import AsyncioThread
from shard.persistence.commit import Batch
from shard.persistence.pgwire import Connection, parse_dsn
from shard.persistence.records import pack, unpack
from shard.persistence.store import APPLICATION_NAME, CONNECT_TIMEOUT_S, Store
from shard.routing import NUM_SHARDS
from shard.runtime import SEQ_BLOCK, now_ms

if TYPE_CHECKING:
    from shard.runtime import ShardHost

log = logging.getLogger("magicqueue.persistence")

RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 2.0
STARTUP_WAIT_S = 30.0  # how long a starting worker waits for the database to appear
TOTALS_EVERY_S = 1.0  # counters that changed are written about this often
TICK_S = 0.5  # how often the commit timeout and the counters' flush are checked


class Persistence:
    def __init__(self, host: ShardHost, dsn: str, commit_timeout_s: float) -> None:
        self.host = host
        self.store = Store(dsn)
        self.bridge = AsyncioThread(f"asyncpg-{min(host.shards, default=0)}")
        # Our statements are few and their plans never depend on the values: planning them
        # again on every commit doubled PostgreSQL's CPU per commit (measured).
        self.params = parse_dsn(
            dsn, {"application_name": APPLICATION_NAME, "plan_cache_mode": "force_generic_plan"}
        )
        self.conn: Connection | None = None
        self.healthy = False
        self.commits = 0
        self.failures = 0
        self._waiters: list[Pending[QueueError | None]] = []
        self._wake = trio.Event()
        self._committed_seq: dict[int, int] = {}
        self._reserved: dict[int, int] = {}  # shard -> the seq bound stored in its row
        self._stored_totals: dict[int, tuple[int, ...]] = {}  # shard -> counters in its row
        self._totals_written_at = 0.0  # trio clock
        self._totals_pending: set[int] = set()  # shards whose changed counters wait
        self._flight: _Flight | None = None  # the commit on the wire
        self.commit_timeout_s = commit_timeout_s  # COMMIT_TIMEOUT_MS (cluster.config)
        self._scope = trio.CancelScope()  # the writer's; `_tick` cancels a commit that hangs
        self._stopping = False
        self._stopped = trio.Event()

    # ------------------------------------------------------------ Durability (for ShardHost)

    def commit(self) -> Pending[QueueError | None]:
        p: Pending[QueueError | None] = Pending()
        self._waiters.append(p)
        if self._flight is None and self.healthy and not self._stopping:
            self._begin()  # nothing in flight: this change goes on the wire right now
        self._wake.set()
        return p

    def poke(self) -> None:
        self._wake.set()

    # ------------------------------------------------------------ service

    async def start(self, nursery: trio.Nursery) -> None:
        """Connect, migrate and recover; return once the shards hold their stored state."""
        self.bridge.start()
        try:
            await self._connect_at_start()
            found = await self.bridge.run(self.store.migrate)
            if found:
                log.info("schema migrated from version %d", found)
            await self._recover()
            await self._open()
        finally:
            await self.bridge.run(self.store.close)
            self.bridge.stop()
        self.healthy = True
        self.host.durability = self
        nursery.start_soon(self._run)
        nursery.start_soon(self._tick)

    async def stop(self) -> None:
        """Have the writer write what is still dirty (bounded), then close."""
        self._stopping = True
        self._wake.set()
        with trio.move_on_after(self.commit_timeout_s):
            await self._stopped.wait()
        if self.conn is not None:
            self.conn.close()

    async def _connect_at_start(self) -> None:
        delay = RECONNECT_MIN_S
        with trio.fail_after(STARTUP_WAIT_S):
            while True:
                try:
                    await self.bridge.run(self.store.connect)
                    return
                except Exception as e:
                    log.warning("database not reachable yet (%s); retrying", e)
                    await trio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)

    async def _open(self) -> None:
        """A fresh commit connection (the old one, if any, is closed), checked with a ping."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        conn = await Connection.connect(self.params, CONNECT_TIMEOUT_S)
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await conn.simple("SELECT 1")
        self.conn = conn

    # ------------------------------------------------------------ recovery

    async def _recover(self) -> None:
        host = self.host
        shards = sorted(host.shards)
        now = now_ms()
        horizon = now - host.config.completed_ttl_ms
        data = await self.bridge.run(self.store.load, shards, horizon)
        by_index = host.shards
        for r in data.shards:
            by_index[r["shard"]].restore_meta(r["seq"], dict(r))
            self._reserved[r["shard"]] = r["seq"]
        for r in data.max_ids:
            s = by_index[r["shard"]]
            s.seq = max(s.seq, int(r["max_id"]) // NUM_SHARDS)
        for r in data.queues:
            by_index[r["shard"]].restore_queue(
                r["name"], r["paused"], r["rate_limit"], r["concurrency"], now
            )
        for r in data.done:
            by_index[r["shard"]].restore_done(r["id"], r["result"], r["completed_at"])
        for r in data.jobs:
            by_index[r["shard"]].restore_job(unpack(r), now)
        for r in data.crons:
            by_index[r["shard"]].restore_cron(
                r["name"], r["queue"], bytes(r["data"]), r["schedule"], r["priority"],
                r["next_run"], now,
            )  # fmt: skip
        for s in by_index.values():
            s.finish_restore(now)
            self._committed_seq[s.index] = s.seq
            self._stored_totals[s.index] = _totals(s)
        log.info(
            "recovered %d jobs, %d completed ids, %d queues, %d crons for shards %s",
            len(data.jobs), len(data.done), len(data.queues), len(data.crons), shards,
        )  # fmt: skip
        host.after_restore()

    # ------------------------------------------------------------ group commit

    # A commit has two halves. `_begin` (synchronous) takes the snapshot and puts the pipeline
    # on the wire; `_end` (the writer task) reads PostgreSQL's answer and resolves the replies
    # that waited for it. A reply that finds nothing in flight begins its commit itself, inside
    # the request that made the change, before the writer task is even scheduled (that hop was
    # ~15% of a sequential durable push, measured). Replies that come while a commit is in
    # flight wait for the next one, which the writer begins as soon as that one ends.
    #
    # The writer's loop enters no cancel scope per commit (each cost as much as encoding a
    # one-job commit, measured): the commit timeout and the counters' flush are checked by
    # `_tick` twice a second, which cancels the writer's one long-lived scope when a commit
    # overstays.

    async def _run(self) -> None:
        while True:
            with trio.CancelScope() as self._scope:
                await self._loop()
                return
            # `_tick` cancelled a commit that took too long; the connection closed itself
            f, self._flight = self._flight, None
            if f is not None:
                self._failed(TimeoutError("commit timed out"), f.waiters, f.taken)

    async def _tick(self) -> None:
        while not self._stopped.is_set():
            await trio.sleep(TICK_S)
            now = trio.current_time()
            f = self._flight
            if f is not None and now - f.started > self.commit_timeout_s:
                self._scope.cancel()
            if self._totals_pending and now >= self._totals_written_at + TOTALS_EVERY_S:
                self._wake.set()

    async def _loop(self) -> None:
        delay = RECONNECT_MIN_S
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self._flight is not None:
                await self._end()
                if not self._stopping:
                    continue  # whatever came meanwhile has set `_wake` again
            if self._stopping:
                if self.healthy:
                    self._begin(final=True)
                    if self._flight is not None:
                        await self._end()
                self._stopped.set()
                return
            if not self.healthy:
                try:
                    await self._open()
                except Exception as e:
                    log.warning("database still unavailable (%s)", e)
                    self._fail_waiters()
                    await trio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
                    self._wake.set()
                    continue
                delay = RECONNECT_MIN_S
                log.warning("database reachable again: writing what was held back")
            self._begin()
            if self._flight is not None:
                await self._end()

    def _begin(self, final: bool = False) -> None:
        waiters, self._waiters = self._waiters, []
        batch, taken = self._snapshot(final)
        if not batch:
            self.healthy = True
            for w in waiters:
                w.resolve(None)
            return
        try:
            conn = self.conn
            if conn is None or conn.closed:
                raise ConnectionError("no database connection")
            conn.start(commit.build(conn, batch))
        except Exception as e:
            self._failed(e, waiters, taken)
            return
        self._flight = _Flight(waiters, batch, taken, trio.current_time())

    async def _end(self) -> None:
        f = self._flight
        assert f is not None and self.conn is not None
        try:
            await self.conn.finish()  # bounded by `_tick`
        except Exception as e:
            self._flight = None
            self._failed(e, f.waiters, f.taken)
            return
        self._flight = None
        self.healthy = True
        self.commits += 1
        batch, taken = f.batch, f.taken
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "commit: %d job rows, %d done rows, %d gone, %d replies waited, %.2f ms",
                len(batch.jobs), len(batch.done), len(batch.gone_jobs), len(f.waiters),
                (trio.current_time() - f.started) * 1000,
            )  # fmt: skip
        for index, seq in taken.seqs.items():
            self._committed_seq[index] = seq
        for index, reserved, totals in batch.shards_written():
            self._reserved[index] = reserved
            self._stored_totals[index] = totals
        if taken.totals_flushed:
            self._totals_written_at = trio.current_time()
        for w in f.waiters:
            w.resolve(None)

    def _failed(
        self, e: Exception, waiters: list[Pending[QueueError | None]], taken: _Taken
    ) -> None:
        self.failures += 1
        if self.healthy:
            log.error("commit failed, persistence unavailable: %r", e)
        self.healthy = False
        self._give_back(taken)
        # The transaction may still commit on the server (a timed-out one, say): its new ids
        # may have rows now, so the next commit deletes before it copies them.
        for index, seq in taken.seqs.items():
            self._committed_seq[index] = max(self._committed_seq.get(index, 0), seq)
        for w in waiters:
            w.resolve(PersistenceUnavailable())
        self._fail_waiters()
        self._wake.set()  # try to reconnect and write it again

    def _fail_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.resolve(PersistenceUnavailable())

    def _snapshot(self, final: bool = False) -> tuple[Batch, _Taken]:
        b = Batch()
        taken = _Taken()
        now = now_ms()
        flush_totals = final or trio.current_time() >= self._totals_written_at + TOTALS_EVERY_S
        pending, self._totals_pending = self._totals_pending, set()
        for s in self.host.shards.values():
            dirty = s.dirty
            idx = s.index
            changed_any = bool(dirty or s.dirty_queues or s.dirty_crons)
            if not (changed_any or idx in pending):
                continue  # counters only change with a job, and a changed job is dirty
            reserve = s.seq > self._reserved.get(idx, 0)
            if reserve or flush_totals:
                totals = _totals(s)
                changed = totals != self._stored_totals.get(idx)
                if reserve or changed:  # this commit writes the shard row
                    bound = s.seq + SEQ_BLOCK if reserve else self._reserved.get(idx, 0)
                    b.shards.append((idx, bound, *totals))
                    taken.totals_flushed |= changed
            else:
                self._totals_pending.add(idx)  # compared with the stored ones when due
            if not changed_any:
                continue
            s.dirty = set()
            dq, s.dirty_queues = s.dirty_queues, set()
            dc, s.dirty_crons = s.dirty_crons, set()
            taken.add(s, dirty or set(), dq, dc)
            committed = self._committed_seq.get(idx, 0)
            jobs = s.jobs
            done = s.done
            for jid in dirty or ():
                maybe_stored = jid // NUM_SHARDS <= committed
                job = jobs.get(jid)
                if job is not None:
                    b.jobs.append(_job_row(s, job))
                    if maybe_stored:
                        b.stored_jobs.append(jid)
                elif jid in done:
                    b.done.append((jid, idx, done[jid], now))
                    if maybe_stored:
                        b.gone_jobs.append(jid)
                        b.stored_done.append(jid)
                elif maybe_stored:
                    b.gone_jobs.append(jid)
                    b.gone_done.append(jid)
            for name in dq:
                qu = s.queues.get(name)
                if qu is not None:
                    b.queues.append((name, idx, qu.paused, qu.rate_limit, qu.concurrency))
            for name in dc:
                c = s.crons.get(name)
                if c is None:
                    b.cron_deletes.append(name)
                else:
                    b.crons.append(
                        (name, idx, c.queue, c.data, c.schedule.text, c.priority, c.next_run)
                    )
            taken.seqs[idx] = s.seq
        return b, taken

    def _give_back(self, taken: _Taken) -> None:
        """A commit failed: what it carried is dirty again, to be written on reconnect."""
        for s, dirty, dq, dc in taken.items:
            if s.dirty is not None:
                s.dirty |= dirty
            s.dirty_queues |= dq
            s.dirty_crons |= dc


@dataclass(slots=True)
class _Flight:
    """The commit on the wire: whose replies wait for it, what it writes, since when."""

    waiters: list[Pending[QueueError | None]]
    batch: Batch
    taken: _Taken
    started: float


class _Taken:
    __slots__ = ("items", "seqs", "totals_flushed")

    def __init__(self) -> None:
        self.items: list[tuple[Shard, set[int], set[str], set[str]]] = []
        self.seqs: dict[int, int] = {}
        self.totals_flushed = False

    def add(self, s: Shard, dirty: set[int], dq: set[str], dc: set[str]) -> None:
        self.items.append((s, dirty, dq, dc))


def _totals(s: Shard) -> tuple[int, ...]:
    return tuple(getattr(s, k) for k in TOTALS)


def _job_row(s: Shard, job: Any) -> tuple[Any, ...]:
    """The stored row of a live job: (id, shard, queue, state, record); see records.py."""
    pending = s.pending_deps.get(job.id)
    q = job.q
    record = pack(
        [
            job.data,
            job.priority,
            job.created_at,
            job.run_at,
            job.started_at,
            job.attempts,
            job.max_attempts,
            job.backoff,
            job.ttl,
            job.timeout,
            job.unique_key,
            job.depends_on,
            sorted(pending) if pending else (),
            job.progress,
            job.progress_msg,
            job.tags,
            q.dlq.get(job.id, 0),
        ]
    )
    return (job.id, s.index, q.name, job.state, record)
