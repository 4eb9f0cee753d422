"""The asyncio side of persistence: everything that touches asyncpg.

Every function here runs on the bridge's asyncio thread (`shard.persistence.bridge`), reached
from trio with `await bridge.run(store.method, ...)`. One connection per worker: commits are
serial by design (group commit makes each one carry everything that accumulated meanwhile), and
a single connection keeps the order of writes equal to the order of changes.

Migrations run under a transaction-scoped advisory lock, so several workers starting at once
apply them exactly once: the first takes the lock and migrates, the others wait and then find
the schema current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from shard.persistence.sql import latest_version, migrations, q, schema

JOB_COLUMNS = ("id", "shard", "queue", "state", "record")
DONE_COLUMNS = ("id", "shard", "result", "completed_at")
# The parts of a commit statement, in the order they appear (see sql/queries.sql), with the
# number of parallel arrays each takes.
_PARTS = (
    ("gone_jobs", 1),
    ("gone_done", 1),
    ("put_jobs", len(JOB_COLUMNS)),
    ("put_done", len(DONE_COLUMNS)),
    ("put_queues", 5),
    ("put_crons", 7),
    ("gone_crons", 1),
    ("put_shards", 8),
)
_WIDTH = dict(_PARTS)

APPLICATION_NAME = "magicqueue"  # how our sessions show in pg_stat_activity
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0


# A commit with at most this many job/done rows goes out as ONE statement (one round trip);
# larger ones use COPY, which costs more round trips but ~5x less per row.
SMALL_BATCH_ROWS = 256


@dataclass(slots=True)
class Batch:
    """Everything one commit writes. Built on the trio thread from the shards' dirty sets.

    `gone_*`: ids whose row must go. `jobs`/`done`: rows to upsert. `stored_*`: the ids among
    those rows that may already have a row (the COPY path deletes them first; new ids, above the
    shard's last committed sequence, cannot).
    """

    gone_jobs: list[int] = field(default_factory=list)
    gone_done: list[int] = field(default_factory=list)
    jobs: list[tuple[Any, ...]] = field(default_factory=list)
    stored_jobs: list[int] = field(default_factory=list)
    done: list[tuple[Any, ...]] = field(default_factory=list)
    stored_done: list[int] = field(default_factory=list)
    queues: list[tuple[Any, ...]] = field(default_factory=list)
    crons: list[tuple[Any, ...]] = field(default_factory=list)
    cron_deletes: list[str] = field(default_factory=list)
    shards: list[tuple[Any, ...]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.gone_jobs
            or self.gone_done
            or self.jobs
            or self.done
            or self.queues
            or self.crons
            or self.cron_deletes
            or self.shards
        )

    def rows(self) -> int:
        return len(self.jobs) + len(self.done) + len(self.gone_jobs)


@dataclass(slots=True)
class Loaded:
    shards: list[Any]
    max_ids: list[Any]
    queues: list[Any]
    done: list[Any]
    jobs: list[Any]
    crons: list[Any]


class Store:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn: Any = None

    async def connect(self) -> None:
        await self.close()
        self.conn = await asyncpg.connect(
            self.dsn,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S,
            server_settings={
                "application_name": APPLICATION_NAME,
                # Our statements are few and their plans never depend on the values: planning
                # them again on every commit doubled PostgreSQL's CPU per commit (measured).
                "plan_cache_mode": "force_generic_plan",
            },
        )

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await conn.close(timeout=1.0)
            except Exception:
                conn.terminate()

    async def ping(self) -> None:
        await self.conn.fetchval("SELECT 1")

    async def migrate(self) -> int:
        """Bring the schema to the latest version; returns the version found before."""
        conn = self.conn
        async with conn.transaction():
            await conn.execute(q("migration_lock"))
            if not await conn.fetchval(q("has_schema_table")):
                await conn.execute(schema())
                await conn.execute(q("init_schema_version"), latest_version())
                return 0
            found: int = await conn.fetchval(q("schema_version"))
            for version, sql in migrations():
                if version > found:
                    await conn.execute(sql)
                    await conn.execute(q("set_schema_version"), version)
            return found

    async def load(self, shards: list[int], done_since: int) -> Loaded:
        conn = self.conn
        await conn.execute(q("prune_done"), shards, done_since)
        return Loaded(
            shards=await conn.fetch(q("load_shards"), shards),
            max_ids=await conn.fetch(q("max_ids"), shards),
            queues=await conn.fetch(q("load_queues"), shards),
            done=await conn.fetch(q("load_done"), shards, done_since),
            jobs=await conn.fetch(q("load_jobs"), shards),
            crons=await conn.fetch(q("load_crons"), shards),
        )

    async def write(self, b: Batch) -> None:
        """One transaction: after it returns, every change in `b` is durable."""
        conn = self.conn
        if len(b.jobs) + len(b.done) <= SMALL_BATCH_ROWS:
            sql, args = _statement(
                {
                    "gone_jobs": [b.gone_jobs],
                    "gone_done": [b.gone_done],
                    "put_jobs": _columns(b.jobs),
                    "put_done": _columns(b.done),
                    "put_queues": _columns(b.queues),
                    "put_crons": _columns(b.crons),
                    "gone_crons": [b.cron_deletes],
                    "put_shards": _columns(b.shards),
                }
            )
            if sql:
                await conn.execute(sql, *args)
            return
        async with conn.transaction():
            gone = b.gone_jobs + b.stored_jobs
            if gone:
                await conn.execute(q("delete_jobs"), gone)
            gone = b.gone_done + b.stored_done
            if gone:
                await conn.execute(q("delete_done"), gone)
            if b.jobs:
                await conn.copy_records_to_table("mq_jobs", records=b.jobs, columns=JOB_COLUMNS)
            if b.done:
                await conn.copy_records_to_table("mq_done", records=b.done, columns=DONE_COLUMNS)
            sql, args = _statement(
                {
                    "put_queues": _columns(b.queues),
                    "put_crons": _columns(b.crons),
                    "gone_crons": [b.cron_deletes],
                    "put_shards": _columns(b.shards),
                }
            )
            if sql:
                await conn.execute(sql, *args)


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows to parallel arrays for `unnest` (no rows: no arrays, the part is left out)."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else []


_composed: dict[tuple[str, ...], str] = {}


def _statement(parts: dict[str, list[list[Any]]]) -> tuple[str, list[Any]]:
    """One `WITH ... SELECT 1` statement of the parts that have rows, and its arguments.

    A push commit binds 7 values and an ack commit 7, instead of all 48 of every part: binding
    empty arrays cost a third of the client's CPU per commit (measured). The statement text for
    each combination of parts is built once.
    """
    names: list[str] = []
    args: list[Any] = []
    for name, width in _PARTS:
        cols = parts.get(name)
        if cols and cols[0]:
            assert len(cols) == width
            names.append(name)
            args.extend(cols)
    if not names:
        return "", []
    key = tuple(names)
    sql = _composed.get(key)
    if sql is None:
        pieces = []
        n = 1
        for name in names:
            width = _WIDTH[name]
            pieces.append(q(f"part_{name}").format(*range(n, n + width)))
            n += width
        sql = _composed[key] = "WITH " + ",\n".join(pieces) + "\nSELECT 1"
    return sql, args
