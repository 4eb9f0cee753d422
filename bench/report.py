"""Turn a bench run (the dict that is also written as JSON) into the printed tables and targets.

Pure: no I/O besides building strings. Every figure is the median of the repetitions with the
min-max spread in brackets; a ratio is MagicQueue's median over BullMQ's median, both measured in
the same run with their repetitions interleaved. A target is "met", "NOT met", or "n/a" (with the
reason) when one side was not measured.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import median
from typing import Any

# (workload key, label, BullMQ ratio target or None)
MAIN_ROWS: list[tuple[str, str, float | None]] = [
    ("seq_push", "sequential push, 1 conn", 2.0),
    ("batch_push", "batch push, PUSHB/addBulk of 1,000", 8.0),
    ("cycle", "full cycle push→pull→ack, 1 conn", 2.0),
    ("push_c50", "push over 50 connections", 2.0),
    ("drain", "drain (PULLB+ACKB 1,000 / Worker c=50)", 5.0),
    ("lib_worker", "Worker library, 100k no-op jobs, c=50", 3.0),
    ("getstate", "GETSTATE / getJobState, 1 conn", None),
    ("seq_push_1m", "sequential push, 1M waiting", None),
    ("cycle_1m", "full cycle, 1M waiting", None),
]
BIG_OF = {"seq_push_1m": "seq_push", "cycle_1m": "cycle"}
# The persistence section's workloads, the in-memory workload each is compared with, and the
# jobs/s the persistence issue asks for (pg-boss, durable on the same PostgreSQL, does ~3k/s
# over 50 connections and ~2.5k/s sequentially here).
PG_ROWS: dict[str, tuple[str, float | None]] = {
    "sequential push": ("seq_push", 2_500.0),
    "batch push": ("batch_push", 100_000.0),
    "full cycle": ("cycle", None),
    "push over 50 connections": ("push_c50", 30_000.0),
    "drain": ("drain", None),
}
BIG_TARGET = 0.8  # with 1M jobs waiting, at least 80 % of the empty-queue figure
BYTES_PER_JOB_TARGET = 500
CORE_RATIO_TARGET = 1.5  # 1M backlog within 1.5x of the 1k backlog


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100_000:
        return f"{x / 1000:.0f}k"
    if x >= 1000:
        return f"{x / 1000:.1f}k"
    return f"{x:.0f}"


def fmt_us(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 10_000:
        return f"{x / 1000:.0f}ms"
    if x >= 1000:
        return f"{x / 1000:.1f}ms"
    return f"{x:.0f}µs"


def med(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return median(vals) if vals else None


def spread(runs: list[dict[str, Any]], key: str, fmt: Callable[[float], str] = fmt_rate) -> str:
    vals = [r[key] for r in runs if r.get(key) is not None]
    if not vals:
        return "-"
    m = fmt(median(vals))
    if len(vals) == 1:
        return m
    return f"{m} ({fmt(min(vals))}-{fmt(max(vals))})"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|-" + "-|-".join("-" * w for w in widths) + "-|"
    out = [line, sep]
    for r in rows:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(out)


def _errors(runs: list[dict[str, Any]]) -> int:
    return sum(int(r.get("errors", 0)) + int(bool(r.get("timed_out"))) for r in runs)


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its measured value and verdict."""
    w = res.get("workloads", {})
    out: list[dict[str, Any]] = []

    def add(name: str, value: str, goal: str, ok: bool | None, why: str = "") -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        out.append({"target": name, "value": value, "goal": goal, "verdict": verdict, "why": why})

    for key, label, goal in MAIN_ROWS:
        if goal is None:
            continue
        wl = w.get(key)
        mq = med(wl["mq"], "ops_per_s") if wl else None
        bull = med(wl["bull"], "ops_per_s") if wl and wl.get("bull") else None
        if mq is None or bull is None:
            why = "not measured" if mq is None else "BullMQ not measured"
            add(f"{label}: vs BullMQ", "-", f"≥ {goal:g}x", None, why)
        else:
            add(f"{label}: vs BullMQ", f"{mq / bull:.2f}x", f"≥ {goal:g}x", mq / bull >= goal)
    wl = w.get("seq_push")
    if wl and wl.get("mq") and wl.get("bull"):
        a, b = med(wl["mq"], "p99_us"), med(wl["bull"], "p99_us")
        assert a is not None and b is not None
        add("sequential push p99", f"{fmt_us(a)} vs {fmt_us(b)}", "≤ BullMQ's", a <= b)
    else:
        add("sequential push p99", "-", "≤ BullMQ's", None, "not measured on both sides")
    for big, small in BIG_OF.items():
        label = dict((k, lbl) for k, lbl, _ in MAIN_ROWS)[small]
        wb, ws = w.get(big), w.get(small)
        if wb and ws and wb.get("mq") and ws.get("mq"):
            a, b = med(wb["mq"], "ops_per_s"), med(ws["mq"], "ops_per_s")
            assert a is not None and b is not None
            add(
                f"{label}: 1M waiting vs empty",
                f"{a / b:.0%}" + _control(wb),
                f"≥ {BIG_TARGET:.0%}",
                a / b >= BIG_TARGET,
            )
        else:
            add(f"{label}: 1M waiting vs empty", "-", f"≥ {BIG_TARGET:.0%}", None, "not measured")
    big = res.get("big", {})
    bpj = big.get("mq_bytes_per_job")
    if bpj is not None:
        add(
            "cluster memory per waiting job (RSS)",
            f"{bpj:.0f} B",
            f"≤ {BYTES_PER_JOB_TARGET} B",
            bpj <= BYTES_PER_JOB_TARGET,
        )
    else:
        add("cluster memory per waiting job (RSS)", "-", "≤ 500 B", None, "not measured")
    core = res.get("core", {})
    if core.get("small") and core.get("big"):
        for op in ("push", "pull", "ack"):
            s = median(r[op] for r in core["small"]["runs"])
            b = median(r[op] for r in core["big"]["runs"])
            add(
                f"core {op}: 1M backlog vs 1k",
                f"{s / b:.2f}x slower" if b < s else f"{b / s:.2f}x faster",
                f"within {CORE_RATIO_TARGET}x",
                s / b <= CORE_RATIO_TARGET,
            )
        cb = core["big"]["bytes_per_job"]
        add(
            "core bytes per waiting job (RSS)", f"{cb:.0f} B", "≤ 500 B", cb <= BYTES_PER_JOB_TARGET
        )
    else:
        add("core figures", "-", "", None, "not measured")
    pg = res.get("pg") or {}
    for name, (_, goal) in PG_ROWS.items():
        runs = (pg.get("workloads") or {}).get(name)
        if goal is None:
            continue
        value = med(runs or [], "ops_per_s")
        if value is None:
            why = pg.get("skipped") or "not measured"
            add(f"{name} with persistence", "-", f"≥ {goal:,.0f}/s", None, why)
        else:
            add(f"{name} with persistence", f"{value:,.0f}/s", f"≥ {goal:,.0f}/s", value >= goal)
    return out


