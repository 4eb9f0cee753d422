"""Durable persistence on the real PostgreSQL: acknowledged means committed.

Each test starts the real cluster (WORKERS=2 unless said otherwise) with DATABASE_URL pointing
at a fresh database, and restarts it to see what survived.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import threading
import time
import zlib
from typing import Any

import asyncpg
import pytest

from shard.persistence import sql
from shard.persistence.store import Store
from tests.harness import Client, Cluster
from tests.pg.conftest import PG_HOST, PG_PORT, dsn, psql


def cluster(db: str, workers: int = 2, **env: str) -> Cluster:
    return Cluster(workers=workers, DATABASE_URL=dsn(db), **env)


def owner(queue: str, workers: int = 2) -> int:
    return zlib.crc32(queue.encode()) % 32 % workers


def max_in_shard(ids: Any, new_id: int) -> int:
    """The largest earlier id in the shard of `new_id` (ids are seq * 32 + shard)."""
    return max((i for i in ids if i % 32 == new_id % 32), default=0)


def queues_on_both(prefix: str, n: int = 2) -> tuple[str, str]:
    """A queue owned by worker 0 and one owned by worker 1."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < n:
        q = f"{prefix}-{i}"
        found.setdefault(owner(q, n), q)
        i += 1
    return found[0], found[1]


# ---------------------------------------------------------------- schema


def _schema_of(db: str) -> dict[str, Any]:
    cols = psql(
        "SELECT string_agg(format('%s.%s %s %s %s', table_name, column_name, data_type, "
        "is_nullable, coalesce(column_default, '-')), E'\\n' "
        "ORDER BY table_name, ordinal_position) "
        "FROM information_schema.columns WHERE table_schema = 'public'",
        db,
    )
    idx = psql(
        "SELECT string_agg(indexdef, E'\\n' ORDER BY indexdef) FROM pg_indexes "
        "WHERE schemaname = 'public'",
        db,
    )
    cons = psql(
        "SELECT string_agg(format('%s %s %s', conrelid::regclass, contype, "
        "pg_get_constraintdef(oid)), E'\\n' ORDER BY 1) FROM pg_constraint "
        "WHERE connamespace = 'public'::regnamespace",
        db,
    )
    return {"columns": cols, "indexes": idx, "constraints": cons}


async def _migrate(db: str) -> int:
    store = Store(dsn(db))
    await store.connect()
    try:
        return await store.migrate()
    finally:
        await store.close()


