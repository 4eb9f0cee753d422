"""A job as stored: five columns, the last one a msgpack record of everything else.

`id`, `shard`, `queue` and `state` are columns (routing, recovery by shard, and what an operator
may want to count with SQL); every other field travels as one msgpack array in `record`. Fewer
columns is what makes a commit cheap: a commit of one job binds 5 values instead of 21, and COPY
writes 5 per row. The field order below is the format: append new fields at the end only, and
give them a default in `unpack` for records written before they existed.
"""

from __future__ import annotations

from typing import Any

import msgpack

RECORD_FIELDS = (
    "data", "priority", "created_at", "run_at", "started_at", "attempts", "max_attempts",
    "backoff", "ttl", "timeout", "unique_key", "depends_on", "pending_deps", "progress",
    "progress_msg", "tags", "dlq_at",
)  # fmt: skip

_packer = msgpack.Packer(use_bin_type=True)


def pack(values: list[Any]) -> bytes:
    """`values` in RECORD_FIELDS order."""
    out: bytes = _packer.pack(values)
    return out


def unpack(row: Any) -> dict[str, Any]:
    """A stored row (id, shard, queue, state, record) as the mapping `Shard.restore_job` takes."""
    values = msgpack.unpackb(row["record"], raw=False, use_list=True)
    out = dict(zip(RECORD_FIELDS, values, strict=False))
    out["id"] = row["id"]
    out["shard"] = row["shard"]
    out["queue"] = row["queue"]
    out["state"] = row["state"]
    return out