def _control(wl: dict[str, Any]) -> str:
    """The 1M figure over its interleaved empty-queue control on the same cluster."""
    a, c = med(wl.get("mq") or [], "ops_per_s"), med(wl.get("mq_control") or [], "ops_per_s")
    return f" (vs its control: {a / c:.0%})" if a and c else ""


def _lat(runs: list[dict[str, Any]]) -> str:
    if not runs or not med(runs, "p50_us"):
        return "-"
    return "/".join(fmt_us(med(runs, k)) for k in ("p50_us", "p99_us", "p999_us"))


def _cpu_cell(runs: list[dict[str, Any]]) -> str:
    """Median CPU µs per unit: server / client, and the cores the rest of the machine used."""
    if not runs or any("cpu_server_s" not in r or not r.get("units") for r in runs):
        return "-"
    srv = median(r["cpu_server_s"] / r["units"] * 1e6 for r in runs if r.get("units"))
    cli = median(r["cpu_client_s"] / r["units"] * 1e6 for r in runs if r.get("units"))
    others = [
        (r["machine_busy_s"] - r["cpu_server_s"] - r["cpu_client_s"]) / r["seconds"]
        for r in runs
        if r.get("seconds") and r.get("machine_busy_s", -1) >= 0
    ]
    oth = f"; others {median(others):.1f} cores" if others else ""
    return f"{srv:.0f} / {cli:.0f}{oth}"


