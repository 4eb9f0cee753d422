"""Start-up work on asyncpg: migrations and recovery.

Every function here runs on the bridge's asyncio thread (`shard.persistence.bridge`), reached
from trio with `await bridge.run(store.method, ...)`. It is used once, before the worker serves
anyone; asyncpg decodes the recovered rows. Commits, which happen all the time, go over the
trio-native connection instead (shard.persistence.pgwire, .commit).

Migrations run under a transaction-scoped advisory lock, so several workers starting at once
apply them exactly once: the first takes the lock and migrates, the others wait and then find
the schema current.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from shard.persistence.sql import latest_version, migrations, q, schema

APPLICATION_NAME = "magicqueue"  # how our sessions show in pg_stat_activity
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0


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
            },
        )

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await conn.close(timeout=1.0)
            except Exception:
                conn.terminate()

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
