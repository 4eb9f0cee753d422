"""Prometheus text exposition (format 0.0.4) of the cluster's counters, gauges and histograms.

Pure: the HTTP route gathers METRICS, HISTOGRAMS and the webhook counters from every worker and
hands them here. Every family has its `# HELP` and `# TYPE` lines once, followed by its samples.
Label values are escaped as the format requires (backslash, double quote and newline), since
queue names may contain any of them.

The shards keep latency histograms in milliseconds with the bucket bounds of
`shard.core.HIST_BOUNDS`; a shard's bucket `i` counts observations `<= HIST_BOUNDS[i]` (and the
last one everything above), so the cumulative Prometheus buckets are running sums, in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shard.core import HIST_BOUNDS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "magicqueue"

TOTALS = (
    ("pushed", "total_pushed", "Jobs accepted (every PUSH, each job of a PUSHB, cron firings)."),
    ("completed", "total_completed", "Jobs acknowledged."),
    ("failed", "total_failed", "Jobs moved to the dead-letter queue."),
    ("expired", "total_expired", "Jobs dropped because their TTL ran out before they started."),
    ("retried", "total_retried", "Failures that were retried, and jobs retried from the DLQ."),
    ("cancelled", "total_cancelled", "Jobs cancelled."),
)

QUEUE_GAUGES = (
    ("waiting", "Jobs ready to be pulled."),
    ("delayed", "Jobs waiting for their run_at (delay or retry backoff)."),
    ("active", "Jobs pulled and not yet acknowledged or failed."),
    ("dlq", "Jobs in the dead-letter queue."),
    ("waiting_children", "Jobs waiting for their dependencies."),
    ("paused", "1 if the queue is paused, else 0."),
    ("parked_pulls", "Blocking pulls waiting for a job (consumers idle on this queue)."),
)

HISTOGRAMS = (
    ("queue_wait_seconds", "wait", "Time from a job being ready (run_at) to being pulled."),
    ("processing_seconds", "processing", "Time from a job being pulled to its acknowledgement."),
)

WEBHOOK_COUNTERS = (
    ("delivered", "Webhook deliveries answered with a 2xx status."),
    ("failed_attempts", "Webhook delivery attempts that failed (each retry counts)."),
    ("dropped_exhausted", "Webhook deliveries dropped after their last retry."),
    ("dropped_overflow", "Webhook deliveries dropped because the delivery queue was full."),
)

# Bucket bounds in seconds ("0.001" … "300"), then the catch-all.
_LE = [format(b / 1000, "g") for b in HIST_BOUNDS] + ["+Inf"]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))  # the shortest text that reads back as the same float


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> str:
        full = f"{PREFIX}_{name}"
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} {kind}")
        return full

    def sample(self, name: str, value: float, labels: str = "") -> None:
        head = f"{name}{{{labels}}}" if labels else name
        self.lines.append(f"{head} {_num(value)}")


def render(
    metrics: Mapping[str, Any],
    queues: Iterable[Mapping[str, Any]],
    webhooks: Sequence[int] | None = None,
    workers: int | None = None,
) -> str:
    """The exposition text.

    `metrics` is the METRICS reply's `metrics` object, `queues` the HISTOGRAMS reply's `queues`
    (per queue: gauges and `wait`/`processing` as `[bucket_counts, sum_ms]`), `webhooks` the
    cluster-wide delivery counters in `WEBHOOK_COUNTERS` order.
    """
    w = _Writer()
    for short, key, help_text in TOTALS:
        name = w.family(f"jobs_{short}_total", "counter", help_text)
        w.sample(name, int(metrics.get(key, 0)))
    name = w.family(
        "jobs_per_second", "gauge", "Jobs completed per second over the last 10 full seconds."
    )
    w.sample(name, float(metrics.get("jobs_per_second", 0.0)))
    name = w.family(
        "average_latency_seconds",
        "gauge",
        "Mean pull-to-ack time of the jobs completed in the last 10 full seconds.",
    )
    w.sample(name, float(metrics.get("avg_latency_ms", 0.0)) / 1000)
    if workers is not None:
        name = w.family("workers", "gauge", "Worker processes serving the cluster.")
        w.sample(name, workers)

    rows = sorted(queues, key=lambda q: str(q["name"]))
    labels = [f'queue="{escape_label(str(q["name"]))}"' for q in rows]
    for field, help_text in QUEUE_GAUGES:
        name = w.family(f"queue_{field}", "gauge", help_text)
        for q, lab in zip(rows, labels, strict=True):
            w.sample(name, int(q.get(field, 0)), lab)

    for short, key, help_text in HISTOGRAMS:
        name = w.family(short, "histogram", help_text)
        for q, lab in zip(rows, labels, strict=True):
            counts, sum_ms = q[key]
            running = 0
            for le, c in zip(_LE, counts, strict=True):
                running += int(c)
                w.sample(f"{name}_bucket", running, f'{lab},le="{le}"')
            w.sample(f"{name}_sum", float(sum_ms) / 1000, lab)
            w.sample(f"{name}_count", running, lab)

    if webhooks is not None:
        for (short, help_text), value in zip(WEBHOOK_COUNTERS, webhooks, strict=True):
            name = w.family(f"webhook_{short}_total", "counter", help_text)
            w.sample(name, int(value))
    w.lines.append("")
    return "\n".join(w.lines)
