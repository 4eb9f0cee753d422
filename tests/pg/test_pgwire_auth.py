"""Authentication of the commit connection against a real PostgreSQL that asks for passwords.

The machine's PostgreSQL trusts every local connection, so this module starts a throwaway one
(initdb into a temporary directory, run as the `postgres` OS user on a free port) whose pg_hba
asks SCRAM-SHA-256, MD5 or a cleartext password of different roles, the way a managed database
or the compose file's `postgres:15` image does. Stopped by its own pid.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shard.persistence.pgwire import Connection, PgConnectionError, parse_dsn
from tests.harness import free_port

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
HBA = """\
local all all trust
host all scram_user 127.0.0.1/32 scram-sha-256
host all md5_user 127.0.0.1/32 md5
host all plain_user 127.0.0.1/32 password
"""

pytestmark = pytest.mark.skipif(
    BIN is None or os.geteuid() != 0,
    reason="needs Debian's PostgreSQL binaries and root (to run them as the postgres user)",
)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, str]]:
    """(port, socket directory) of a password-checking PostgreSQL."""
    assert BIN is not None
    root = Path(tempfile.mkdtemp(prefix="mq-pgauth-"))
    pg = pwd.getpwnam("postgres")
    os.chown(root, pg.pw_uid, pg.pw_gid)
    data, port = root / "data", free_port()

    # Run as the postgres user directly (not through runuser/su, which would stand between
    # us and the server's pid and not pass our signal on).
    user = {"user": pg.pw_uid, "group": pg.pw_gid, "extra_groups": [], "cwd": root}

    def as_postgres(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60, **user)  # type: ignore[call-overload]

    as_postgres(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    (data / "pg_hba.conf").write_text(HBA)
    proc = subprocess.Popen(  # type: ignore[call-overload]
        [str(BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **user,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([str(BIN / "pg_isready"), "-h", str(root), "-p", str(port), "-q"],
                             timeout=10).returncode != 0:  # fmt: skip
            assert proc.poll() is None and time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.1)
        sql = (
            "CREATE ROLE scram_user LOGIN PASSWORD 'sécret sc';"
            "SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN PASSWORD 'md5 pw';"
            "CREATE ROLE plain_user LOGIN PASSWORD 'plain pw';"
        )
        as_postgres(str(BIN / "psql"), "-h", str(root), "-p", str(port), "-U", "postgres",
                    "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql)  # fmt: skip
        yield port, str(root)
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown of our own instance, by its pid
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


async def _login(dsn: str) -> str:
    conn = await Connection.connect(parse_dsn(dsn))
    try:
        await conn.simple("SELECT 1")
        return conn.server.get("session_authorization", "")
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("user", "password"),
    [("scram_user", "s%C3%A9cret%20sc"), ("md5_user", "md5%20pw"), ("plain_user", "plain%20pw")],
)
async def test_password_methods(server: tuple[int, str], user: str, password: str) -> None:
    port, _ = server
    assert await _login(f"postgresql://{user}:{password}@127.0.0.1:{port}/postgres") == user


@pytest.mark.parametrize("user", ["scram_user", "md5_user", "plain_user"])
async def test_a_wrong_or_missing_password_is_refused_clearly(
    server: tuple[int, str], user: str
) -> None:
    port, _ = server
    with pytest.raises(PgConnectionError, match="password authentication failed"):
        await _login(f"postgresql://{user}:wrong@127.0.0.1:{port}/postgres")
    with pytest.raises(PgConnectionError, match="wants a password"):
        await _login(f"postgresql://{user}@127.0.0.1:{port}/postgres")


async def test_unix_socket_directory_in_the_url(server: tuple[int, str]) -> None:
    port, sockdir = server
    assert await _login(f"postgresql:///postgres?host={sockdir}&port={port}&user=postgres") == (
        "postgres"
    )
