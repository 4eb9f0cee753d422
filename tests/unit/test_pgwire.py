"""The pure parts of the trio-native PostgreSQL client: authentication, DSNs, binary encodings.

The network half (startup, pipelines, errors, a killed connection) runs against the real
server in tests/pg/test_pgwire.py.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest

from shard.persistence.commit import JOB_TYPES, copy_job_rows
from shard.persistence.pgwire import (
    BOOL,
    BYTEA,
    COPY_HEADER,
    COPY_TRAILER,
    INT2,
    INT4,
    INT8,
    TEXT,
    PgConnectionError,
    Scram,
    copy_rows,
    encode_array,
    md5_password,
    parse_dsn,
)


def test_scram_sha256_matches_rfc7677_example() -> None:
    # RFC 7677, section 3: user "user", password "pencil", the client nonce fixed.
    s = Scram("pencil", user="user", nonce="rOprNGfwEbeRWgbNEkqO")
    assert s.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert s.client_final(server_first) == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    s.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_scram_rejects_a_wrong_server_signature_and_a_foreign_nonce() -> None:
    s = Scram("pencil", user="user", nonce="abc")
    with pytest.raises(PgConnectionError, match="nonce"):
        s.client_final(b"r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    s.client_final(b"r=abc123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    with pytest.raises(PgConnectionError, match="signature"):
        s.verify(b"v=" + base64.b64encode(b"\0" * 32))


def test_md5_password_is_postgres_formula() -> None:
    inner = hashlib.md5(b"secretalice").hexdigest()
    want = b"md5" + hashlib.md5(inner.encode() + b"\x01\x02\x03\x04").hexdigest().encode()
    assert md5_password("alice", "secret", b"\x01\x02\x03\x04") == want


def test_parse_dsn_reads_every_part() -> None:
    p = parse_dsn("postgresql://al%40ice:p%3Ass@db.example:6543/jobs?application_name=x")
    assert (p.host, p.port, p.user, p.password, p.database) == (
        "db.example", 6543, "al@ice", "p:ss", "jobs"
    )  # fmt: skip
    assert p.settings == {"application_name": "x"}
    assert p.unix_path is None


def test_parse_dsn_defaults_and_unix_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE"):
        monkeypatch.delenv(var, raising=False)
    p = parse_dsn("postgres://127.0.0.1/", {"plan_cache_mode": "force_generic_plan"})
    assert p.port == 5432 and p.password is None
    assert p.database == p.user  # like libpq: a database named after the user
    assert p.settings == {"plan_cache_mode": "force_generic_plan"}
    s = parse_dsn("postgresql:///q?host=/var/run/postgresql&port=5433&user=u")
    assert s.unix_path == "/var/run/postgresql/.s.PGSQL.5433" and s.user == "u"
    monkeypatch.setenv("PGUSER", "envuser")
    assert parse_dsn("postgresql://h/d").user == "envuser"


@pytest.mark.parametrize("dsn", ["mysql://h/d", "h:5432", "postgresql://h/d?sslmode=require"])
def test_parse_dsn_refuses_what_it_cannot_honour(dsn: str) -> None:
    with pytest.raises(ValueError):
        parse_dsn(dsn)


def _unframe(param: bytes) -> bytes:
    (n,) = struct.unpack_from("!i", param)
    assert n == len(param) - 4
    return param[4:]


def test_encode_array_binary_layout() -> None:
    body = _unframe(encode_array(INT8, [1, -2]))
    ndim, has_null, oid, size, lower = struct.unpack_from("!iiiii", body)
    assert (ndim, has_null, oid, size, lower) == (1, 0, INT8.oid, 2, 1)
    assert body[20:] == struct.pack("!iqiq", 8, 1, 8, -2)
    # NULLs are flagged and sent as length -1
    body = _unframe(encode_array(INT4, [None, 7]))
    assert struct.unpack_from("!ii", body) == (1, 1)
    assert body[20:] == struct.pack("!iii", -1, 4, 7)
    # an empty array has no dimensions
    assert _unframe(encode_array(TEXT, [])) == struct.pack("!iii", 0, 0, TEXT.oid)


def test_encode_array_element_types() -> None:
    assert _unframe(encode_array(TEXT, ["é"]))[20:] == struct.pack("!i", 2) + "é".encode()
    assert _unframe(encode_array(BYTEA, [b"\x00\xff"]))[20:] == b"\x00\x00\x00\x02\x00\xff"
    assert _unframe(encode_array(INT2, [3]))[20:] == struct.pack("!ih", 2, 3)
    assert _unframe(encode_array(BOOL, [True]))[20:] == b"\x00\x00\x00\x01\x01"


def test_copy_rows_binary_layout() -> None:
    data = copy_rows((INT8, TEXT, BYTEA), [(5, "q", None)])
    assert data.startswith(COPY_HEADER) and data.endswith(COPY_TRAILER)
    row = data[len(COPY_HEADER) : -len(COPY_TRAILER)]
    assert row == struct.pack("!hiq", 3, 8, 5) + struct.pack("!i", 1) + b"q" + struct.pack("!i", -1)
    with pytest.raises(ValueError):  # a row of the wrong width never reaches the server
        copy_rows((INT8, TEXT), [(1,)])


def test_copy_job_rows_equals_the_generic_encoder() -> None:
    rows = [
        (32, 0, "q", 0, b"\x91\x01"),
        (65, 1, "quéue", 4, b""),
        (1 << 40, 31, "q", 2, b"x" * 300),
    ]
    assert copy_job_rows(rows) == copy_rows(JOB_TYPES, rows)
