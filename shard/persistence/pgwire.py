"""A PostgreSQL connection on trio itself, for the commit path.

Why not asyncpg here: asyncpg runs only on asyncio, so every commit from the trio thread crossed
to an asyncio thread and back. Measured on the 2-vCPU machine: that crossing alone cost ~140 us
of CPU per commit and asyncpg's own per-statement work ~100 us more, against ~40 us for a round
trip on a raw non-blocking socket driven by `trio.lowlevel.wait_readable`. A sequential durable
push is one commit, so this difference is most of its latency. asyncpg keeps the jobs it does
well and once: migrations and recovery at start (shard.persistence.store).

The client speaks protocol 3.0 and only what the writer needs:

- startup with trust, cleartext, MD5 or SCRAM-SHA-256 authentication (no TLS: a DSN asking for
  it with `sslmode=require`/`verify-*` is refused with a clear error rather than sent in clear);
- **pipelines**: a `Pipeline` collects frontend messages (Parse once per statement text, then
  Bind/Execute with binary parameters, COPY FROM STDIN BINARY with its data, and one Sync) and
  `Connection.run` sends them in one write and reads up to ReadyForQuery: one round trip per
  commit (`start` and `finish` are its two halves, for a caller that must send without
  awaiting). Everything before the Sync is one implicit transaction, so an error anywhere rolls
  all of it back, and the server skips the rest of the pipeline up to the Sync;
- named prepared statements, cached per connection; a statement counts as prepared only when its
  ParseComplete arrives, so one skipped after an error is parsed again next time.

Results are not decoded (the writer never reads rows). Any failure of the socket, a protocol
surprise or a cancellation in the middle of a round trip leaves the connection `closed`; the
caller reconnects.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import hmac
import os
import secrets
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import trio

PROTOCOL_3_0 = 196608
_I32 = struct.Struct("!i")
_HDR = struct.Struct("!ci")  # message type, length (including itself)
_INT8 = struct.Struct("!iq")
_INT4 = struct.Struct("!ii")
_INT2 = struct.Struct("!ih")
_BOOL = struct.Struct("!i?")
_NULL = _I32.pack(-1)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = struct.pack("!h", -1)
RECV_SIZE = 65536


class PgError(Exception):
    """An ErrorResponse from the server (the connection is still usable)."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.code = fields.get("C", "")
        super().__init__(f"{fields.get('S', 'ERROR')} {self.code}: {fields.get('M', '?')}")


class PgConnectionError(ConnectionError):
    """The connection is gone or unusable (closed by the server, refused, protocol error)."""


# ---------------------------------------------------------------- types (binary format)
#
# Each type is (oid, encode one non-null value to its length-prefixed bytes).


@dataclass(frozen=True, slots=True)
class PgType:
    name: str
    oid: int
    array_oid: int
    encode: Callable[[Any], bytes]  # value -> length-prefixed wire bytes


def _text(v: str) -> bytes:
    b = v.encode()
    return _I32.pack(len(b)) + b


def _bytea(v: bytes) -> bytes:
    return _I32.pack(len(v)) + v


INT8 = PgType("int8", 20, 1016, lambda v: _INT8.pack(8, v))
INT4 = PgType("int4", 23, 1007, lambda v: _INT4.pack(4, v))
INT2 = PgType("int2", 21, 1005, lambda v: _INT2.pack(2, v))
BOOL = PgType("bool", 16, 1000, lambda v: _BOOL.pack(1, v))
TEXT = PgType("text", 25, 1009, _text)
BYTEA = PgType("bytea", 17, 1001, _bytea)


def encode_array(t: PgType, values: Sequence[Any]) -> bytes:
    """A one-dimensional array parameter (length-prefixed, as Bind wants it)."""
    if not values:
        body = struct.pack("!iii", 0, 0, t.oid)
    else:
        enc = t.encode
        has_null = None in values
        head = struct.pack("!iiiii", 1, int(has_null), t.oid, len(values), 1)
        if has_null:
            body = head + b"".join(_NULL if v is None else enc(v) for v in values)
        else:
            body = head + b"".join(map(enc, values))
    return _I32.pack(len(body)) + body


def copy_rows(types: Sequence[PgType], rows: Iterable[Sequence[Any]]) -> bytes:
    """The data of a `COPY ... FROM STDIN (FORMAT binary)`, header and trailer included."""
    count = struct.pack("!h", len(types))
    encs = [t.encode for t in types]
    out = [COPY_HEADER]
    append = out.append
    for row in rows:
        append(count)
        for enc, v in zip(encs, row, strict=True):
            append(_NULL if v is None else enc(v))
    append(COPY_TRAILER)
    return b"".join(out)


