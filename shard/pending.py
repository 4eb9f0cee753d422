"""`Pending`: a result that is not there yet, delivered by callback.

The hot path avoids one trio task per request: a forwarded request, a parked pull or a reply
waiting for a commit is a `Pending` that whoever produces the result resolves, and whoever
wants it registers one callback with `then()`. Callbacks run synchronously in the resolver's
context, so they must be short and must not raise (errors are caught and logged here, so one
bad callback never breaks the link reader or timer that resolved it). Code that *can* await (the
HTTP and gRPC gateways) uses `wait()`.

`cancel()` asks the producer to give up (a parked pull whose client went away); the producer's
`on_cancel` hook decides what that means. A cancelled Pending may still resolve if the result
was already on its way; callers that cancel simply stop caring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")
log = logging.getLogger("magicqueue")


class Pending(Generic[T]):
    __slots__ = ("_callback", "_done", "_value", "on_cancel")

    def __init__(self) -> None:
        self._callback: Callable[[T], Any] | None = None
        self._done = False
        self._value: Any = None
        self.on_cancel: Callable[[], Any] | None = None

    @property
    def done(self) -> bool:
        return self._done

    def then(self, callback: Callable[[T], Any]) -> None:
        if self._done:
            _run(callback, self._value)
        else:
            self._callback = callback

    def resolve(self, value: T) -> None:
        if self._done:
            return
        self._done = True
        self._value = value
        self.on_cancel = None
        cb = self._callback
        if cb is not None:
            self._callback = None
            _run(cb, value)

    def cancel(self) -> None:
        hook = self.on_cancel
        self.on_cancel = None
        if hook is not None and not self._done:
            _run(lambda _: hook(), None)

    async def wait(self) -> T:
        if not self._done:
            ev = trio.Event()
            self.then(lambda _v: ev.set())
            try:
                await ev.wait()
            except BaseException:
                self.cancel()
                raise
        value: T = self._value
        return value


def _run(cb: Callable[[Any], Any], value: Any) -> None:
    try:
        cb(value)
    except Exception:
        log.exception("callback failed")


def resolved(value: T) -> Pending[T]:
    p: Pending[T] = Pending()
    p.resolve(value)
    return p


def gather(items: list[Any], done: Callable[[list[Any]], Any]) -> Pending[Any]:
    """Wait for every item (a value or a Pending) and resolve with `done(values)`."""
    out: Pending[Any] = Pending()
    values: list[Any] = list(items)
    left = [0]

    def finish() -> None:
        try:
            out.resolve(done(values))
        except Exception as e:  # a merge that fails must still answer
            log.exception("gather merge failed")
            out.resolve(e)

    for i, it in enumerate(items):
        if isinstance(it, Pending):
            left[0] += 1

            def store(v: Any, i: int = i) -> None:
                values[i] = v
                left[0] -= 1
                if left[0] == 0:
                    finish()

            it.then(store)
    if left[0] == 0:
        finish()
    return out
