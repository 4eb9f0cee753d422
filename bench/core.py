"""In-process figures of the pure shard core: push, pull and ack per second, and bytes per job.

Run as `python -m bench.core` (the orchestrator starts it in its own process, so its memory does
not mix with anything else); prints one JSON object.

What it measures: one `shard.core.Shard` holding a backlog of `--backlog` waiting jobs in one
queue. Each repetition pushes `ops` more jobs into that queue, pulls `ops` jobs one at a time (the
oldest, since the queue is FIFO) and acks them, timing each phase separately; the backlog is the
same size after every repetition. One backlog size per process: the cyclic garbage collector
stays on, as in the server, and its full collections walk every live object of the process, so a
small backlog measured beside a big one would pay for the big one's collections. With `--serve`
the process keeps its backlog and runs one repetition per `rep` line on stdin, so that the
orchestrator can alternate repetitions of two processes (small and big backlog) and a noisy
machine weighs on both alike.

Full collections (generation 2) that happen during a repetition are counted and timed through
`gc.callbacks`: with a million live jobs each one walks every job, and they are what makes a big
backlog's figures (and a server's worst latencies) jumpy.

Memory: the resident set size (/proc/self/status VmRSS) before and after building the backlog,
divided by its job count (meaningful for a big backlog only). Every job carries its own ~35-byte
JSON payload (a distinct bytes object, as jobs parsed off the wire do), so nothing is shared
between jobs that would not be shared in the server.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from proto.commands import JobSpec
from shard.core import Shard

QUEUE = "bench"
NOW = 1_700_000_000_000


def _payload(i: int) -> bytes:
    return b'{"n":%d,"to":"user@example.com"}' % i


def rss_self() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def build(backlog: int) -> Shard:
    sh = Shard(0)
    push = sh.push
    for i in range(backlog):
        push(QUEUE, JobSpec(_payload(i)), NOW)
    sh.events.clear()
    sh.ready.clear()
    return sh


class FullGcClock:
    """Counts and times the collector's full (generation 2) collections, through gc.callbacks."""

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            dt = time.perf_counter() - self._t0
            self.count += 1
            self.total_s += dt
            self.max_s = max(self.max_s, dt)

    def reset(self) -> None:
        self.count, self.total_s, self.max_s = 0, 0.0, 0.0


GC_CLOCK = FullGcClock()


def one_rep(sh: Shard, ops: int, seq0: int) -> dict[str, float]:
    specs = [JobSpec(_payload(seq0 + i)) for i in range(ops)]
    GC_CLOCK.reset()
    push, pull, ack = sh.push, sh.pull, sh.ack
    t0 = time.perf_counter()
    for sp in specs:
        push(QUEUE, sp, NOW)
    t1 = time.perf_counter()
    got = []
    for _ in range(ops):
        got.extend(pull(QUEUE, 1, NOW))
    t2 = time.perf_counter()
    for j in got:
        ack(j.id, None, NOW)
    t3 = time.perf_counter()
    if len(got) != ops:
        raise RuntimeError(f"pulled {len(got)} of {ops} jobs")
    sh.events.clear()
    sh.ready.clear()
    return {
        "push": ops / (t1 - t0),
        "pull": ops / (t2 - t1),
        "ack": ops / (t3 - t2),
        "seconds": t3 - t0,
        "full_gc_count": GC_CLOCK.count,
        "full_gc_s": GC_CLOCK.total_s,
        "full_gc_max_s": GC_CLOCK.max_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__)
    ap.add_argument("--backlog", type=int, default=1_000_000)
    ap.add_argument("--ops", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--serve",
        action="store_true",
        help="build the backlog, print its figures, then run one repetition per 'rep' line on "
        "stdin (printing its figures) until 'quit' or EOF",
    )
    a = ap.parse_args(argv)

    gc.collect()
    rss0 = rss_self()
    t0 = time.perf_counter()
    sh = build(a.backlog)
    build_s = time.perf_counter() - t0
    gc.collect()
    rss1 = rss_self()
    out: dict[str, Any] = {
        "backlog": a.backlog,
        "ops": a.ops,
        "build_seconds": build_s,
        "rss_before": rss0,
        "rss_after_build": rss1,
        "bytes_per_job": (rss1 - rss0) / a.backlog if a.backlog else None,
        "python": sys.version.split()[0],
    }
    if a.serve:
        print(json.dumps(out), flush=True)
        for rep, line in enumerate(sys.stdin, 1):
            if line.strip() != "rep":
                break
            print(json.dumps(one_rep(sh, a.ops, 10_000_000 * rep)), flush=True)
        return 0
    out["runs"] = [one_rep(sh, a.ops, 10_000_000 * (rep + 1)) for rep in range(a.reps)]
    out["reps"] = a.reps
    out["waiting_after"] = sum(q.waiting for q in sh.queues.values())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