# ---------------------------------------------------------------- connection parameters


@dataclass(frozen=True, slots=True)
class ConnectParams:
    host: str  # a hostname/address, or a directory holding the Unix socket
    port: int
    user: str
    password: str | None
    database: str
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def unix_path(self) -> str | None:
        return f"{self.host}/.s.PGSQL.{self.port}" if self.host.startswith("/") else None


_SOCKET_DIRS = ("/run/postgresql", "/var/run/postgresql", "/tmp")
_NOT_SETTINGS = {"host", "port", "user", "password", "dbname", "database", "sslmode",
                 "connect_timeout", "passfile"}  # fmt: skip


def parse_dsn(dsn: str, settings: dict[str, str] | None = None) -> ConnectParams:
    """A `postgresql://user:password@host:port/database?param=value` URL (libpq's URL form).

    Unset parts fall back like libpq: PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE, then the local
    Unix socket if there is one (else localhost), port 5432, the OS user, a database named after
    the user. Other query parameters become server settings, as with asyncpg.
    """
    u = urlsplit(dsn)
    if u.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"DATABASE_URL must start with postgresql:// (got {u.scheme or dsn!r})")
    query = dict(parse_qsl(u.query))
    sslmode = query.get("sslmode", os.environ.get("PGSSLMODE", "prefer"))
    if sslmode in ("require", "verify-ca", "verify-full"):
        raise ValueError(f"sslmode={sslmode} is not supported: the server connects without TLS")
    env = os.environ
    port = int(u.port or query.get("port") or env.get("PGPORT") or 5432)
    host = unquote(u.hostname or "") or query.get("host") or env.get("PGHOST") or ""
    if not host:
        host = next(
            (d for d in _SOCKET_DIRS if os.path.exists(f"{d}/.s.PGSQL.{port}")), "localhost"
        )
    user = unquote(u.username or "") or query.get("user") or env.get("PGUSER") or getpass.getuser()
    password = unquote(u.password) if u.password else query.get("password") or env.get("PGPASSWORD")
    database = (
        unquote(u.path.lstrip("/"))
        or query.get("dbname")
        or query.get("database")
        or env.get("PGDATABASE")
        or user
    )
    extra = {k: v for k, v in query.items() if k not in _NOT_SETTINGS}
    return ConnectParams(host, port, user, password, database, {**extra, **(settings or {})})


# ---------------------------------------------------------------- authentication


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode()


