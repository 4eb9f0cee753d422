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

-- The statements of a commit. shard/persistence/commit.py sends the ones a batch needs in ONE
-- pipeline ending in one Sync, which PostgreSQL runs as one implicit transaction: one round
-- trip, all or nothing. Each takes parallel arrays (unnest) bound in binary. The id sets are
-- disjoint by construction (a live job is upserted, a gone one deleted), so no two statements
-- of a commit touch the same row.

-- name: gone_jobs
-- Deletes join against unnest() rather than test `id = ANY($1)`: under a generic plan made while
-- the table was small, ANY() became a sequential scan comparing every row with every id
-- (700 ms for 1,000 ids in a 100k-row table, measured); the join always probes the primary key.
DELETE FROM mq_jobs USING unnest($1::bigint[]) AS gone(id) WHERE mq_jobs.id = gone.id;

-- name: gone_done
DELETE FROM mq_done USING unnest($1::bigint[]) AS gone(id) WHERE mq_done.id = gone.id;

-- name: put_jobs
INSERT INTO mq_jobs (id, shard, queue, state, record)
SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::text[], $4::smallint[], $5::bytea[])
ON CONFLICT (id) DO UPDATE
SET shard = EXCLUDED.shard, queue = EXCLUDED.queue, state = EXCLUDED.state,
    record = EXCLUDED.record;

-- name: put_done
INSERT INTO mq_done (id, shard, result, completed_at)
SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bytea[], $4::bigint[])
ON CONFLICT (id) DO UPDATE SET result = EXCLUDED.result, completed_at = EXCLUDED.completed_at;

-- name: copy_jobs
-- Large commits: the ids that may have a row are deleted first (gone_jobs), then every row is
-- copied, ~5x cheaper per row than the INSERT above (measured).
COPY mq_jobs (id, shard, queue, state, record) FROM STDIN (FORMAT binary);

-- name: copy_done
COPY mq_done (id, shard, result, completed_at) FROM STDIN (FORMAT binary);

-- name: put_queues
INSERT INTO mq_queues (name, shard, paused, rate_limit, concurrency)
SELECT * FROM unnest($1::text[], $2::smallint[], $3::boolean[], $4::integer[], $5::integer[])
ON CONFLICT (name) DO UPDATE
SET shard = EXCLUDED.shard, paused = EXCLUDED.paused,
    rate_limit = EXCLUDED.rate_limit, concurrency = EXCLUDED.concurrency;

-- name: put_crons
INSERT INTO mq_crons (name, shard, queue, data, schedule, priority, next_run)
SELECT * FROM unnest($1::text[], $2::smallint[], $3::text[], $4::bytea[], $5::text[],
                     $6::integer[], $7::bigint[])
ON CONFLICT (name) DO UPDATE
SET shard = EXCLUDED.shard, queue = EXCLUDED.queue, data = EXCLUDED.data,
    schedule = EXCLUDED.schedule, priority = EXCLUDED.priority, next_run = EXCLUDED.next_run;

-- name: gone_crons
DELETE FROM mq_crons USING unnest($1::text[]) AS gone(name) WHERE mq_crons.name = gone.name;

-- name: put_shards
INSERT INTO mq_shards (shard, seq, total_pushed, total_completed, total_failed,
                       total_expired, total_retried, total_cancelled)
SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bigint[], $4::bigint[],
                     $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
ON CONFLICT (shard) DO UPDATE
SET seq = EXCLUDED.seq, total_pushed = EXCLUDED.total_pushed,
    total_completed = EXCLUDED.total_completed, total_failed = EXCLUDED.total_failed,
    total_expired = EXCLUDED.total_expired, total_retried = EXCLUDED.total_retried,
    total_cancelled = EXCLUDED.total_cancelled;
