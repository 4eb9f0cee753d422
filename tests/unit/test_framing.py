"""LineFramer and MsgpackFramer: bytes in, whole frames out, however the bytes are split."""

from __future__ import annotations

from itertools import pairwise

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proto.errors import FrameTooLarge
from proto.framing import LineFramer, MsgpackFramer, packer


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for c in chunks:
        out.extend(framer.feed(c))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in pairwise(points)]


def expected_lines(raw_lines: list[bytes]) -> list[bytes]:
    """What the protocol delivers: one trailing CR removed, blank and whitespace lines dropped."""
    out = []
    for line in raw_lines:
        if line.endswith(b"\r"):
            line = line[:-1]
        if line and not line.isspace():
            out.append(line)
    return out


# ---------------------------------------------------------------- LineFramer


def test_lines_fed_whole() -> None:
    f = LineFramer(1024)
    assert f.feed(b'{"a":1}\n{"b":2}\n') == [b'{"a":1}', b'{"b":2}']
    assert f.buffered() == b""
    assert not f.overflowed


def test_lines_fed_byte_by_byte() -> None:
    stream = b'{"cmd":"PUSH"}\r\n\n  \n{"cmd":"PULL"}\npartial'
    f = LineFramer(1024)
    out = feed_all(f, [stream[i : i + 1] for i in range(len(stream))])
    assert out == [b'{"cmd":"PUSH"}', b'{"cmd":"PULL"}']
    assert f.buffered() == b"partial"


def test_crlf_is_tolerated_even_when_split_between_feeds() -> None:
    f = LineFramer(1024)
    assert f.feed(b"abc\r") == []
    assert f.buffered() == b"abc\r"
    assert f.feed(b"\ndef\r\n") == [b"abc", b"def"]


def test_only_one_trailing_cr_is_removed() -> None:
    f = LineFramer(1024)
    assert f.feed(b"abc\r\r\n") == [b"abc\r"]


def test_blank_and_whitespace_lines_are_dropped() -> None:
    f = LineFramer(1024)
    assert f.feed(b"\n\r\n   \n\t \r\nx\n \t\n") == [b"x"]


def test_line_with_inner_spaces_is_kept() -> None:
    f = LineFramer(1024)
    assert f.feed(b' {"a": 1} \n') == [b' {"a": 1} ']


def test_buffered_holds_the_partial_line_only() -> None:
    f = LineFramer(1024)
    assert f.feed(b"one\ntw") == [b"one"]
    assert f.buffered() == b"tw"
    assert f.feed(b"o") == []
    assert f.buffered() == b"two"
    assert f.feed(b"\n") == [b"two"]
    assert f.buffered() == b""


def test_line_exactly_at_the_limit_is_accepted() -> None:
    f = LineFramer(10)
    assert f.feed(b"a" * 10 + b"\n") == [b"a" * 10]
    assert not f.overflowed


def test_line_exactly_at_the_limit_accepted_when_fed_in_pieces() -> None:
    f = LineFramer(10)
    assert f.feed(b"a" * 6) == []
    assert f.feed(b"a" * 4) == []
    assert not f.overflowed
    assert f.buffered() == b"a" * 10
    assert f.feed(b"\n") == [b"a" * 10]


def test_one_byte_over_the_limit_is_refused_after_earlier_lines() -> None:
    f = LineFramer(10)
    out = f.feed(b"first\nsecond\n" + b"b" * 11 + b"\nafter\n")
    assert out == [b"first", b"second"]
    assert f.overflowed
    assert f.buffered() == b""
    # the stream is dead: nothing after the oversized line ever comes out
    assert f.feed(b"more\n") == []
    assert f.feed(b"x") == []


def test_partial_line_over_the_limit_is_refused_before_its_newline() -> None:
    f = LineFramer(10)
    assert f.feed(b"ok\n" + b"c" * 8) == [b"ok"]
    assert not f.overflowed
    assert f.feed(b"ccc") == []  # 11 bytes pending, no newline yet
    assert f.overflowed
    assert f.buffered() == b""
    assert f.feed(b"\nlater\n") == []


