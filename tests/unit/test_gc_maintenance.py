"""The worker's GC schedule: freeze survivors often, sweep everything rarely (virtual time)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import trio
import trio.testing

from gateway import node


async def test_freezes_every_interval_and_sweeps_deep_rarely(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[tuple[float, str]] = []

    def record(name: str) -> Any:
        return lambda *a: calls.append((trio.current_time(), name))

    fake = type("FakeGC", (), {})()
    for name in ("collect", "freeze", "unfreeze"):
        setattr(fake, name, record(name))
    monkeypatch.setattr(node, "gc", fake)
    start = trio.current_time()
    with trio.move_on_after(65):
        await node.gc_maintenance(freeze_every_s=10, deep_every_s=30)
    seen = [(round(t - start), name) for t, name in calls]
    # every 10 s: collect what is young, then freeze it
    assert [t for t, name in seen if name == "freeze"] == [10, 20, 30, 40, 50, 60]
    assert [t for t, name in seen if name == "collect"] == [10, 20, 30, 40, 50, 60]
    # every 30 s: unfreeze first, so that collect sweeps everything once
    assert [t for t, name in seen if name == "unfreeze"] == [30, 60]
    assert seen[seen.index((30, "unfreeze")) + 1] == (30, "collect")
    assert gc.isenabled()  # the real collector was never touched