def test_migrated_schema_equals_fresh_schema(fresh_db: str) -> None:
    other = fresh_db + "_m"
    psql(f"CREATE DATABASE {other}")
    try:
        # fresh_db: an empty database gets schema.sql at once
        assert asyncio.run(_migrate(fresh_db)) == 0
        # other: a database created by the first release, then migrated
        first_version, first_sql = sql.migrations()[0]
        psql(first_sql, other)
        psql(f"INSERT INTO mq_schema_version VALUES ({first_version})", other)
        assert asyncio.run(_migrate(other)) == first_version
        assert _schema_of(other) == _schema_of(fresh_db)
        latest = str(sql.latest_version())
        assert psql("SELECT version FROM mq_schema_version", other) == latest
        assert psql("SELECT version FROM mq_schema_version", fresh_db) == latest
    finally:
        psql(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")


def test_concurrent_migrations_apply_once(fresh_db: str) -> None:
    async def many() -> list[int]:
        return list(await asyncio.gather(*(_migrate(fresh_db) for _ in range(6))))

    found = asyncio.run(many())
    assert sorted(found)[0] == 0 and all(f in (0, sql.latest_version()) for f in found)
    assert psql("SELECT count(*) FROM mq_schema_version", fresh_db) == "1"


# ---------------------------------------------------------------- whole state


def test_whole_state_survives_restart(database: str) -> None:
    qa, qb = queues_on_both("st")
    with cluster(database) as c1, c1.client() as c:
        # waiting, in priority order, in queues of both workers
        low = c.ok("PUSH", queue=qa, data={"k": "low"}, priority=1)["id"]
        high = c.ok("PUSH", queue=qa, data={"k": "high", "nested": [1, {"z": None}]}, priority=9)[
            "id"
        ]
        other = c.ok("PUSH", queue=qb, data="other", tags=["t1", "t2"])["id"]
        # delayed
        delayed = c.ok("PUSH", queue=qb, data="later", delay=3_600_000)["id"]
        delayed_run_at = c.ok("GETJOB", id=delayed)["job"]["run_at"]
        # completed with a result, and its unique key released
        done = c.ok("PUSH", queue=qa, data="done", unique_key="was-held")["id"]
        # parent on worker 0's queue, child on worker 1's queue
        parent = c.ok("PUSH", queue=qa, data="parent", priority=-5)["id"]
        child = c.ok("PUSH", queue=qb, data="child", depends_on=[parent])["id"]
        # a unique key held by a waiting job
        keyed = c.ok("PUSH", queue=qb, data="keyed", unique_key="held")["id"]
        # DLQ: two jobs, order must survive
        dead1 = c.ok("PUSH", queue="st-dlq", data=1, max_attempts=1)["id"]
        dead2 = c.ok("PUSH", queue="st-dlq", data=2, max_attempts=1)["id"]
        # pull in priority order: high, low, done, parent (-5) last
        assert c.ok("PULL", queue=qa)["job"]["id"] == high
        assert c.ok("PULL", queue=qa)["job"]["id"] == low
        assert c.ok("PULL", queue=qa)["job"]["id"] == done
        c.ok("ACK", id=done, result={"answer": 42})
        for d in (dead1, dead2):
            assert c.ok("PULL", queue="st-dlq")["job"]["id"] == d
            c.ok("FAIL", id=d, error=f"boom {d}")
        # active at shutdown (high and low): back to waiting as lost workers; one with
        # max_attempts 1 goes to the DLQ instead
        lost_dlq = c.ok("PUSH", queue=qb, data="once", max_attempts=1, priority=100)["id"]
        assert c.ok("PULL", queue=qb)["job"]["id"] == lost_dlq
        # queue settings and cron
        c.ok("PAUSE", queue="st-paused")
        c.ok("RATELIMIT", queue="st-rate", limit=25)
        c.ok("SETCONCURRENCY", queue="st-conc", limit=3)
        c.ok("CRON", name="st-cron", queue=qb, data={"c": 1}, schedule="0 30 9 * * MON-FRI")
        next_run = c.ok("CRONLIST")["crons"][0]["next_run"]
        metrics = c.ok("METRICS")["metrics"]
        old_ids = [low, high, other, delayed, done, parent, child, keyed, dead1, dead2, lost_dlq]
    with cluster(database) as c2, c2.client() as c:
        assert c.ok("GETSTATE", id=done)["state"] == "completed"
        assert c.ok("GETRESULT", id=done)["result"] == {"answer": 42}
        assert c.ok("GETJOB", id=delayed)["state"] == "delayed"
        assert c.ok("GETJOB", id=delayed)["job"]["run_at"] == delayed_run_at
        job = c.ok("GETJOB", id=other)
        assert job["state"] == "waiting" and job["job"]["tags"] == ["t1", "t2"]
        assert job["job"]["data"] == "other"
        assert c.ok("GETSTATE", id=child)["state"] == "waiting-children"
        # lost workers: high and low come back waiting with attempts 1
        for jid in (high, low):
            j = c.ok("GETJOB", id=jid)
            assert j["state"] == "waiting", j
            assert j["job"]["attempts"] == 1
            assert j["job"]["progress_msg"] == "Worker connection lost"
        assert c.ok("GETSTATE", id=lost_dlq)["state"] == "failed"
        assert [j["id"] for j in c.ok("DLQ", queue="st-dlq")["jobs"]] == [dead1, dead2]
        assert c.ok("DLQ", queue="st-dlq")["jobs"][0]["progress_msg"] == f"boom {dead1}"
        # unique keys: held stays held, released stays free
        assert c.call("PUSH", queue=qb, data="dup", unique_key="held")["error"] == (
            "Duplicate job with key: held"
        )
        c.ok("PUSH", queue=qa, data="again", unique_key="was-held")
        # order and payloads survive exactly
        assert c.ok("PULL", queue=qa)["job"]["data"] == {"k": "high", "nested": [1, {"z": None}]}
        assert c.ok("PULL", queue=qa)["job"]["id"] == low
        # settings and cron
        qs = {q["name"]: q for q in c.ok("LISTQUEUES")["queues"]}
        assert qs["st-paused"]["paused"] is True
        assert qs["st-rate"]["rate_limit"] == 25
        assert qs["st-conc"]["concurrency_limit"] == 3
        crons = c.ok("CRONLIST")["crons"]
        assert [(x["name"], x["next_run"], x["data"]) for x in crons] == [
            ("st-cron", next_run, {"c": 1})
        ]
        # counters continue
        m = c.ok("METRICS")["metrics"]
        for k in ("total_pushed", "total_completed", "total_failed"):
            assert m[k] >= metrics[k], (k, m[k], metrics[k])
        assert m["total_failed"] == metrics["total_failed"] + 1  # lost_dlq at recovery
        # the dependency still works across the restart: finish the parent
        got = c.ok("PULL", queue=qa)["job"]  # "again" then parent (-5)
        while got["id"] != parent:
            c.ok("ACK", id=got["id"])
            got = c.ok("PULL", queue=qa)["job"]
        c.ok("ACK", id=parent)
        assert _eventually(lambda: c.ok("GETSTATE", id=child)["state"] == "waiting")
        # ids are never reused: each shard's sequence continues
        for q in (qa, qb):
            new = c.ok("PUSH", queue=q, data="new")["id"]
            assert new > max_in_shard(old_ids, new)


def _eventually(check: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


def test_worker_count_change_keeps_every_job(fresh_db: str) -> None:
    queues = [f"wc-{i}" for i in range(40)]
    with cluster(fresh_db, workers=2) as c1, c1.client() as c:
        pushed = {}
        for i in range(400):
            q = queues[i % len(queues)]
            pushed[c.ok("PUSH", queue=q, data={"i": i})["id"]] = i
    with cluster(fresh_db, workers=3) as c2, c2.client() as c:
        assert c.ok("STATS")["queued"] == 400
        seen = {}
        for q in queues:
            for j in c.ok("PULLB", queue=q, count=100, timeout=0)["jobs"]:
                seen[j["id"]] = j["data"]["i"]
        assert seen == pushed
        new = c.ok("PUSH", queue="wc-new", data=1)["id"]
        assert new > max_in_shard(pushed, new)
    with cluster(fresh_db, workers=1) as c3, c3.client() as c:
        # pulled jobs became active, then lost at the restart: all back (plus wc-new)
        assert c.ok("STATS")["queued"] == 401


# ---------------------------------------------------------------- crash


def test_kill_9_loses_no_acknowledged_job(fresh_db: str) -> None:
    c1 = cluster(fresh_db).start()
    acked: set[tuple[int, int]] = set()
    refused: set[tuple[int, int]] = set()
    top_id: dict[str, int] = {}  # the highest acknowledged id per queue
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        try:
            cl = Client.tcp("127.0.0.1", c1.port, timeout=5)
        except OSError:
            return
        seq = 0
        try:
            while not stop.is_set():
                seq += 1
                key = f"k-{n}-{seq}"
                # every fifth push reuses the previous key: refused while that job is live
                if seq % 5 == 0:
                    key = f"k-{n}-{seq - 1}"
                queue = f"crash-{n % 10}"
                r = cl.call("PUSH", queue=queue, data=[n, seq], unique_key=key)
                with lock:
                    (acked if r.get("ok") else refused).add((n, seq))
                    if r.get("ok"):
                        top_id[queue] = max(top_id.get(queue, 0), r["id"])
        except (OSError, ValueError):
            return  # the server died under us: that request's outcome is unknown
        finally:
            cl.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(50)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 2000 and time.monotonic() < deadline:
        time.sleep(0.02)
    with c1.client() as c:  # an id whose row is gone must not be handed out again either
        gone = c.ok("PUSH", queue="crash-gone", data=0)["id"]
        c.ok("CANCEL", id=gone)
    c1.kill()  # SIGKILL to the supervisor and every worker, mid-flight
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) >= 2000 and refused
    with cluster(fresh_db) as c2, c2.client() as c:
        found: set[tuple[int, int]] = set()
        for i in range(10):
            while True:
                jobs = c.ok("PULLB", queue=f"crash-{i}", count=1000, timeout=0)["jobs"]
                if not jobs:
                    break
                found.update(tuple(j["data"]) for j in jobs)  # type: ignore[misc]
        assert acked <= found, f"lost {len(acked - found)} acknowledged jobs"
        assert not (refused & found), "a refused push came back"
        # at most one request per client was in flight when the server died
        assert len(found - acked) <= 50
        # ids are never reused after a crash, not even the id of a deleted job
        for queue, top in {**top_id, "crash-gone": gone}.items():
            assert c.ok("PUSH", queue=queue, data="after")["id"] > top, queue


def test_shard_row_reserves_ids_and_counters_follow_without_a_stop(fresh_db: str) -> None:
    queue = "counted"
    shard = zlib.crc32(queue.encode()) % 32

    def row() -> tuple[int, int]:
        out = psql(f"SELECT seq, total_pushed FROM mq_shards WHERE shard = {shard}", fresh_db)
        seq, pushed = out.split("|") if out else ("0", "0")
        return int(seq), int(pushed)

    with cluster(fresh_db) as c1, c1.client() as c:
        ids = [c.ok("PUSH", queue=queue, data=i)["id"] for i in range(3)]
        # the first commit stored a reservation above every id handed out since
        assert row()[0] * 32 > max(ids)
        # counters are not rewritten by every commit, but reach the database within a second
        assert _eventually(lambda: row()[1] == 3, timeout=5.0)


# ---------------------------------------------------------------- database faults


def _terminate_server_sessions() -> int:
    return int(
        psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'magicqueue'"
        )
    )