def test_tail_over_the_limit_in_the_same_feed_still_returns_complete_lines() -> None:
    f = LineFramer(10)
    assert f.feed(b"ok\n" + b"d" * 11) == [b"ok"]
    assert f.overflowed


def test_error_names_the_limit() -> None:
    f = LineFramer(10)
    err = f.error()
    assert isinstance(err, FrameTooLarge)
    assert err.message == "Invalid: frame exceeds 10 bytes"
    assert err.http_status == 413


raw_line = st.binary(max_size=24).map(lambda b: b.replace(b"\n", b""))
# Lines made of protocol-looking bytes, whitespace and CRs, so blank-line and CR handling is hit.
text_line = st.text(alphabet=' \t\r{}"a:1', max_size=12).map(str.encode)


@given(
    lines=st.lists(st.one_of(raw_line, text_line), max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
    partial=raw_line,
)
def test_arbitrary_splits_give_the_same_lines(
    lines: list[bytes], cuts: list[int], partial: bytes
) -> None:
    stream = b"".join(line + b"\n" for line in lines) + partial
    f = LineFramer(1024)
    out = feed_all(f, split_at(stream, cuts))
    assert out == expected_lines(lines)
    assert f.buffered() == partial
    assert not f.overflowed


@given(
    lines=st.lists(st.binary(max_size=14).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
    partial=st.binary(max_size=14).map(lambda b: b.replace(b"\n", b"")),
)
def test_arbitrary_splits_with_a_small_limit(
    lines: list[bytes], cuts: list[int], partial: bytes
) -> None:
    limit = 10
    stream = b"".join(line + b"\n" for line in lines) + partial
    f = LineFramer(limit)
    out = feed_all(f, split_at(stream, cuts))
    # Model: every complete line up to the first one over the limit; then the partial line.
    good: list[bytes] = []
    overflow = False
    for line in lines:
        if len(line) > limit:
            overflow = True
            break
        good.append(line)
    if not overflow and len(partial) > limit:
        overflow = True
    assert out == expected_lines(good)
    assert f.overflowed == overflow
    assert f.buffered() == (b"" if overflow else partial)


# ---------------------------------------------------------------- MsgpackFramer

VALUES = [
    0,
    -1,
    2**40,
    1.5,
    None,
    True,
    "text",
    "ünïcødé 🚀",
    b"\x00\xffbytes",
    [1, [2, [3, "x"]]],
    {"a": 1, "b": [b"raw", None]},
    {7: "int keys are allowed between workers"},
    "x" * 70_000,
    list(range(300)),
]


def encode(values: list[object]) -> bytes:
    p = packer()
    return b"".join(p.pack(v) for v in values)


def test_msgpack_values_split_at_every_byte_boundary() -> None:
    values: list[object] = [1, "two", [3, {"four": b"4"}], None, {"k": 2**33}]
    data = encode(values)
    for i in range(len(data) + 1):
        fr = MsgpackFramer(1 << 20)
        got = list(fr.feed(data[:i]))
        got += list(fr.feed(data[i:]))
        assert got == values, i


def test_msgpack_values_fed_byte_by_byte() -> None:
    data = encode(VALUES)
    fr = MsgpackFramer(1 << 20)
    got: list[object] = []
    for i in range(len(data)):
        got.extend(fr.feed(data[i : i + 1]))
    assert got == VALUES


@given(
    values=st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
            ),
            max_leaves=10,
        ),
        max_size=8,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=20),
)
def test_msgpack_arbitrary_splits(values: list[object], cuts: list[int]) -> None:
    data = encode(values)
    fr = MsgpackFramer(1 << 20)
    got: list[object] = []
    for chunk in split_at(data, cuts):
        got.extend(fr.feed(chunk))
    assert got == values


def test_msgpack_buffer_is_bounded() -> None:
    fr = MsgpackFramer(64)
    big = packer().pack("y" * 1000)
    with pytest.raises(msgpack.BufferFull):
        list(fr.feed(big[:200]))


def test_msgpack_garbage_raises_a_value_error() -> None:
    fr = MsgpackFramer(1024)
    with pytest.raises(ValueError):
        list(fr.feed(b"\xc1"))  # 0xc1 is never used in msgpack
