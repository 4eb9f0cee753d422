"""The router: where a command runs.

Every transport (TCP, Unix socket, HTTP, gRPC) hands typed commands here. A command that names a
queue, a job id, a cron name or a worker id has exactly one owner (`shard % workers`): run it on
the local `ShardHost` if that is us, otherwise forward the request line to the owner over its
link. Commands over every shard (STATS, METRICS, LISTQUEUES, CRONLIST, ACKB, listings) are
scattered to every worker and their parts merged here.

The answer is a `Result` (a reply dict, reply JSON bytes from another worker, or a QueueError)
right away when it can be, else a `Pending` of one. Transports convert with `to_bytes` (TCP) or
`to_obj` (HTTP, gRPC).

Requests from one client to one owner travel in order over one link, and local commands run
synchronously, so a client sees the effects of its earlier requests in its later ones even when
their replies come back out of order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from gateway.links import PART, RELEASE, REQ
from proto import commands as c
from proto.errors import QueueError
from shard.pending import Pending, gather
from shard.routing import NUM_SHARDS, owner_of, shard_of_name
from shard.runtime import SCATTER_KIND, Ctx, merge_parts

if TYPE_CHECKING:
    from gateway.node import Node

Result = dict[str, Any] | bytes | QueueError
_ERROR_PREFIX = b'{"ok":false,"error":'


def to_bytes(r: Result) -> bytes:
    """A result as one JSON reply (no newline)."""
    if type(r) is bytes:
        return r
    if isinstance(r, QueueError):
        return _ERROR_PREFIX + orjson.dumps(r.message) + b"}"
    return orjson.dumps(r)


def to_obj(r: Result) -> dict[str, Any]:
    """A result as a dict; raises the QueueError if it is one."""
    if isinstance(r, QueueError):
        raise r
    if type(r) is bytes:
        obj: dict[str, Any] = orjson.loads(r)
        return obj
    assert isinstance(r, dict)
    return r


class ClientCtx(Ctx):
    """A client connection as the router sees it: who it is and where it pulled from."""

    __slots__ = ("remote_pulls",)

    def __init__(self, owner: Any) -> None:
        super().__init__(owner)
        self.remote_pulls: set[int] = set()  # workers holding jobs this client pulled


def release_client(node: Node, ctx: ClientCtx, parked: Iterable[Pending[Result]]) -> None:
    """A client is gone (TCP connection closed, gRPC consumer stream ended): its parked pulls
    are cancelled (never handed a job) and every job it pulled and did not finish is failed
    with `Worker connection lost`, here and on each worker it pulled from through a link.
    Cancel first: a forwarded pull's CANCEL then reaches its owner before the RELEASE."""
    for p in list(parked):
        p.cancel()
    token = ctx.owner
    node.host.release_owner(token)
    for w in ctx.remote_pulls:
        node.hub.send(w, [RELEASE, token], buffer=False)


def route_shard(cmd: c.Command) -> int | None:
    """The one shard a command belongs to, or None if it spans every shard."""
    r = cmd.route
    if r == "queue":
        queue: str = getattr(cmd, "queue")  # noqa: B009 (the route says it has one)
        return shard_of_name(queue)
    if r == "id":
        job_id: int = getattr(cmd, "id")  # noqa: B009
        return job_id % NUM_SHARDS
    if r == "name":
        if type(cmd) is c.Heartbeat:
            return shard_of_name(cmd.worker_id)
        name: str = getattr(cmd, "cron_name")  # noqa: B009
        return shard_of_name(name)
    return None


class Router:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.index = node.index
        self.workers = node.workers
        self.host = node.host

    def owner(self, cmd: c.Command) -> int | None:
        s = route_shard(cmd)
        return None if s is None else owner_of(s, self.workers)

    def submit(self, cmd: c.Command, raw: bytes, ctx: Ctx) -> Result | Pending[Result]:
        """Run `cmd`; `raw` is its JSON request (forwarded as is when the owner is remote)."""
        s = route_shard(cmd)
        if s is None:
            return self._scatter(cmd, ctx)
        owner = s % self.workers
        if owner == self.index:
            try:
                local = self.host.execute(cmd, ctx)
            except QueueError as e:
                return e
            return local  # type: ignore[return-value]  # Pending is invariant; the values fit
        return self.forward(owner, cmd, raw, ctx)

    def forward(self, owner: int, cmd: c.Command, raw: bytes, ctx: Ctx) -> Pending[Result]:
        p: Pending[Result] = Pending()
        rid = self.node.hub.call(owner, REQ, ctx.owner, raw, p.resolve)
        if type(cmd) is c.Pull or type(cmd) is c.PullBatch:
            if isinstance(ctx, ClientCtx):
                ctx.remote_pulls.add(owner)
            hub = self.node.hub
            p.on_cancel = lambda: hub.cancel(owner, rid)
        return p

    # ------------------------------------------------------------ scatter / gather

    def part_call(self, worker: int, name: str, args: Any) -> Any:
        """One worker's part: a value (local), or a Pending of the value or a QueueError."""
        if worker == self.index:
            try:
                return self.host.part(name, args)
            except QueueError as e:
                return e
        p: Pending[Any] = Pending()
        self.node.hub.call(worker, PART, name, args, p.resolve)
        return p

    def _scatter(self, cmd: c.Command, ctx: Ctx) -> Result | Pending[Result]:
        kind = SCATTER_KIND.get(type(cmd))
        if kind is None:
            return QueueError(f"Invalid: {cmd.name} cannot be routed")
        workers: Sequence[int] = range(self.workers)
        merge_args: Any = None
        if isinstance(cmd, c.AckBatch):
            by_owner: dict[int, list[int]] = {}
            for i in cmd.ids:
                by_owner.setdefault(owner_of(i % NUM_SHARDS, self.workers), []).append(i)
            parts = [self.part_call(w, "ackb", ids) for w, ids in by_owner.items()]
            if not parts:
                return {"ok": True, "ids": [0]}
        elif isinstance(cmd, c.ListJobs):
            args = [cmd.queue, cmd.state, cmd.offset + cmd.limit]
            if cmd.queue is not None:  # one queue lives on one worker
                workers = [owner_of(shard_of_name(cmd.queue), self.workers)]
            parts = [self.part_call(w, kind, args) for w in workers]
            merge_args = (cmd.offset, cmd.limit)
        else:
            parts = [self.part_call(w, kind, None) for w in workers]

        def merge(values: list[Any]) -> Result:
            for v in values:
                if isinstance(v, QueueError):
                    return v
            for v in values:  # an ACKB part may answer with its commit still pending
                if isinstance(v, Pending):
                    raise RuntimeError("unresolved part")
            return merge_parts(kind, values, merge_args)

        # An ACKB part that must wait for its commit resolves to a Pending of the reply.
        if any(isinstance(v, Pending) for v in parts):
            return _gather_deep(parts, merge)
        return merge(parts)


def _gather_deep(items: list[Any], done: Any) -> Pending[Result]:
    """Like `gather`, but a part that resolves to another Pending is waited for too."""
    out: Pending[Result] = Pending()

    def step(values: list[Any]) -> None:
        if any(isinstance(v, Pending) for v in values):
            gather(values, step)
        else:
            try:
                out.resolve(done(values))
            except QueueError as e:
                out.resolve(e)

    gather(items, lambda vs: step(vs))
    return out