def _push_all(c: Client, queue: str, n: int, tag: str) -> tuple[list[int], list[str]]:
    ok: list[int] = []
    errors: list[str] = []
    for i in range(n):
        r = c.call("PUSH", queue=queue, data=f"{tag}-{i}")
        if r["ok"]:
            ok.append(r["id"])
        else:
            errors.append(r["error"])
    return ok, errors


def test_killed_connection_gives_errors_then_resumes(fresh_db: str) -> None:
    qa, qb = queues_on_both("kc")
    with cluster(fresh_db) as c1, c1.client() as c:
        before, errs = _push_all(c, qa, 50, "before")
        assert not errs
        assert _terminate_server_sessions() >= 2
        acked: list[int] = []
        errors: list[str] = []
        deadline = time.monotonic() + 20
        # keep pushing until both workers have come back
        while time.monotonic() < deadline:
            for q in (qa, qb):
                ok, err = _push_all(c, q, 5, "during")
                acked += ok
                errors += err
            if len(acked) > 100 and all(
                c.call("PUSH", queue=q, data="probe")["ok"] for q in (qa, qb)
            ):
                break
        assert set(errors) <= {"Persistence unavailable"}
        assert c.ok("STATS")["queued"] >= len(before)  # reads kept answering
        after, errs = _push_all(c, qb, 20, "after")
        assert not errs
        expect = set(before) | set(acked) | set(after)
    with cluster(fresh_db) as c2, c2.client() as c:
        for jid in expect:
            assert c.ok("GETSTATE", id=jid)["state"] == "waiting", jid


