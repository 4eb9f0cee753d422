"""`python -m bench`: MagicQueue side by side with BullMQ, and the in-process core figures.

Theory of operation
- MagicQueue runs as a real cluster (`python -m cluster`, WORKERS = CPU count, in memory, free
  ports) driven by the C load generator (`bench/loadgen.c`, compiled here into `bench/build/`).
  BullMQ runs in one long-lived node process (`bench/bullmq_side.mjs`, packages pinned by
  `bench/package-lock.json`, installed with `npm ci`) against the Redis on 127.0.0.1:6379, under
  its own key prefix, whose keys are deleted after every run.
- The machine is small and noisy, so every workload is run `reps` times (3) with the two sides
  interleaved (MQ then BullMQ, then BullMQ then MQ, ...), and the table quotes medians with the
  min-max spread. Each run reports the CPU the server side, the client side and the rest of the
  machine used during its timed phase, so a slow figure can be told apart from a busy machine.
- Every MagicQueue run uses fresh queue names, so "empty queue" means the queue is empty. The
  1M-waiting rows run on a second, fresh cluster: the workers' RSS is read before and after one
  queue is preloaded with 1,000,000 jobs, then sequential push and full cycle run on that queue.
  BullMQ's preload has a time budget; if it runs out, fewer jobs are preloaded and the table says
  how many.
- The pure core (`shard.core.Shard`) is measured in child processes (`python -m bench.core`), one
  per backlog size (see that module for why).
- HTTP and gRPC run on a third cluster with those services on; PostgreSQL persistence runs the
  main MagicQueue workloads on a cluster with DATABASE_URL pointing at a fresh database
  `bench_<timestamp>` (created with createdb, dropped after) when `--with-pg` is given or
  DATABASE_URL is set.
- A worker that dies or a server that stops answering is recorded as an incident, printed at the
  end, and the cluster is restarted for the next workload.

The result of the run is printed and written to `bench/results/<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import report
from bench.bull import BullSide, ensure_node_modules, redis_available
from bench.mq import BENCH_DIR, ROOT, BenchError, Loadgen, MQCluster, queue_names
from shard.routing import owner_of, shard_of_name

RESULTS_DIR = BENCH_DIR / "results"
WORKLOADS = [
    "seq_push",
    "batch_push",
    "cycle",
    "push_c50",
    "drain",
    "lib_worker",
    "getstate",
    "big",
    "core",
    "http",
    "grpc",
    "pg",
]
DRAIN_CONNS = 4  # "one or a few connections": two per worker on this 2-vCPU machine
BULL_DRAIN_CONCURRENCY = 50
LOADGEN_DEADLINE_S = 180.0
# BullMQ commands whose loops take a time budget (see bench/bullmq_side.mjs)
BULL_TIMED_OPS = {"seq_push", "batch_push", "cycle", "push_conns", "drain", "getstate"}


@dataclass(frozen=True)
class Sizes:
    reps: int
    seq: int = 10_000
    batch_total: int = 100_000
    batch: int = 1_000
    cycle: int = 5_000
    c50_total: int = 50_000
    c50_conns: int = 50
    drain: int = 100_000
    getstate: int = 10_000
    big: int = 1_000_000
    big_seq: int = 10_000
    big_cycle: int = 5_000
    bull_preload_budget_s: float = 60.0
    bull_budget_s: float = 10.0
    pg_budget_s: float = 6.0
    core_small: int = 1_000
    core_big: int = 1_000_000
    core_ops: int = 100_000
    http: int = 2_000
    http_conns: int = 50
    grpc: int = 3_000


FULL = Sizes(reps=3)
QUICK = Sizes(
    reps=1,
    seq=2_000,
    batch_total=20_000,
    cycle=1_000,
    c50_total=10_000,
    drain=20_000,
    getstate=2_000,
    big=100_000,
    big_seq=2_000,
    big_cycle=1_000,
    bull_preload_budget_s=20.0,
    bull_budget_s=5.0,
    pg_budget_s=5.0,
    core_big=100_000,
    core_ops=20_000,
    http=1_000,
    grpc=1_000,
)


class NotAvailable(Exception):
    """A section that cannot be measured on this build or machine; the message says why."""


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _same_owner(prefix: str, like: str, workers: int) -> list[str]:
    """A fresh queue name owned by the same worker as queue `like`."""
    owner = owner_of(shard_of_name(like), workers)
    return [
        n
        for n in queue_names(prefix, workers, workers)
        if owner_of(shard_of_name(n), workers) == owner
    ][:1]


def _short(r: dict[str, Any]) -> bool:
    """A BullMQ run its time budget stopped before the requested count."""
    return bool(r.get("requested")) and r["units"] < r["requested"]


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


class Bench:
    def __init__(self, sizes: Sizes, only: set[str], skip_bullmq: bool, with_pg: bool) -> None:
        self.sizes = sizes
        self.only = only
        self.skip_bullmq = skip_bullmq
        self.with_pg = with_pg
        self.t0 = time.monotonic()
        self.ts = _stamp()
        self.workers = os.cpu_count() or 1
        self.logdir = RESULTS_DIR / "logs" / self.ts
        self.loadgen = Loadgen()
        self.bull: BullSide | None = None
        self.cluster: MQCluster | None = None
        self.n_clusters = 0
        self.res: dict[str, Any] = {
            "meta": {
                "started": self.ts,
                "reps": sizes.reps,
                "quick": sizes.reps == 1,
                "workers": self.workers,
                "cpus": os.cpu_count(),
                "sizes": sizes.__dict__,
                "only": sorted(only),
            },
            "workloads": {},
            "incidents": [],
        }

    # ------------------------------------------------------------ helpers

    def wanted(self, name: str) -> bool:
        return not self.only or name in self.only

    def say(self, msg: str) -> None:
        t = time.monotonic() - self.t0
        print(f"[{int(t) // 60}:{int(t) % 60:02d}] {msg}", file=sys.stderr, flush=True)

    def start_cluster(self, label: str, **env: str) -> MQCluster:
        self.n_clusters += 1
        log = self.logdir / f"cluster-{self.n_clusters}-{label}.log"
        c = MQCluster(self.workers, log, env=dict(env)).start()
        self.say(f"cluster '{label}' up: tcp port {c.port}, worker pids {c.pids()} (log {log})")
        return c

    def check_cluster(self, what: str) -> None:
        """Record a dead or restarted worker as an incident and start a fresh cluster."""
        c = self.cluster
        assert c is not None
        died = c.restarts_seen()
        if c.alive() and not died:
            return
        msg = f"during {what}: a worker process died; " + ("; ".join(died) or "no restart logged")
        self.res["incidents"].append(msg + f" (log: {c.log_path})")
        self.say("INCIDENT " + msg)
        c.stop()
        self.cluster = self.start_cluster("restarted")

    def mq(self, mode: str, what: str, **kw: Any) -> dict[str, Any]:
        if self.cluster is not None and self.cluster.persistence == "postgresql":
            # durable requests are slow; a time budget keeps the section bounded
            kw.setdefault("budget_s", self.sizes.pg_budget_s if "prefill" not in what else 0.0)
        c = self.cluster
        assert c is not None
        try:
            r = self.loadgen.run(mode, c.port, watch=c.pids(), deadline_s=LOADGEN_DEADLINE_S, **kw)
        except BenchError as e:
            self.res["incidents"].append(f"during {what}: {e}")
            self.say(f"INCIDENT during {what}: {e}")
            self.check_cluster(what)
            raise
        r["cpu_client_s"] = r["cpu_self_s"]
        if r.get("errors") or r.get("timed_out"):
            msg = (
                f"during {what}: {r.get('errors')} error replies, timed out: {r.get('timed_out')};"
                f" first: {r.get('first_error')}"
            )
            self.res["incidents"].append(msg)
            self.say("INCIDENT " + msg)
        self.check_cluster(what)
        return r

    def bull_call(self, op: str, **kw: Any) -> dict[str, Any]:
        assert self.bull is not None
        if op in BULL_TIMED_OPS:
            kw.setdefault("budget_s", self.sizes.bull_budget_s)
        r = self.bull.call(op, **kw)
        r["cpu_server_s"] = r.get("cpu_redis_s", -1)
        r["cpu_client_s"] = r.get("cpu_self_s", -1)
        return r

    def interleave(
        self,
        key: str,
        units: int,
        mq_run: Callable[[int], dict[str, Any]],
        bull_run: Callable[[int], dict[str, Any]] | None,
        *,
        mq_control: Callable[[int], dict[str, Any]] | None = None,
        flush_bull: bool = True,
    ) -> None:
        """Run every side `reps` times, reversing their order on every other repetition.

        `mq_control` is an extra MagicQueue run kept beside the main one (the empty-queue
        control of the 1M rows). BullMQ's keys are deleted after each of its runs unless
        `flush_bull` is false (the 1M rows keep their preloaded queue).
        """
        wl: dict[str, Any] = {"units": units, "mq": [], "bull": [] if bull_run else None}
        if mq_control is not None:
            wl["mq_control"] = []
        self.res["workloads"][key] = wl
        sides: list[tuple[str, Callable[[int], dict[str, Any]]]] = [("mq", mq_run)]
        if mq_control is not None:
            sides.append(("mq_control", mq_control))
        if bull_run is not None:
            sides.append(("bull", bull_run))
        names = {"mq": "MagicQueue", "mq_control": "MagicQueue (control)", "bull": "BullMQ"}
        for rep in range(self.sizes.reps):
            for side, fn in sides if rep % 2 == 0 else reversed(sides):
                r = fn(rep)
                wl[side].append(r)
                self.say(
                    f"{key} rep {rep + 1}/{self.sizes.reps} {names[side]}: "
                    f"{report.fmt_rate(r['ops_per_s'])} ops/s, "
                    f"p99 {report.fmt_us(r.get('p99_us'))}, {r['seconds']:.2f} s"
                    + (f" ({r['units']:,} of {r['requested']:,})" if _short(r) else "")
                )
                if side == "bull" and flush_bull:
                    self.bull_call("flush")
        short = [r for r in wl["bull"] or [] if _short(r)]
        if short:
            wl["bull_note"] = (
                f"BullMQ stopped at {min(r['units'] for r in short):,}"
                f"-{max(r['units'] for r in short):,} of {units:,} jobs in {len(short)} of "
                f"{len(wl['bull'])} runs ({self.sizes.bull_budget_s:.0f} s time budget per run);"
                " its rate covers the jobs done"
            )

    # ------------------------------------------------------------ main workloads

    def main_workloads(self) -> None:
        s, W = self.sizes, self.workers
        bull = self.bull is not None

        if self.wanted("seq_push"):
            self.interleave(
                "seq_push",
                s.seq,
                lambda rep: self.mq(
                    "push", "seq_push", queues=queue_names(f"seq{rep}", 1, W), total=s.seq
                ),
                (lambda rep: self.bull_call("seq_push", queue=f"seq{rep}", n=s.seq))
                if bull
                else None,
            )
        if self.wanted("batch_push"):
            self.interleave(
                "batch_push",
                s.batch_total,
                lambda rep: self.mq(
                    "pushb",
                    "batch_push",
                    queues=queue_names(f"batch{rep}", 1, W),
                    total=s.batch_total,
                    batch=s.batch,
                ),
                (
                    lambda rep: self.bull_call(
                        "batch_push", queue=f"batch{rep}", n=s.batch_total, batch=s.batch
                    )
                )
                if bull
                else None,
            )
        if self.wanted("cycle"):
            self.interleave(
                "cycle",
                s.cycle,
                lambda rep: self.mq(
                    "cycle", "cycle", queues=queue_names(f"cycle{rep}", 1, W), total=s.cycle
                ),
                (lambda rep: self.bull_call("cycle", queue=f"cycle{rep}", n=s.cycle))
                if bull
                else None,
            )
        if self.wanted("push_c50"):
            self.interleave(
                "push_c50",
                s.c50_total,
                lambda rep: self.mq(
                    "push",
                    "push_c50",
                    queues=queue_names(f"c50r{rep}", s.c50_conns, W),
                    total=s.c50_total,
                    conns=s.c50_conns,
                ),
                (
                    lambda rep: self.bull_call(
                        "push_conns", queue=f"c50r{rep}", n=s.c50_total, conns=s.c50_conns
                    )
                )
                if bull
                else None,
            )
        if self.wanted("drain"):
            self.interleave("drain", s.drain, self._mq_drain, self._bull_drain if bull else None)
            self.res["workloads"]["drain"]["note"] = (
                f"MagicQueue: {DRAIN_CONNS} connections (PULLB count {s.batch} + ACKB), "
                f"BullMQ: one Worker, concurrency {BULL_DRAIN_CONCURRENCY}; jobs pre-added, untimed"
            )
        if self.wanted("lib_worker"):
            self.interleave(
                "lib_worker",
                s.drain,
                self._mq_lib_worker,
                self._bull_drain if bull else None,
            )
            self.res["workloads"]["lib_worker"]["note"] = (
                f"MagicQueue: magicqueue_client.Worker, concurrency {BULL_DRAIN_CONCURRENCY}, "
                "async no-op handler, client on asyncio in the bench process; BullMQ: one Worker, "
                f"concurrency {BULL_DRAIN_CONCURRENCY}; jobs pre-added, untimed"
            )
        if self.wanted("getstate"):
            self.interleave(
                "getstate",
                s.getstate,
                lambda rep: self.mq(
                    "getstate", "getstate", queues=queue_names(f"gs{rep}", 1, W), total=s.getstate
                ),
                (lambda rep: self.bull_call("getstate", queue=f"gs{rep}", n=s.getstate))
                if bull
                else None,
            )

    def _mq_drain(self, rep: int) -> dict[str, Any]:
        s = self.sizes
        qs = queue_names(f"drain{rep}", DRAIN_CONNS, self.workers)
        # untimed prefill, the same split of jobs over the same queues as the drain
        self.mq("pushb", "drain prefill", queues=qs, total=s.drain, conns=DRAIN_CONNS, batch=2000)
        return self.mq("drain", "drain", queues=qs, total=s.drain, conns=DRAIN_CONNS, batch=s.batch)

    def _mq_lib_worker(self, rep: int) -> dict[str, Any]:
        """End to end: this repository's Worker library drains pre-pushed no-op jobs."""
        from bench import client_worker

        c = self.cluster
        assert c is not None
        r = client_worker.run("127.0.0.1", c.port, self.sizes.drain, BULL_DRAIN_CONCURRENCY)
        self.check_cluster("lib_worker")
        # No CPU split here (the report shows "-"): the client runs inside this process.
        return {
            "ops_per_s": r["jobs_per_s"],
            "seconds": r["drain_s"],
            "units": r["jobs"],
            "requested": r["jobs"],
        }

    def _bull_drain(self, rep: int) -> dict[str, Any]:
        return self.bull_call(
            "drain", queue=f"drain{rep}", n=self.sizes.drain, concurrency=BULL_DRAIN_CONCURRENCY
        )

    # ------------------------------------------------------------ 1M waiting

    def big_phase(self) -> None:
        s, W = self.sizes, self.workers
        big: dict[str, Any] = {}
        self.res["big"] = big
        c = self.cluster
        assert c is not None
        q = queue_names("big", 1, W)
        rss0 = c.rss()
        self.say(f"preloading {s.big:,} jobs into MagicQueue queue {q[0]} ...")
        pre = self.mq("pushb", "1M preload", queues=q * 2, total=s.big, conns=2, batch=2000)
        rss1 = c.rss()
        big.update(
            mq_preload=pre,
            mq_jobs=s.big,
            mq_rss_before=rss0,
            mq_rss_after=rss1,
            mq_bytes_per_job=(rss1 - rss0) / s.big,
        )
        self.say(
            f"MagicQueue preload: {pre['seconds']:.1f} s, RSS +{(rss1 - rss0) / 2**20:.0f} MiB "
            f"= {(rss1 - rss0) / s.big:.0f} B/job"
        )
        bull = self.bull is not None
        if bull:
            self.say(f"preloading BullMQ (budget {s.bull_preload_budget_s:.0f} s) ...")
            bp = self.bull_call(
                "preload", queue="big", n=s.big, chunk=10_000, budget_s=s.bull_preload_budget_s
            )
            big["bull_preload"] = bp
            if bp["units"] < s.big:
                big["bull_note"] = (
                    f"preload stopped at {bp['units']:,} of {s.big:,} jobs after its "
                    f"{s.bull_preload_budget_s:.0f} s budget; BullMQ's 1M rows ran with that many"
                )
            self.say(f"BullMQ preload: {bp['units']:,} jobs in {bp['seconds']:.1f} s")
        # control: the same workload on an empty queue of the same worker, on this cluster, at
        # the same time; it tells a slower 1M figure from a slower machine
        self.interleave(
            "seq_push_1m",
            s.big_seq,
            lambda rep: self.mq("push", "seq_push 1M", queues=q, total=s.big_seq),
            (lambda rep: self.bull_call("seq_push", queue="big", n=s.big_seq)) if bull else None,
            mq_control=lambda rep: self.mq(
                "push",
                "seq_push control",
                queues=_same_owner(f"ctl-seq{rep}", q[0], W),
                total=s.big_seq,
            ),
            flush_bull=False,
        )
        self.interleave(
            "cycle_1m",
            s.big_cycle,
            lambda rep: self.mq("cycle", "cycle 1M", queues=q, total=s.big_cycle),
            (lambda rep: self.bull_call("cycle", queue="big", n=s.big_cycle)) if bull else None,
            mq_control=lambda rep: self.mq(
                "cycle",
                "cycle control",
                queues=_same_owner(f"ctl-cyc{rep}", q[0], W),
                total=s.big_cycle,
            ),
            flush_bull=False,
        )
        if big.get("bull_note"):
            for key in ("seq_push_1m", "cycle_1m"):
                wl = self.res["workloads"][key]
                wl["bull_note"] = "; ".join(filter(None, [big["bull_note"], wl.get("bull_note")]))

    # ------------------------------------------------------------ core

    def core_phase(self) -> None:
        """Two `bench.core --serve` processes (1k and 1M backlog), repetitions alternated."""
        s = self.sizes
        core: dict[str, Any] = {}
        self.res["core"] = core
        procs: dict[str, subprocess.Popen[str]] = {}
        try:
            for label, backlog in (("small", s.core_small), ("big", s.core_big)):
                self.say(f"in-process core: building a backlog of {backlog:,} ...")
                cmd = [sys.executable, "-m", "bench.core", "--serve", "--ops", str(s.core_ops)]
                p = subprocess.Popen(
                    [*cmd, "--backlog", str(backlog)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                procs[label] = p
                core[label] = self._core_reply(p)  # waits until the backlog is built
                core[label]["runs"] = []
            for rep in range(s.reps):
                order = ["small", "big"] if rep % 2 == 0 else ["big", "small"]
                for label in order:
                    p = procs[label]
                    assert p.stdin is not None
                    p.stdin.write("rep\n")
                    p.stdin.flush()
                    r = self._core_reply(p)
                    core[label]["runs"].append(r)
                    self.say(
                        f"core {label} rep {rep + 1}: push {report.fmt_rate(r['push'])}/s, "
                        f"pull {report.fmt_rate(r['pull'])}/s, ack {report.fmt_rate(r['ack'])}/s"
                    )
        finally:
            for p in procs.values():
                if p.poll() is None:
                    assert p.stdin is not None
                    p.stdin.close()
                    try:
                        p.wait(30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(10)

    @staticmethod
    def _core_reply(p: subprocess.Popen[str]) -> dict[str, Any]:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise BenchError(f"bench.core exited with {p.wait()}")
        out: dict[str, Any] = json.loads(line)
        return out

    # ------------------------------------------------------------ HTTP and gRPC

    def http_phase(self, c: MQCluster) -> dict[str, Any]:
        """Push and pull requests per second over 50 keep-alive HTTP/1.1 connections."""
        if not c.http_port:
            raise NotAvailable("the cluster did not report an HTTP port (HTTP service not enabled)")
        s, W = self.sizes, self.workers
        out: dict[str, Any] = {
            "title": f"{s.http_conns} keep-alive connections, C client (bench/loadgen.c)",
            "workloads": {"push (POST /queues/{q}/jobs)": [], "pull (GET ...?count=1)": []},
        }
        for rep in range(s.reps):
            qs = queue_names(f"http{rep}", s.http_conns, W)
            r = self.loadgen.run(
                "http_push",
                c.http_port,
                queues=qs,
                total=s.http,
                conns=s.http_conns,
                watch=c.pids(),
                deadline_s=LOADGEN_DEADLINE_S,
            )
            r["cpu_client_s"] = r["cpu_self_s"]
            out["workloads"]["push (POST /queues/{q}/jobs)"].append(r)
            self.say(f"http push rep {rep + 1}: {report.fmt_rate(r['ops_per_s'])} req/s")
            # pull what was just pushed: the same queues, one pull per pushed job
            r = self.loadgen.run(
                "http_pull",
                c.http_port,
                queues=qs,
                total=s.http,
                conns=s.http_conns,
                watch=c.pids(),
                deadline_s=LOADGEN_DEADLINE_S,
            )
            r["cpu_client_s"] = r["cpu_self_s"]
            out["workloads"]["pull (GET ...?count=1)"].append(r)
            self.say(
                f"http pull rep {rep + 1}: {report.fmt_rate(r['ops_per_s'])} req/s, "
                f"{r['empty_pulls']} empty"
            )
        empties = sum(r["empty_pulls"] for r in out["workloads"]["pull (GET ...?count=1)"])
        if empties:
            out["note"] = f"{empties} pulls found their queue empty"
        return out

    def grpc_phase(self, c: MQCluster) -> dict[str, Any]:
        """gRPC jobs per second, with the gRPC engineer's client (`bench/grpc_load.py`)."""
        if not c.grpc_port:
            raise NotAvailable("the cluster did not report a gRPC port (gRPC service not enabled)")
        if not (BENCH_DIR / "grpc_load.py").exists():
            raise NotAvailable("bench/grpc_load.py (the gRPC load client) is missing")
        s = self.sizes
        figures = {
            "push, sequential": "push_seq_per_s",
            "push, 64 in flight": "push_inflight_per_s",
            "PushBatch of 1,000": "push_batch_per_s",
            "drain PullBatch+AckBatch": "drain_pull_ack_batch_per_s",
        }
        out: dict[str, Any] = {
            "title": "one grpcio channel (Python client, bench/grpc_load.py), "
            f"{s.grpc:,} jobs per measurement",
            "workloads": {k: [] for k in figures},
        }
        cpu_srv, cpu_cli, wall = 0.0, 0.0, 0.0
        for rep in range(s.reps):
            srv0 = sum(proc_cpu_s(p) for p in c.pids())
            cli0 = _children_cpu_s()
            t0 = time.monotonic()
            cmd = [sys.executable, "-m", "bench.grpc_load", "--port", str(c.grpc_port)]
            r = subprocess.run(
                [*cmd, "-n", str(s.grpc)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=LOADGEN_DEADLINE_S,
            )
            wall += time.monotonic() - t0
            cpu_srv += sum(proc_cpu_s(p) for p in c.pids()) - srv0
            cpu_cli += _children_cpu_s() - cli0
            if r.returncode != 0:
                raise BenchError(f"bench.grpc_load failed ({r.returncode}):\n{r.stderr[-2000:]}")
            fig = json.loads(r.stdout)
            for label, key in figures.items():
                out["workloads"][label].append({"ops_per_s": fig[key], "raw": fig})
            self.say(f"grpc rep {rep + 1}: " + ", ".join(f"{k} {fig[k]}" for k in figures.values()))
        out["note"] = (
            f"CPU over the whole client runs ({wall:.1f} s): workers {cpu_srv:.1f} s, "
            f"Python gRPC client {cpu_cli:.1f} s"
        )
        return out

    def services_phase(self) -> None:
        want_http, want_grpc = self.wanted("http"), self.wanted("grpc")
        if not (want_http or want_grpc):
            return
        c = self.start_cluster("http-grpc", HTTP="1", GRPC="1")
        try:
            for key, fn in (("http", self.http_phase), ("grpc", self.grpc_phase)):
                if not self.wanted(key):
                    continue
                try:
                    self.res[key] = fn(c)
                except NotAvailable as e:
                    self.res[key] = {"skipped": str(e)}
                    self.say(f"{key}: skipped — {e}")
                except BenchError as e:
                    self.res[key] = {"skipped": f"failed: {e}"}
                    self.res["incidents"].append(f"during {key}: {e}")
        finally:
            code = c.stop()
            if code not in (0, None):
                self.res["incidents"].append(f"HTTP/gRPC cluster exited with {code} on SIGTERM")

    # ------------------------------------------------------------ PostgreSQL

    def pg_phase(self) -> None:
        url = os.environ.get("DATABASE_URL", "").strip()
        if not (self.with_pg or url):
            self.res["pg"] = {
                "skipped": "DATABASE_URL is not set (pass --with-pg to use a local PostgreSQL "
                "on 127.0.0.1)"
            }
            return
        if shutil.which("createdb") is None or shutil.which("dropdb") is None:
            self.res["pg"] = {"skipped": "createdb/dropdb not found (PostgreSQL client tools)"}
            return
        db = f"bench_{self.ts.lower()}"
        base = urlsplit(url or "postgresql://127.0.0.1/postgres")
        bench_url = urlunsplit(base._replace(path=f"/{db}"))
        conn_args = [f"--maintenance-db={urlunsplit(base)}"] if url else ["-h", "127.0.0.1"]
        r = subprocess.run(["createdb", *conn_args, db], capture_output=True, text=True)
        if r.returncode != 0:
            self.res["pg"] = {"skipped": f"createdb {db} failed: {r.stderr.strip()}"}
            return
        s, W = self.sizes, self.workers
        sec: dict[str, Any] = {"title": f"cluster with DATABASE_URL=…/{db}", "workloads": {}}
        self.res["pg"] = sec
        c: MQCluster | None = None
        try:
            c = self.start_cluster("pg", DATABASE_URL=bench_url)
            if c.persistence != "postgresql":
                raise NotAvailable(f"the cluster reports persistence '{c.persistence}'")
            self.cluster = c
            plan: list[tuple[str, Callable[[int], dict[str, Any]]]] = [
                (
                    "sequential push",
                    lambda rep: self.mq(
                        "push", "pg seq", queues=queue_names(f"pgs{rep}", 1, W), total=s.seq
                    ),
                ),
                (
                    "batch push",
                    lambda rep: self.mq(
                        "pushb",
                        "pg batch",
                        queues=queue_names(f"pgb{rep}", 1, W),
                        total=s.batch_total,
                        batch=s.batch,
                    ),
                ),
                (
                    "full cycle",
                    lambda rep: self.mq(
                        "cycle", "pg cycle", queues=queue_names(f"pgc{rep}", 1, W), total=s.cycle
                    ),
                ),
                (
                    "push over 50 connections",
                    lambda rep: self.mq(
                        "push",
                        "pg c50",
                        queues=queue_names(f"pgp{rep}", s.c50_conns, W),
                        total=s.c50_total,
                        conns=s.c50_conns,
                    ),
                ),
                ("drain", self._mq_drain),
            ]
            for name, fn in plan:
                sec["workloads"][name] = []
                for rep in range(s.reps):
                    fig = fn(rep)
                    sec["workloads"][name].append(fig)
                    self.say(
                        f"pg {name} rep {rep + 1}: {report.fmt_rate(fig['ops_per_s'])} ops/s"
                        + (f" ({fig['units']:,} of {fig['requested']:,})" if _short(fig) else "")
                    )
            short = [k for k, runs in sec["workloads"].items() if any(map(_short, runs))]
            if short:
                sec["note"] = (
                    f"{', '.join(short)}: stopped by the {s.pg_budget_s:.0f} s time budget per "
                    "run; the rates cover the jobs done"
                )
        except NotAvailable as e:
            self.res["pg"] = {"skipped": str(e)}
        finally:
            if c is not None:
                c.stop()
            self.cluster = None
            r = subprocess.run(["dropdb", *conn_args, db], capture_output=True, text=True)
            if r.returncode != 0:
                self.res["incidents"].append(f"dropdb {db} failed: {r.stderr.strip()}")

    # ------------------------------------------------------------ the whole run

    def run(self) -> dict[str, Any]:
        self.loadgen.build()
        main_keys = {
            "seq_push", "batch_push", "cycle", "push_c50", "drain", "lib_worker", "getstate", "big",
        }  # fmt: skip
        need_bull = not self.skip_bullmq and any(self.wanted(k) for k in main_keys)
        if need_bull:
            why = redis_available()
            if why:
                raise BenchError(why + " (or pass --skip-bullmq)")
            self.say("installing/checking bench/node_modules (npm ci) ...")
            ensure_node_modules()
            self.bull = BullSide()
            self.bull.call("flush")
            self.res["meta"]["bullmq"] = self.bull.info
        elif self.skip_bullmq:
            self.res["meta"]["bullmq_skipped"] = "--skip-bullmq"
        try:
            if any(self.wanted(k) for k in main_keys - {"big"}):
                self.cluster = self.start_cluster("main")
                try:
                    self.main_workloads()
                finally:
                    self.cluster.stop()
                    self.cluster = None
            if self.wanted("big"):
                self.cluster = self.start_cluster("1M")
                try:
                    self.big_phase()
                finally:
                    self.cluster.stop()
                    self.cluster = None
                    if self.bull is not None:
                        self.say("flushing BullMQ's keys ...")
                        self.bull_call("flush")
        finally:
            if self.bull is not None:
                self.bull.close()
                self.bull = None
        if self.wanted("core"):
            self.core_phase()
        self.services_phase()
        if self.wanted("pg"):
            self.pg_phase()
        return self.res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="MagicQueue side by side with BullMQ (see bench/run.py for what is measured).",
    )
    ap.add_argument("--quick", action="store_true", help="one repetition, smaller counts")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORKLOAD",
        help=f"run only these (repeatable or comma-separated): {', '.join(WORKLOADS)}",
    )
    ap.add_argument("--skip-bullmq", action="store_true", help="MagicQueue only")
    ap.add_argument(
        "--with-pg",
        action="store_true",
        help="also run the MagicQueue workloads with PostgreSQL persistence "
        "(on by default when DATABASE_URL is set)",
    )
    a = ap.parse_args(argv)
    only = {w.strip() for arg in a.only for w in arg.split(",") if w.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        ap.error(
            f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}"
        )
    bench = Bench(QUICK if a.quick else FULL, only, a.skip_bullmq, a.with_pg)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{bench.ts}.json"
    code = 0
    try:
        res = bench.run()
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        res = bench.res
        res["incidents"].append(f"aborted: {e}")
        code = 1
    finally:
        if bench.cluster is not None:
            bench.cluster.stop()
    res["meta"]["wall_seconds"] = time.monotonic() - bench.t0
    res["meta"]["json_path"] = str(path.relative_to(ROOT))
    res["targets"] = report.targets(res)
    path.write_text(json.dumps(res, indent=1, default=str))
    print(report.render(res))
    return code
