-- Named statements. Each block starts with `-- name: <name>`; shard/persistence/sql.py loads
-- them by name so no SQL text lives in Python code.

-- name: schema_version
SELECT version FROM mq_schema_version;

-- name: set_schema_version
UPDATE mq_schema_version SET version = $1;

-- name: has_schema_table
SELECT to_regclass('mq_schema_version') IS NOT NULL;

-- name: init_schema_version
INSERT INTO mq_schema_version (version) VALUES ($1);

-- name: migration_lock
SELECT pg_advisory_xact_lock(7171717171);

-- name: delete_jobs
DELETE FROM mq_jobs WHERE id = ANY($1::bigint[]);

-- name: delete_done
DELETE FROM mq_done WHERE id = ANY($1::bigint[]);

-- name: upsert_queue
INSERT INTO mq_queues (name, shard, paused, rate_limit, concurrency)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE
SET shard = EXCLUDED.shard, paused = EXCLUDED.paused,
    rate_limit = EXCLUDED.rate_limit, concurrency = EXCLUDED.concurrency;

-- name: upsert_cron
INSERT INTO mq_crons (name, shard, queue, data, schedule, priority, next_run)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name) DO UPDATE
SET shard = EXCLUDED.shard, queue = EXCLUDED.queue, data = EXCLUDED.data,
    schedule = EXCLUDED.schedule, priority = EXCLUDED.priority, next_run = EXCLUDED.next_run;

-- name: delete_cron
DELETE FROM mq_crons WHERE name = $1;

-- name: upsert_shard
INSERT INTO mq_shards (shard, seq, total_pushed, total_completed, total_failed, total_expired,
                       total_retried, total_cancelled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (shard) DO UPDATE
SET seq = EXCLUDED.seq, total_pushed = EXCLUDED.total_pushed,
    total_completed = EXCLUDED.total_completed, total_failed = EXCLUDED.total_failed,
    total_expired = EXCLUDED.total_expired, total_retried = EXCLUDED.total_retried,
    total_cancelled = EXCLUDED.total_cancelled;

-- name: load_jobs
SELECT * FROM mq_jobs WHERE shard = ANY($1::smallint[]) ORDER BY id;

-- name: load_done
SELECT id, shard, result, completed_at FROM mq_done
WHERE shard = ANY($1::smallint[]) AND completed_at >= $2
ORDER BY completed_at, id;

-- name: prune_done
DELETE FROM mq_done WHERE shard = ANY($1::smallint[]) AND completed_at < $2;

-- name: load_queues
SELECT * FROM mq_queues WHERE shard = ANY($1::smallint[]);

-- name: load_crons
SELECT * FROM mq_crons WHERE shard = ANY($1::smallint[]);

-- name: load_shards
SELECT * FROM mq_shards WHERE shard = ANY($1::smallint[]);

-- name: max_ids
SELECT shard, max(id) AS max_id FROM (
    SELECT shard, id FROM mq_jobs WHERE shard = ANY($1::smallint[])
    UNION ALL
    SELECT shard, id FROM mq_done WHERE shard = ANY($1::smallint[])
) AS ids GROUP BY shard;

-- name: write_rows
-- One commit of a small batch in ONE round trip (autocommit): with fsync costing milliseconds,
-- round trips decide the latency of a durable reply. Each CTE takes parallel arrays (unnest);
-- the sets of ids are disjoint by construction (a live job is upserted, a gone one deleted).
WITH
gone_jobs AS (DELETE FROM mq_jobs WHERE id = ANY($1::bigint[])),
gone_done AS (DELETE FROM mq_done WHERE id = ANY($2::bigint[])),
put_jobs AS (
    INSERT INTO mq_jobs (id, shard, queue, state, data, priority, created_at, run_at, started_at,
                         attempts, max_attempts, backoff, ttl, timeout, unique_key, depends_on,
                         pending_deps, progress, progress_msg, tags, dlq_at)
    SELECT * FROM unnest($3::bigint[], $4::smallint[], $5::text[], $6::smallint[], $7::bytea[],
                         $8::integer[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                         $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::text[],
                         $18::text[], $19::text[], $20::integer[], $21::text[], $22::text[],
                         $23::bigint[])
    ON CONFLICT (id) DO UPDATE
    SET shard = EXCLUDED.shard, queue = EXCLUDED.queue, state = EXCLUDED.state,
        data = EXCLUDED.data, priority = EXCLUDED.priority, created_at = EXCLUDED.created_at,
        run_at = EXCLUDED.run_at, started_at = EXCLUDED.started_at,
        attempts = EXCLUDED.attempts, max_attempts = EXCLUDED.max_attempts,
        backoff = EXCLUDED.backoff, ttl = EXCLUDED.ttl, timeout = EXCLUDED.timeout,
        unique_key = EXCLUDED.unique_key, depends_on = EXCLUDED.depends_on,
        pending_deps = EXCLUDED.pending_deps, progress = EXCLUDED.progress,
        progress_msg = EXCLUDED.progress_msg, tags = EXCLUDED.tags, dlq_at = EXCLUDED.dlq_at
),
put_done AS (
    INSERT INTO mq_done (id, shard, result, completed_at)
    SELECT * FROM unnest($24::bigint[], $25::smallint[], $26::bytea[], $27::bigint[])
    ON CONFLICT (id) DO UPDATE SET result = EXCLUDED.result, completed_at = EXCLUDED.completed_at
),
put_queues AS (
    INSERT INTO mq_queues (name, shard, paused, rate_limit, concurrency)
    SELECT * FROM unnest($28::text[], $29::smallint[], $30::boolean[], $31::integer[],
                         $32::integer[])
    ON CONFLICT (name) DO UPDATE
    SET shard = EXCLUDED.shard, paused = EXCLUDED.paused,
        rate_limit = EXCLUDED.rate_limit, concurrency = EXCLUDED.concurrency
),
put_crons AS (
    INSERT INTO mq_crons (name, shard, queue, data, schedule, priority, next_run)
    SELECT * FROM unnest($33::text[], $34::smallint[], $35::text[], $36::bytea[], $37::text[],
                         $38::integer[], $39::bigint[])
    ON CONFLICT (name) DO UPDATE
    SET shard = EXCLUDED.shard, queue = EXCLUDED.queue, data = EXCLUDED.data,
        schedule = EXCLUDED.schedule, priority = EXCLUDED.priority, next_run = EXCLUDED.next_run
),
gone_crons AS (DELETE FROM mq_crons WHERE name = ANY($40::text[])),
put_shards AS (
    INSERT INTO mq_shards (shard, seq, total_pushed, total_completed, total_failed,
                           total_expired, total_retried, total_cancelled)
    SELECT * FROM unnest($41::smallint[], $42::bigint[], $43::bigint[], $44::bigint[],
                         $45::bigint[], $46::bigint[], $47::bigint[], $48::bigint[])
    ON CONFLICT (shard) DO UPDATE
    SET seq = EXCLUDED.seq, total_pushed = EXCLUDED.total_pushed,
        total_completed = EXCLUDED.total_completed, total_failed = EXCLUDED.total_failed,
        total_expired = EXCLUDED.total_expired, total_retried = EXCLUDED.total_retried,
        total_cancelled = EXCLUDED.total_cancelled
)
SELECT 1;