@pytest.mark.timeout(120)
def test_a_hung_commit_times_out_then_service_resumes(fresh_db: str) -> None:
    qa, _ = queues_on_both("hang")
    locked = (
        "SELECT count(*) FROM pg_locks WHERE relation = 'mq_jobs'::regclass "
        "AND mode = 'AccessExclusiveLock' AND granted"
    )
    with cluster(fresh_db, COMMIT_TIMEOUT_MS="1000") as c1, c1.client() as c:
        c.ok("PUSH", queue=qa, data="first")
        # Another session holds a lock every commit needs, for a few seconds: commits hang.
        holder = subprocess.Popen(
            ["psql", "-h", PG_HOST, "-p", PG_PORT, "-d", fresh_db, "-qc",
             "BEGIN; LOCK TABLE mq_jobs IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert _eventually(lambda: psql(locked, fresh_db) == "1", timeout=10)
            started = time.monotonic()
            # 300 jobs: the COPY path, whose retry must cope with the hung transaction
            # committing after all once the lock is gone
            r = c.call("PUSHB", queue=qa, jobs=[{"data": i} for i in range(300)])
            waited = time.monotonic() - started
            assert r == {"ok": False, "error": "Persistence unavailable"}, r
            assert 0.9 < waited < 5, waited  # the timeout, not the lock, ended the wait
            assert c.ok("STATS")["queued"] >= 1  # reads keep answering
        finally:
            holder.wait(timeout=30)
        assert _eventually(lambda: c.call("PUSH", queue=qa, data="after")["ok"], timeout=20)
        assert _eventually(lambda: c.call("PUSH", queue=qa, data="again")["ok"], timeout=5)
        waiting = c.ok("STATS")["queued"]
    # memory and database agree: what the cluster held is what comes back
    with cluster(fresh_db) as c2, c2.client() as c:
        assert c.ok("STATS")["queued"] == waiting


PG_VERSION = subprocess.run(
    ["bash", "-c", "ls /etc/postgresql 2>/dev/null | head -1"], capture_output=True, text=True
).stdout.strip()


def _pg_ctl(action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", action]
        + (["-m", "fast"] if action == "stop" else []),
        check=True,
        timeout=60,
    )


def _pg_up() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], timeout=10).returncode == 0