class Scram:
    """SCRAM-SHA-256 (RFC 5802/7677) without channel binding. PostgreSQL ignores the user name
    in the exchange (it uses the startup one), so it is sent empty."""

    def __init__(self, password: str, user: str = "", nonce: str | None = None) -> None:
        self.password = password
        self.nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self.first_bare = f"n={user},r={self.nonce}"
        self._server_signature = b""

    def client_first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        text = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in text.split(","))
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.nonce):
            raise PgConnectionError("SCRAM: the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        got = base64.b64decode(attrs.get("v", ""))
        if not hmac.compare_digest(got, self._server_signature):
            raise PgConnectionError("SCRAM: the server's signature does not match")


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


# ---------------------------------------------------------------- messages


def _msg(kind: bytes, body: bytes) -> bytes:
    return _HDR.pack(kind, len(body) + 4) + body


def _cstr(s: str) -> bytes:
    return s.encode() + b"\0"


_SYNC = _msg(b"S", b"")
_EXECUTE_ALL = _msg(b"E", b"\0" + _I32.pack(0))  # unnamed portal, no row limit
_COPY_CHUNK = 1 << 20  # CopyData messages of at most 1 MiB


class Pipeline:
    """Frontend messages for one round trip, ended by one Sync (see the module header)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._parts: list[bytes] = []
        self.parsing: dict[str, str] = {}  # statement text -> name, for the Parses it carries

    def execute(self, sql: str, oids: Sequence[int], args: Sequence[bytes]) -> Pipeline:
        """Run `sql` with parameters of these type oids, already encoded (`encode_array`)."""
        name = self._conn.prepared.get(sql) or self.parsing.get(sql)
        if name is None:
            name = self.parsing[sql] = self._conn.new_name()
            types = b"".join(_I32.pack(oid) for oid in oids)
            body = _cstr(name) + _cstr(sql) + struct.pack("!h", len(oids)) + types
            self._parts.append(_msg(b"P", body))
        n = len(args)
        bind = [b"\0", _cstr(name), struct.pack("!hh", 1, 1), struct.pack("!h", n), *args]
        bind.append(struct.pack("!hh", 1, 1))  # results, if any, in binary (never decoded)
        self._parts.append(_msg(b"B", b"".join(bind)))
        self._parts.append(_EXECUTE_ALL)
        return self

    def copy_in(self, sql: str, data: bytes) -> Pipeline:
        """`COPY ... FROM STDIN (FORMAT binary)` with its whole data (see `copy_rows`)."""
        self.execute(sql, (), ())
        for i in range(0, len(data), _COPY_CHUNK):
            self._parts.append(_msg(b"d", data[i : i + _COPY_CHUNK]))
        self._parts.append(_msg(b"c", b""))  # CopyDone
        return self

    def build(self) -> bytes:
        return b"".join((*self._parts, _SYNC))

    def __bool__(self) -> bool:
        return bool(self._parts)


class Connection:
    def __init__(self, sock: socket.socket, params: ConnectParams) -> None:
        self._sock: socket.socket | None = sock
        self.params = params
        self._buf = bytearray()
        self.prepared: dict[str, str] = {}  # statement text -> name, once ParseComplete came
        self._counter = 0
        self.server: dict[str, str] = {}  # ParameterStatus values
        self.backend_pid = 0
        self._unsent: memoryview | None = None  # of the pipeline in flight
        self._parsing: list[tuple[str, str]] | None = None  # its Parses awaiting ParseComplete

    # -------------------------------------------------------- opening and closing

    @classmethod
    async def connect(cls, params: ConnectParams, timeout_s: float = 5.0) -> Connection:
        with trio.fail_after(timeout_s):
            sock = await _open_socket(params)
            conn = cls(sock, params)
            try:
                await conn._startup()
            except BaseException:
                conn.close()
                raise
        return conn

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        trio.lowlevel.notify_closing(sock)
        # Terminate lets the server end the session at once; if the socket is already dead
        # there is nobody to tell, and closing it is all that is left to do.
        with contextlib.suppress(OSError):
            sock.send(_msg(b"X", b""))
        sock.close()

    # -------------------------------------------------------- statements

    def new_name(self) -> str:
        self._counter += 1
        return f"mq{self._counter}"

    async def run(self, pipeline: Pipeline) -> None:
        """Send the pipeline, wait for its ReadyForQuery; raise the first error it caused."""
        self.start(pipeline)
        await self.finish()

    def start(self, pipeline: Pipeline) -> None:
        """Send what the socket takes at once, without waiting: a caller on the hot path (a
        request that finds no commit in flight) puts its commit on the wire immediately and
        leaves the rest, and the reply, to `finish`. One pipeline at a time."""
        self._start(pipeline.build(), list(pipeline.parsing.items()))

    def _start(self, message: bytes, parsing: list[tuple[str, str]]) -> None:
        sock = self._sock
        if sock is None:
            raise PgConnectionError("connection closed")
        if self._unsent is not None or self._parsing is not None:
            raise RuntimeError("a pipeline is already in flight")
        data = memoryview(message)
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self.close()
            raise PgConnectionError(f"send failed: {e}") from e
        self._unsent = data[sent:] if sent < len(data) else None
        self._parsing = parsing

    async def finish(self) -> None:
        """Complete the pipeline `start` began: the rest of it, then its reply."""
        parsing = self._parsing
        if parsing is None:
            raise RuntimeError("no pipeline in flight")
        try:
            unsent, self._unsent = self._unsent, None
            if unsent is not None:
                await self._send(unsent)
            error: PgError | None = None
            while True:
                kind, body = await self._read_message()
                if kind == b"1":  # ParseComplete, in the order the Parses were sent
                    sql, name = parsing.pop(0)
                    self.prepared[sql] = name
                elif kind == b"E":
                    error = error or PgError(_fields(body))
                elif kind == b"Z":
                    break
                elif kind in (b"2", b"C", b"G", b"n", b"T", b"D", b"I", b"s", b"N", b"S", b"A"):
                    continue  # bind/command complete, copy-in start, rows, notices, statuses
                else:
                    raise PgConnectionError(f"unexpected message {kind!r} in a pipeline")
        except BaseException:
            # Cancelled or broken in the middle of a round trip: where the protocol stands is
            # unknown, so this connection cannot be used again.
            self.close()
            raise
        finally:
            self._parsing = None
        if error is not None:
            raise error

    def pipeline(self) -> Pipeline:
        return Pipeline(self)

    async def simple(self, sql: str) -> None:
        """A simple-protocol query whose results are not needed (`SELECT 1` as a ping)."""
        self._start(_msg(b"Q", _cstr(sql)), [])
        await self.finish()

    # -------------------------------------------------------- startup

    async def _startup(self) -> None:
        p = self.params
        options = {"user": p.user, "database": p.database, **p.settings}
        body = _I32.pack(PROTOCOL_3_0) + b"".join(
            _cstr(k) + _cstr(v) for k, v in options.items()
        ) + b"\0"  # fmt: skip
        await self._send(_I32.pack(len(body) + 4) + body)
        scram: Scram | None = None
        while True:
            kind, data = await self._read_message()
            if kind == b"R":
                code = _I32.unpack_from(data)[0]
                if code == 0:  # AuthenticationOk
                    continue
                password = p.password
                if password is None and code in (3, 5, 10):
                    raise PgConnectionError(f"the server wants a password for user {p.user!r}")
                assert password is not None or code not in (3, 5, 10)
                if code == 3:  # cleartext
                    await self._send(_msg(b"p", _cstr(password or "")))
                elif code == 5:  # MD5
                    await self._send(_msg(b"p", md5_password(p.user, password or "", data[4:8])
                                          + b"\0"))  # fmt: skip
                elif code == 10:  # SASL: a list of mechanisms
                    mechanisms = data[4:].split(b"\0")
                    if b"SCRAM-SHA-256" not in mechanisms:
                        raise PgConnectionError(f"no supported SASL mechanism in {mechanisms}")
                    scram = Scram(password or "")
                    first = scram.client_first()
                    body = _cstr("SCRAM-SHA-256") + _I32.pack(len(first)) + first
                    await self._send(_msg(b"p", body))
                elif code == 11 and scram is not None:  # SASL continue
                    await self._send(_msg(b"p", scram.client_final(data[4:])))
                elif code == 12 and scram is not None:  # SASL final
                    scram.verify(data[4:])
                else:
                    raise PgConnectionError(f"unsupported authentication request {code}")
            elif kind == b"S":
                k, v, _ = data.split(b"\0", 2)
                self.server[k.decode()] = v.decode()
            elif kind == b"K":
                self.backend_pid = _I32.unpack_from(data)[0]
            elif kind == b"E":
                raise PgConnectionError(str(PgError(_fields(data))))
            elif kind == b"Z":
                return
            # NoticeResponse and anything else informational: nothing to do

    # -------------------------------------------------------- socket

    async def _send(self, data: bytes | memoryview) -> None:
        sock = self._sock
        if sock is None:
            raise PgConnectionError("connection closed")
        view = memoryview(data)
        while view:
            try:
                n = sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            except OSError as e:
                raise PgConnectionError(f"send failed: {e}") from e
            view = view[n:]

    async def _read_message(self) -> tuple[bytes, bytes]:
        buf = self._buf
        while True:
            if len(buf) >= 5:
                kind, length = _HDR.unpack_from(buf)
                end = length + 1
                if len(buf) >= end:
                    body = bytes(buf[5:end])
                    del buf[:end]
                    return kind, body
            sock = self._sock
            if sock is None:
                raise PgConnectionError("connection closed")
            try:
                chunk = sock.recv(RECV_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as e:
                raise PgConnectionError(f"receive failed: {e}") from e
            if not chunk:
                raise PgConnectionError("the server closed the connection")
            buf += chunk


def _fields(body: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode(errors="replace")
    return out


async def _open_socket(params: ConnectParams) -> socket.socket:
    path = params.unix_path
    if path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = path
    else:
        infos = await trio.socket.getaddrinfo(params.host, params.port, type=socket.SOCK_STREAM)
        if not infos:
            raise PgConnectionError(f"cannot resolve {params.host}")
        family, type_, proto, _, address = infos[0]
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    try:
        try:
            sock.connect(address)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err)) from None
    except OSError as e:
        sock.close()
        raise PgConnectionError(f"cannot connect to {params.host}:{params.port}: {e}") from e
    except BaseException:
        sock.close()
        raise
    return sock
