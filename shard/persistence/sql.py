"""The SQL of the persistence layer: named statements and versioned migrations.

Statements live in `sql/queries.sql` as blocks headed `-- name: <name>`; migrations are
`sql/migrations/NNNN_<what>.sql`, applied in order; `sql/schema.sql` is the whole current schema
for an empty database. Keeping SQL in .sql files (not strings in Python) means one place to read
every statement the server runs.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).parent / "sql"
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def queries() -> dict[str, str]:
    text = (SQL_DIR / "queries.sql").read_text()
    parts = _NAME.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        out[name] = body.strip()
    return out


def q(name: str) -> str:
    return queries()[name]


def migrations() -> list[tuple[int, str]]:
    """(version, sql) for every migration, in order."""
    out = []
    for path in sorted((SQL_DIR / "migrations").glob("*.sql")):
        out.append((int(path.name.split("_", 1)[0]), path.read_text()))
    return out


def latest_version() -> int:
    return migrations()[-1][0]


def schema() -> str:
    return (SQL_DIR / "schema.sql").read_text()
