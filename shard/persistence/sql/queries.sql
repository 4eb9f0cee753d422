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
