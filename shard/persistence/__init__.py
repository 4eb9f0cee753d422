"""PostgreSQL persistence: acknowledged means committed, and a restart loses nothing.

- `sql.py`      the SQL, kept as named statements and versioned migrations in `sql/`.
- `bridge.py`   asyncpg is asyncio-only: at start it runs on a dedicated asyncio thread, and
                this is the only module where trio and asyncio meet.
- `store.py`    the asyncpg side, used once at start: connect, migrate, load a shard's rows.
- `pgwire.py`   a PostgreSQL connection driven by trio itself, for commits: one pipeline, one
                round trip, no thread hop.
- `commit.py`   one commit: the statements (or COPY) a batch of changed rows needs.
- `writer.py`   the trio side: recovery into the shard cores at start, then group commit:
                every change since the last commit is written in one transaction, and the
                replies that wait for it are released together.
"""
