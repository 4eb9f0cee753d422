"""PostgreSQL persistence: acknowledged means committed, and a restart loses nothing.

- `sql.py`      the SQL, kept as named statements and versioned migrations in `sql/`.
- `bridge.py`   asyncpg is asyncio-only: it runs on one dedicated asyncio thread per worker,
                and this is the only module where trio and asyncio meet.
- `store.py`    the asyncio side: connect, migrate, load a shard's rows, write one batch.
- `writer.py`   the trio side: recovery into the shard cores at start, then group commit:
                every change since the last commit is written in one transaction, and the
                replies that wait for it are released together.
"""
