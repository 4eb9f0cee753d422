"""PostgreSQL tier: the real server on 127.0.0.1:5432 (trust auth), a fresh database per module."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

PG_HOST = os.environ.get("PGHOST", "127.0.0.1")
PG_PORT = os.environ.get("PGPORT", "5432")


def psql(sql: str, db: str = "test") -> str:
    out = subprocess.run(
        ["psql", "-h", PG_HOST, "-p", PG_PORT, "-d", db, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip()


def dsn(db: str) -> str:
    return f"postgresql://{PG_HOST}:{PG_PORT}/{db}"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A fresh, empty database for this module; dropped afterwards."""
    name = f"mqtest_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A fresh database for one test."""
    name = f"mqtest_{uuid.uuid4().hex[:12]}"
    psql(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
