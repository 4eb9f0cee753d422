"""The trio-native PostgreSQL client against the real server: startup, pipelines as one
transaction, prepared statements after errors, COPY, and connections that die or are cancelled."""

from __future__ import annotations

import struct

import pytest
import trio

from shard.persistence.pgwire import (
    BYTEA,
    INT4,
    INT8,
    TEXT,
    Connection,
    PgConnectionError,
    PgError,
    copy_rows,
    encode_array,
    parse_dsn,
)
from tests.pg.conftest import dsn, psql

INSERT = "INSERT INTO pw SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::int[])"
OIDS = [INT8.array_oid, TEXT.array_oid, BYTEA.array_oid, INT4.array_oid]
COPY = "COPY pw (id, name, data, n) FROM STDIN (FORMAT binary)"
TYPES = (INT8, TEXT, BYTEA, INT4)


def rows_args(rows: list[tuple[object, ...]]) -> list[bytes]:
    return [encode_array(t, [r[i] for r in rows]) for i, t in enumerate(TYPES)]


async def connect(database: str) -> Connection:
    return await Connection.connect(parse_dsn(dsn(database), {"application_name": "pgwire-test"}))


@pytest.fixture
def table(database: str) -> str:
    psql("DROP TABLE IF EXISTS pw; CREATE TABLE pw (id bigint PRIMARY KEY, name text, "
         "data bytea, n int)", database)  # fmt: skip
    return database


async def test_startup_reports_the_server_and_names_the_session(table: str) -> None:
    conn = await connect(table)
    try:
        assert conn.server["server_version"].split(".")[0].isdigit()
        assert conn.backend_pid > 0
        await conn.simple("SELECT 1")
        seen = psql(f"SELECT application_name FROM pg_stat_activity WHERE pid = {conn.backend_pid}")
        assert seen == "pgwire-test"
    finally:
        conn.close()
    assert conn.closed


async def test_pipeline_values_round_trip(table: str) -> None:
    conn = await connect(table)
    try:
        rows: list[tuple[object, ...]] = [(1, "héllo", b"\x00\x01\xff", None), (2, "", b"", -7)]
        copied = [(10 + i, f"c{i}", bytes([i % 256]) * i, i) for i in range(300)]
        p = conn.pipeline().execute(INSERT, OIDS, rows_args(rows))
        await conn.run(p.copy_in(COPY, copy_rows(TYPES, copied)))
    finally:
        conn.close()
    got = psql("SELECT id, name, encode(data, 'hex'), coalesce(n, -1) FROM pw WHERE id < 3 "
               "ORDER BY id", table)  # fmt: skip
    assert got.splitlines() == ["1|héllo|0001ff|-1", "2|||-7"]
    assert psql("SELECT count(*), sum(n), max(length(data)) FROM pw WHERE id >= 10", table) == (
        f"300|{sum(range(300))}|299"
    )


async def test_an_error_rolls_back_the_whole_pipeline(table: str) -> None:
    conn = await connect(table)
    try:
        await conn.run(conn.pipeline().execute(INSERT, OIDS, rows_args([(1, "a", b"", 1)])))
        # first statement fine, the COPY hits a duplicate key: nothing of the pipeline stays
        p = conn.pipeline().execute(INSERT, OIDS, rows_args([(2, "b", b"", 2)]))
        p.copy_in(COPY, copy_rows(TYPES, [(3, "c", b"", 3), (1, "dup", b"", 0)]))
        with pytest.raises(PgError) as err:
            await conn.run(p)
        assert err.value.code == "23505"  # unique_violation
        assert psql("SELECT array_agg(id ORDER BY id) FROM pw", table) == "{1}"
        # the connection is still good, and a statement first sent after the failure point
        # (so never parsed by the server) is parsed again rather than assumed prepared
        late = "UPDATE pw SET n = n + $1 WHERE id = $2"
        p = conn.pipeline().execute("SELECT 1/0", [], [])
        p.execute(late, [INT4.oid, INT8.oid], [struct.pack("!ii", 4, 1), struct.pack("!iq", 8, 1)])
        with pytest.raises(PgError, match="division by zero"):
            await conn.run(p)
        assert late not in conn.prepared
        p = conn.pipeline().execute(
            late, [INT4.oid, INT8.oid], [struct.pack("!ii", 4, 10), struct.pack("!iq", 8, 1)]
        )
        await conn.run(p)
        assert psql("SELECT n FROM pw WHERE id = 1", table) == "11"
    finally:
        conn.close()


async def test_a_killed_connection_raises_and_stays_closed(table: str) -> None:
    conn = await connect(table)
    psql(f"SELECT pg_terminate_backend({conn.backend_pid})")
    with pytest.raises((PgConnectionError, PgError)):
        await conn.run(conn.pipeline().execute(INSERT, OIDS, rows_args([(1, "a", b"", 1)])))
    assert conn.closed
    with pytest.raises(PgConnectionError):
        await conn.simple("SELECT 1")
    assert psql("SELECT count(*) FROM pw", table) == "0"


async def test_cancelling_a_round_trip_closes_the_connection(table: str) -> None:
    conn = await connect(table)
    with trio.move_on_after(0.05) as scope:
        await conn.simple("SELECT pg_sleep(5)")
    assert scope.cancelled_caught
    assert conn.closed  # where the protocol stood is unknown: never reused


async def test_connect_errors_are_clear(table: str) -> None:
    with pytest.raises(PgConnectionError, match="does not exist"):
        await Connection.connect(parse_dsn(dsn("no_such_database_here")))
    with pytest.raises(PgConnectionError, match="cannot connect"):
        await Connection.connect(parse_dsn("postgresql://127.0.0.1:1/x"))


async def test_start_then_finish_is_one_round_trip_in_two_halves(table: str) -> None:
    conn = await connect(table)
    try:
        conn.start(conn.pipeline().execute(INSERT, OIDS, rows_args([(1, "a", b"", 1)])))
        with pytest.raises(RuntimeError):  # one pipeline at a time
            conn.start(conn.pipeline().execute(INSERT, OIDS, rows_args([(2, "b", b"", 2)])))
        await conn.finish()
        with pytest.raises(RuntimeError):
            await conn.finish()
        assert psql("SELECT array_agg(id) FROM pw", table) == "{1}"
    finally:
        conn.close()
