"""The shards one process owns, and the pure glue between them.

A dependency or a cron entry may name a job or queue in another shard. When that shard is in this
set, the hand-over is a direct call; when it is not, `settle()` returns it for the runtime to send
over a link to the owner. With all 32 shards in one set (the unit tests), the whole cluster's
semantics run synchronously in one process, which is how the core is tested.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from proto.commands import JobSpec
from shard.core import CoreConfig, Shard
from shard.routing import NUM_SHARDS, shard_of_id, shard_of_name


@dataclass(slots=True)
class Outbound:
    """Work for shards this set does not own."""

    dep_outcomes: list[tuple[int, int, bool]] = field(default_factory=list)  # (shard, parent, ok)
    cron_pushes: list[tuple[str, bytes, int]] = field(default_factory=list)  # (queue, data, prio)

    def __bool__(self) -> bool:
        return bool(self.dep_outcomes or self.cron_pushes)


class ShardSet:
    def __init__(
        self,
        indices: Iterable[int] = range(NUM_SHARDS),
        config: CoreConfig | None = None,
        *,
        track_changes: bool = False,
    ) -> None:
        self.shards: dict[int, Shard] = {
            i: Shard(i, config, track_changes=track_changes) for i in indices
        }

    def __iter__(self) -> Iterator[Shard]:
        return iter(self.shards.values())

    def local(self, shard: int) -> Shard | None:
        return self.shards.get(shard)

    def for_queue(self, queue: str) -> Shard | None:
        return self.shards.get(shard_of_name(queue))

    def for_id(self, job_id: int) -> Shard | None:
        return self.shards.get(shard_of_id(job_id))

    def watch_local(self, parents: Iterable[int], watcher: int) -> tuple[dict[int, str], list[int]]:
        """Register `watcher` with the local parents; return their states and the remote ones."""
        states: dict[int, str] = {}
        remote: list[int] = []
        for p in parents:
            s = self.shards.get(shard_of_id(p))
            if s is None:
                remote.append(p)
            else:
                states[p] = s.watch(p, watcher)
        return states, remote

    def push(self, queue: str, specs: list[JobSpec], now: int) -> list[int]:
        """Push with every parent local (always true when the set holds all shards)."""
        shard = self.shards[shard_of_name(queue)]
        parents = {p for spec in specs for p in spec.depends_on}
        states, remote = self.watch_local(parents, shard.index)
        if remote:
            raise ValueError("parents outside this set need the runtime's remote watch")
        ids = shard.push_batch(queue, specs, now, states)
        self.settle(now)
        return ids

    def settle(self, now: int) -> Outbound:
        """Deliver dependency outcomes and cron pushes between local shards until quiet."""
        out = Outbound()
        busy = True
        while busy:
            busy = False
            for s in self.shards.values():
                if s.dep_out:
                    batch, s.dep_out = s.dep_out, []
                    for target, parent, ok in batch:
                        t = self.shards.get(target)
                        if t is None:
                            out.dep_outcomes.append((target, parent, ok))
                        else:
                            t.resolve(parent, ok, now)
                            busy = True
                if s.cron_out:
                    fires, s.cron_out = s.cron_out, []
                    for queue, data, priority in fires:
                        t = self.shards.get(shard_of_name(queue))
                        if t is None:
                            out.cron_pushes.append((queue, data, priority))
                        else:
                            t.push(queue, JobSpec(data, priority=priority), now)
                            busy = True
        return out

    def tick(self, now: int) -> Outbound:
        for s in self.shards.values():
            if s.wake_at <= now:
                s.tick(now)
        return self.settle(now)

    def wake_at(self) -> int:
        return min(s.wake_at for s in self.shards.values())
