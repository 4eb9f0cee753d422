"""Framers: bytes in, whole frames out. Pure, incremental and bounded.

`LineFramer` splits the newline-delimited JSON stream of TCP and Unix-socket clients. It keeps at
most one partial line between feeds, tolerates `\\r\\n`, drops blank lines (the protocol answers
nothing to them) and refuses a line longer than the frame limit. When that happens it still
returns the complete lines that came before the oversized one, then reports `overflowed`; the
caller answers those, sends the frame error and closes, because the stream has no trustworthy
next boundary.

`MsgpackFramer` frames the links between workers: a stream of msgpack values decoded by a
streaming `Unpacker` (no length prefix: measured 2x faster to decode than length-prefixed
frames, see the stack notes), with its buffer bounded so a broken peer cannot grow it forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack

from proto.errors import FrameTooLarge


class LineFramer:
    __slots__ = ("_parts", "_pending", "max_line", "overflowed")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._parts: list[bytes] = []  # pieces of the current partial line
        self._pending = 0  # total length of _parts
        self.overflowed = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete, non-blank lines without their terminator.

        After a line over the limit (complete or not) `overflowed` is set and the stream is
        dead: later feeds return nothing.
        """
        if self.overflowed:
            return []
        nl = data.rfind(b"\n")
        if nl < 0:
            self._parts.append(data)
            self._pending += len(data)
            if self._pending > self.max_line:
                self._overflow()
            return []
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            nl += self._pending
            self._parts = []
            self._pending = 0
        tail = data[nl + 1 :]
        lines = data[:nl].split(b"\n")
        limit = self.max_line
        out: list[bytes] = []
        for line in lines:
            if len(line) > limit:
                self._overflow()
                return out
            if line and line[-1] == 13:  # b"\r"
                line = line[:-1]
            if line and not line.isspace():
                out.append(line)
        if tail:
            if len(tail) > limit:
                self._overflow()
            else:
                self._parts.append(tail)
                self._pending = len(tail)
        return out

    def buffered(self) -> bytes:
        """The partial line held so far (used when a connection is handed to another worker)."""
        return b"".join(self._parts)

    def error(self) -> FrameTooLarge:
        return FrameTooLarge(self.max_line)

    def _overflow(self) -> None:
        self.overflowed = True
        self._parts = []
        self._pending = 0


class MsgpackFramer:
    """Streaming msgpack decoder for the links between workers."""

    __slots__ = ("_unpacker",)

    def __init__(self, max_buffer: int) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=False, use_list=True, max_buffer_size=max_buffer, strict_map_key=False
        )

    def feed(self, data: bytes) -> Iterator[Any]:
        """Feed bytes and iterate over every complete value now available.

        Raises `msgpack.BufferFull` if the peer sends more than the bound without completing a
        value, and `ValueError`-family errors on garbage; the link treats both as fatal.
        """
        self._unpacker.feed(data)
        return iter(self._unpacker)


def packer() -> msgpack.Packer:
    """A reusable encoder for link frames (reusing one is measured ~40% faster than packb)."""
    return msgpack.Packer(use_bin_type=True, datetime=False)