def render(res: dict[str, Any]) -> str:
    parts: list[str] = []
    meta = res.get("meta", {})
    parts.append(
        f"MagicQueue bench — {meta.get('started', '')}, {meta.get('reps')} repetition(s), "
        f"{meta.get('workers')} workers, {meta.get('cpus')} CPUs"
        + (", QUICK (smaller counts)" if meta.get("quick") else "")
    )
    if meta.get("bullmq"):
        b = meta["bullmq"]
        parts.append(f"BullMQ {b.get('bullmq')} on Redis {b.get('redis')}, node {b.get('node')}")
    elif meta.get("bullmq_skipped"):
        parts.append(f"BullMQ: skipped ({meta['bullmq_skipped']})")

    w = res.get("workloads", {})
    rows = []
    for key, label, goal in MAIN_ROWS:
        wl = w.get(key)
        if not wl:
            continue
        mq, bull = wl.get("mq") or [], wl.get("bull") or []
        m, b = med(mq, "ops_per_s"), med(bull, "ops_per_s")
        ratio = f"{m / b:.2f}x" if m and b else "-"
        if key in BIG_OF:
            small = w.get(BIG_OF[key])
            sm = med(small["mq"], "ops_per_s") if small and small.get("mq") else None
            tgt = f"MQ ≥ {BIG_TARGET:.0%} of empty" + (f": {m / sm:.0%}" if m and sm else "")
            tgt += _control(wl)
        else:
            tgt = f"≥ {goal:g}x" if goal else ""
        units = f"{wl.get('units', '')}"
        errs = _errors(mq) + _errors(bull)
        rows.append(
            [
                label,
                units,
                spread(mq, "ops_per_s"),
                spread(bull, "ops_per_s") if bull else wl.get("bull_note", "-"),
                ratio,
                tgt,
                _lat(mq),
                _lat(bull),
                str(errs) if errs else "",
            ]
        )
        ctl = wl.get("mq_control")
        if ctl:
            rows.append(
                [
                    "  control: empty queue, same cluster",
                    units,
                    spread(ctl, "ops_per_s"),
                    "",
                    "",
                    "",
                    _lat(ctl),
                    "",
                    str(_errors(ctl)) if _errors(ctl) else "",
                ]
            )
    if rows:
        parts.append("")
        parts.append(
            _table(
                [
                    "workload",
                    "jobs",
                    "MagicQueue ops/s",
                    "BullMQ ops/s",
                    "ratio",
                    "target",
                    "MQ p50/p99/p999",
                    "BullMQ p50/p99/p999",
                    "errors",
                ],
                rows,
            )
        )
        notes = [
            f"- {key}: {w[key]['bull_note']}"
            for key, _, _ in MAIN_ROWS
            if w.get(key, {}).get("bull_note")
        ]
        notes += [
            f"- {key}: {w[key]['note']}" for key, _, _ in MAIN_ROWS if w.get(key, {}).get("note")
        ]
        if notes:
            parts.append("\n".join(notes))

        cpu_rows = []
        for key, label, _ in MAIN_ROWS:
            wl = w.get(key)
            if wl:
                cpu_rows.append(
                    [label, _cpu_cell(wl.get("mq") or []), _cpu_cell(wl.get("bull") or [])]
                )
            if wl and wl.get("mq_control"):
                cpu_rows.append(["  control: empty queue", _cpu_cell(wl["mq_control"]), ""])
        parts.append("")
        parts.append(
            "CPU µs per job (median): server / load generator; 'others' = cores used by the rest"
            " of the machine during the run"
        )
        parts.append(
            _table(
                ["workload", "MagicQueue workers / C loadgen", "Redis / node (BullMQ)"], cpu_rows
            )
        )

    big = res.get("big")
    if big:
        parts.append("")
        lines = ["1M-waiting preload:"]
        if big.get("mq_preload"):
            p = big["mq_preload"]
            lines.append(
                f"- MagicQueue: {big['mq_jobs']:,} jobs in {p['seconds']:.1f} s "
                f"({fmt_rate(p['ops_per_s'])}/s); workers' RSS "
                f"{big['mq_rss_before'] / 2**20:.0f} → "
                f"{big['mq_rss_after'] / 2**20:.0f} MiB = {big['mq_bytes_per_job']:.0f} B per job"
            )
        if big.get("bull_preload"):
            p = big["bull_preload"]
            lines.append(
                f"- BullMQ: {p['units']:,} jobs in {p['seconds']:.1f} s "
                f"({fmt_rate(p['ops_per_s'])}/s);"
                f" Redis used_memory +{p['redis_used_memory_delta'] / 2**20:.0f} MiB = "
                f"{p['bytes_per_job']:.0f} B per job"
                + (f" — {big['bull_note']}" if big.get("bull_note") else "")
            )
        elif big.get("bull_note"):
            lines.append(f"- BullMQ: {big['bull_note']}")
        parts.append("\n".join(lines))

    core = res.get("core")
    if core:
        parts.append("")
        if core.get("skipped"):
            parts.append(f"In-process core (shard.core.Shard): skipped ({core['skipped']})")
        else:
            crow = []
            for op in ("push", "pull", "ack"):
                s = [r[op] for r in core["small"]["runs"]]
                b = [r[op] for r in core["big"]["runs"]]
                crow.append(
                    [
                        op,
                        spread([{"v": v} for v in s], "v"),
                        spread([{"v": v} for v in b], "v"),
                        f"{median(s) / median(b):.2f}x",
                    ]
                )
            parts.append(
                f"In-process core (shard.core.Shard), {core['big']['ops']:,} ops per phase, "
                f"backlog {core['small']['backlog']:,} vs {core['big']['backlog']:,} "
                f"(built at {fmt_rate(core['big']['backlog'] / core['big']['build_seconds'])}"
                f" pushes/s); {core['big']['bytes_per_job']:.0f} B RSS per waiting job"
            )
            gcs = []
            for label in ("small", "big"):
                runs = core[label]["runs"]
                n = sum(r.get("full_gc_count", 0) for r in runs)
                tot = sum(r.get("full_gc_s", 0.0) for r in runs)
                mx = max((r.get("full_gc_max_s", 0.0) for r in runs), default=0.0)
                busy = sum(r.get("seconds", 0.0) for r in runs)
                gcs.append(
                    f"{core[label]['backlog']:,} queued: {n} full GCs, {tot:.2f} s of "
                    f"{busy:.2f} s timed, longest {mx * 1000:.0f} ms"
                )
            parts.append(
                _table(
                    [
                        "op",
                        f"ops/s, {core['small']['backlog']:,} queued",
                        f"ops/s, {core['big']['backlog']:,} queued",
                        "small/big",
                    ],
                    crow,
                )
            )
            parts.append("garbage collector during the timed phases: " + "; ".join(gcs))

    for key, title in (("http", "HTTP"), ("grpc", "gRPC"), ("pg", "PostgreSQL persistence")):
        sec = res.get(key)
        if not sec:
            continue
        parts.append("")
        if sec.get("skipped"):
            parts.append(f"{title}: skipped — {sec['skipped']}")
            continue
        parts.append(f"{title}: {sec.get('title', '')}")
        srows = []
        for name, runs in sec["workloads"].items():
            row = [
                name,
                spread(runs, "ops_per_s"),
                f"{fmt_us(med(runs, 'p50_us'))}/{fmt_us(med(runs, 'p99_us'))}",
                _cpu_cell(runs),
                str(_errors(runs)) if _errors(runs) else "",
            ]
            if key == "pg":
                mem = (res.get("workloads") or {}).get(PG_ROWS.get(name, ("", None))[0]) or {}
                m = med(mem.get("mq") or [], "ops_per_s")
                row.insert(2, fmt_rate(m) if m else "-")
            srows.append(row)
        heads = ["workload", "ops/s", "p50/p99", "CPU µs/op srv / client", "errors"]
        if key == "pg":
            heads.insert(2, "in memory, same run")
        parts.append(_table(heads, srows))
        if sec.get("note"):
            parts.append(sec["note"])

    tg = targets(res)
    parts.append("")
    parts.append("Targets")
    parts.append(
        _table(
            ["target", "measured", "goal", "verdict"],
            [
                [
                    t["target"],
                    t["value"],
                    t["goal"],
                    t["verdict"] + (f" ({t['why']})" if t["why"] else ""),
                ]
                for t in tg
            ],
        )
    )
    inc = res.get("incidents") or []
    if inc:
        parts.append("")
        parts.append("INCIDENTS (the server misbehaved):")
        parts.extend(f"- {i}" for i in inc)
    if meta.get("wall_seconds"):
        parts.append("")
        parts.append(f"wall time {meta['wall_seconds']:.0f} s; JSON: {meta.get('json_path', '')}")
    return "\n".join(parts)