@pytest.mark.skipif(not PG_VERSION, reason="needs a local pg_ctlcluster-managed PostgreSQL")
@pytest.mark.timeout(180)
def test_postgres_stopped_and_restarted(fresh_db: str) -> None:
    qa, qb = queues_on_both("pgdown")
    with cluster(fresh_db) as c1, c1.client() as c:
        before, errs = _push_all(c, qa, 20, "before")
        assert not errs
        _pg_ctl("stop")
        try:
            # mutations answer an error, fast, and never ok; reads keep answering
            t0 = time.monotonic()
            for q in (qa, qb, qa, qb):
                r = c.call("PUSH", queue=q, data="while-down")
                assert r == {"ok": False, "error": "Persistence unavailable"}, r
            assert time.monotonic() - t0 < 30
            assert c.ok("STATS")["queued"] >= len(before)
            assert c.ok("GETSTATE", id=before[0])["state"] == "waiting"
            job = c.ok("PULL", queue=qa, timeout=1000)["job"]
            assert c.call("ACK", id=job["id"]) == {"ok": False, "error": "Persistence unavailable"}
        finally:
            _pg_ctl("start")
        deadline = time.monotonic() + 60
        while not _pg_up() and time.monotonic() < deadline:
            time.sleep(0.2)
        # service resumes by itself
        resumed: list[int] = []
        while time.monotonic() < deadline and len(resumed) < 10:
            for q in (qa, qb):
                r = c.call("PUSH", queue=q, data="after")
                if r["ok"]:
                    resumed.append(r["id"])
                else:
                    assert r["error"] == "Persistence unavailable"
                    time.sleep(0.1)
        assert len(resumed) >= 10
        c.ok("ACK", id=job["id"])
    with cluster(fresh_db) as c2, c2.client() as c:
        for jid in set(before) - {job["id"]} | set(resumed):
            assert c.ok("GETSTATE", id=jid)["state"] == "waiting", jid
        assert c.ok("GETSTATE", id=job["id"])["state"] == "completed"


def test_random_workload_matches_after_restart(fresh_db: str) -> None:
    """A mixed workload; then every job's state and record are the same after a restart."""
    rng = random.Random(7)
    with cluster(fresh_db) as c1, c1.client() as c:
        ids: list[int] = []
        for i in range(300):
            q = f"mix-{i % 7}"
            ids.append(
                c.ok(
                    "PUSH",
                    queue=q,
                    data={"i": i},
                    priority=rng.randint(-3, 3),
                    max_attempts=rng.choice([0, 1, 2]),
                )["id"]
            )
        for _ in range(200):
            q = f"mix-{rng.randrange(7)}"
            j = c.ok("PULL", queue=q, timeout=0)["job"]
            if j is None:
                continue
            action = rng.random()
            if action < 0.5:
                c.ok("ACK", id=j["id"], result=j["data"])
            elif action < 0.8:
                c.ok("FAIL", id=j["id"], error="nope")
            else:
                c.ok("CANCEL", id=j["id"])
        before = {jid: c.ok("GETJOB", id=jid) for jid in ids}
        results = {jid: c.ok("GETRESULT", id=jid)["result"] for jid in ids}
    with cluster(fresh_db) as c2, c2.client() as c:
        for jid in ids:
            assert c.ok("GETJOB", id=jid) == before[jid], jid
            assert c.ok("GETRESULT", id=jid)["result"] == results[jid]


def test_asyncpg_is_importable_for_the_tier() -> None:
    # The tier talks to the server through psql and the cluster; asyncpg is the server's.
    assert asyncpg.__version__.startswith("0.32")
