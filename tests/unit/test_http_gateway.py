"""The HTTP gateway's pure parts: Prometheus text, path splitting, webhook parsing, registry and
the delivery retry schedule (driven by trio's autojump clock: no real waiting)."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
import trio
import trio.testing

from gateway.http.app import split_path
from gateway.http.prometheus import escape_label, render
from gateway.http.webhooks import (
    MAX_RETRIES,
    Delivery,
    DeliveryError,
    Webhook,
    WebhookDispatcher,
    WebhookRegistry,
    normalize_event,
    parse_webhook,
    sign,
)
from proto.errors import InvalidRequest
from shard.core import HIST_BOUNDS

SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\\n]|\\["\\n])*",?)*\})? (\S+)$')


def _hist(counts: list[int], total_ms: int) -> list[object]:
    return [counts + [0] * (len(HIST_BOUNDS) + 1 - len(counts)), total_ms]


def test_prometheus_text_is_valid_and_cumulative() -> None:
    metrics = {
        "total_pushed": 10,
        "total_completed": 7,
        "total_failed": 1,
        "total_expired": 0,
        "total_retried": 2,
        "total_cancelled": 1,
        "jobs_per_second": 0.7,
        "avg_latency_ms": 12.5,
    }
    odd = 'we"ird\\name\nx'
    queues = [
        {
            "name": odd,
            "waiting": 3,
            "delayed": 1,
            "active": 2,
            "dlq": 1,
            "waiting_children": 0,
            "paused": True,
            "wait": _hist([1, 2, 0, 4], 150),
            "processing": _hist([0, 0, 5], 40),
        }
    ]
    text = render(metrics, queues, [4, 3, 2, 1], workers=2)
    assert text.endswith("\n")
    families: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in families
            families[name] = kind
        elif not line.startswith("# HELP "):
            assert SAMPLE.match(line), line
    assert families["magicqueue_jobs_pushed_total"] == "counter"
    assert families["magicqueue_queue_wait_seconds"] == "histogram"
    assert "magicqueue_jobs_cancelled_total 1" in text
    assert "magicqueue_average_latency_seconds 0.0125" in text
    label = 'queue="we\\"ird\\\\name\\nx"'
    assert f"magicqueue_queue_paused{{{label}}} 1" in text
    assert f"magicqueue_queue_waiting{{{label}}} 3" in text
    buckets = re.findall(
        r'^magicqueue_queue_wait_seconds_bucket\{.*,le="([^"]+)"\} (\d+)$', text, re.M
    )
    assert [b[0] for b in buckets][:3] == ["0.001", "0.005", "0.01"]
    assert buckets[-1] == ("+Inf", "7")
    values = [int(v) for _, v in buckets]
    assert values == sorted(values) and values[0] == 1 and values[3] == 7
    assert f"magicqueue_queue_wait_seconds_count{{{label}}} 7" in text
    assert f"magicqueue_queue_wait_seconds_sum{{{label}}} 0.15" in text
    assert "magicqueue_webhook_dropped_overflow_total 1" in text


def test_escape_label() -> None:
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_split_path_decodes_each_segment() -> None:
    assert split_path(b"/queues/a%2Fb/jobs") == ["queues", "a/b", "jobs"]
    assert split_path(b"/queues//jobs") == ["queues", "", "jobs"]
    assert split_path(b"/") == [""]
    assert split_path("/q/ü%20x".encode()) == ["q", "ü x"]
    with pytest.raises(InvalidRequest):
        split_path(b"/queues/%FF/jobs")


def test_parse_webhook() -> None:
    hook = parse_webhook(
        {"url": "https://h.example:8443/p?x=1", "events": ["job.pushed", "failed"], "queue": "q"}
    )
    assert hook.id.startswith("wh_") and hook.kinds == frozenset({"pushed", "failed"})
    assert hook.public() == {
        "id": hook.id,
        "url": "https://h.example:8443/p?x=1",
        "events": ["job.pushed", "failed"],
        "queue": "q",
        "created_at": hook.created_at,
    }
    assert parse_webhook({"url": "http://h/", "events": ["*"]}).kinds is None
    assert Webhook.from_wire(hook.to_wire()) == hook
    for bad, field in [
        ({"url": "h", "events": ["*"]}, "url"),
        ({"url": "http://h:99999/", "events": ["*"]}, "url"),
        ({"url": "http://h/", "events": "pushed"}, "events"),
        ({"url": "http://h/", "events": ["pushed", 3]}, "events[1]"),
        ({"url": "http://h/", "events": ["*"], "secret": ""}, "secret"),
    ]:
        with pytest.raises(InvalidRequest, match=re.escape(field)):
            parse_webhook(bad)
    assert normalize_event("job.completed") == "completed" and normalize_event("nope") is None


def test_registry_matching_and_tombstones() -> None:
    reg = WebhookRegistry()
    a = parse_webhook({"url": "http://h/a", "events": ["pushed"], "queue": "q1"})
    b = parse_webhook({"url": "http://h/b", "events": ["*"]})
    reg.add(a)
    reg.add(b)
    assert reg.matching("pushed", "q1") == [a, b]
    assert reg.matching("pushed", "q2") == [b]
    assert reg.matching("failed", "q1") == [b]
    snapshot = reg.snapshot()
    assert reg.delete(a.id) is True and reg.delete(a.id) is False
    reg.merge(snapshot)  # a stale snapshot must not resurrect a deleted hook
    assert set(reg.hooks) == {b.id}


def test_signature_is_hex_hmac_sha256() -> None:
    body = b'{"event":"pushed"}'
    assert sign("k", body) == hmac.new(b"k", body, hashlib.sha256).hexdigest()


class FlakyDispatcher(WebhookDispatcher):
    """Delivery fails `fail_first` times (per body), recording when each attempt happened."""

    def __init__(self, registry: WebhookRegistry, fail_first: int, **kw: object) -> None:
        super().__init__(registry, **kw)  # type: ignore[arg-type]
        self.fail_first = fail_first
        self.attempts: list[tuple[bytes, float]] = []

    async def _post(self, hook: Webhook, d: Delivery) -> int:
        self.attempts.append((d.body, trio.current_time()))
        if sum(1 for b, _ in self.attempts if b == d.body) <= self.fail_first:
            raise DeliveryError("receiver down")
        return 204


def _registry() -> tuple[WebhookRegistry, Webhook]:
    reg = WebhookRegistry()
    hook = parse_webhook({"url": "http://127.0.0.1:9/", "events": ["*"]})
    reg.add(hook)
    return reg, hook


async def test_retries_back_off_then_deliver(autojump_clock: trio.testing.MockClock) -> None:
    reg, _ = _registry()
    d = FlakyDispatcher(reg, fail_first=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        start = trio.current_time()
        d.sink([("pushed", "q", 1, 0, None)])
        while d.stats.delivered == 0:
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    gaps = [round(t - start, 1) for _, t in d.attempts]
    assert gaps == [0.0, 1.0, 3.0, 7.0]  # retried after 1 s, 2 s, 4 s
    assert d.stats.failed_attempts == 3 and d.queued == 0


async def test_gives_up_after_the_last_retry(autojump_clock: trio.testing.MockClock) -> None:
    reg, _ = _registry()
    d = FlakyDispatcher(reg, fail_first=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        d.sink([("pushed", "q", 1, 0, None)])
        while d.stats.dropped_exhausted == 0:
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert len(d.attempts) == 1 + MAX_RETRIES and d.queued == 0


async def test_overflow_is_dropped_and_counted(autojump_clock: trio.testing.MockClock) -> None:
    reg, _ = _registry()
    d = FlakyDispatcher(reg, fail_first=0, limit=5)
    d.sink([("pushed", "q", i, 0, None) for i in range(8)])  # senders not running yet
    assert d.queued == 5 and d.stats.dropped_overflow == 3
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        while d.stats.delivered < 5:
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()


async def test_a_deleted_hook_gets_nothing_more(autojump_clock: trio.testing.MockClock) -> None:
    reg, hook = _registry()
    d = FlakyDispatcher(reg, fail_first=0)
    d.sink([("pushed", "q", 1, 0, None)])
    reg.delete(hook.id)
    d.sink([("pushed", "q", 2, 0, None)])  # no hook matches any more
    async with trio.open_nursery() as nursery:
        await nursery.start(d.run)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert d.attempts == [] and d.queued == 0


class _FakeSub:
    def __init__(self, batches: list[list[tuple[str, str, int, int, object]] | None]) -> None:
        self.batches = batches
        self.closed = False

    async def next_batch(self, timeout: float) -> list[tuple[str, str, int, int, object]] | None:
        await trio.sleep(timeout if self.batches and self.batches[0] == [] else 0)
        return self.batches.pop(0)

    def close(self) -> None:
        self.closed = True


class _FakeNode:
    workers = 1
    index = 0

    def __init__(self, sub: _FakeSub) -> None:
        self.sub = sub
        self.bus = self

    def subscribe(self, queue: str | None = None) -> _FakeSub:
        return self.sub


async def test_sse_stream_keepalive_events_and_drop(autojump_clock: trio.testing.MockClock) -> None:
    from gateway.http.events import KEEPALIVE_S, _sse_stream, sse_response

    sub = _FakeSub([[], [("completed", "q", 7, 1000, b'{"r":1}')], None])
    node: object = _FakeNode(sub)
    start = trio.current_time()
    chunks = [c async for c in _sse_stream(node, None)]  # type: ignore[arg-type]
    assert chunks[0] == b"retry: 2000\n: subscribed\n\n"
    assert chunks[1] == b": keep-alive\n\n"
    assert trio.current_time() - start >= KEEPALIVE_S
    assert chunks[2] == (
        b"event: completed\n"
        b'data: {"event_type":"completed","queue":"q","job_id":7,"timestamp":1000,"data":{"r":1}}'
        b"\n\n"
    )
    assert chunks[3].startswith(b": dropped") and len(chunks) == 4
    assert sub.closed
    resp = sse_response(node, "q")  # type: ignore[arg-type]
    assert resp.timeout is None  # never cut by Quart's RESPONSE_TIMEOUT
    assert resp.headers["Content-Type"].startswith("text/event-stream")
