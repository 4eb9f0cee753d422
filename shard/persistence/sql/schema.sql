-- The current schema, applied as a whole to an empty database (then stamped with the latest
-- migration version). An existing database gets the migrations in migrations/ instead; a test
-- checks that both roads end in the same schema.
--
-- Every row carries its shard: a worker loads and writes only the rows of the shards it owns,
-- so changing WORKERS between runs just moves shards between processes. There is no index on
-- shard: recovery reads a shard's rows once (a sequential scan), while every commit would pay
-- to maintain one.
-- A job is one row of five columns: what an operator may want to query (queue, state) and one
-- msgpack record with the rest, so a commit encodes and writes 5 values per job, not 21.
-- Payloads (data, result) are the compact JSON bytes the server received, kept as bytes:
-- jsonb would reorder object keys and change what clients get back after a restart.

CREATE TABLE mq_schema_version (
    version integer NOT NULL
);

CREATE TABLE mq_jobs (
    id     bigint PRIMARY KEY,
    shard  smallint NOT NULL,
    queue  text NOT NULL,
    state  smallint NOT NULL,       -- 0 waiting 1 delayed 2 active 3 waiting-children 4 failed
    record bytea NOT NULL           -- msgpack of every other field (shard/persistence/records.py)
);

CREATE TABLE mq_done (
    id           bigint PRIMARY KEY,
    shard        smallint NOT NULL,
    result       bytea,
    completed_at bigint NOT NULL
);

CREATE TABLE mq_queues (
    name        text PRIMARY KEY,
    shard       smallint NOT NULL,
    paused      boolean NOT NULL,
    rate_limit  integer,
    concurrency integer
);

CREATE TABLE mq_crons (
    name     text PRIMARY KEY,
    shard    smallint NOT NULL,
    queue    text NOT NULL,
    data     bytea NOT NULL,
    schedule text NOT NULL,
    priority integer NOT NULL,
    next_run bigint NOT NULL
);

CREATE TABLE mq_shards (
    shard           smallint PRIMARY KEY,
    seq             bigint NOT NULL,
    total_pushed    bigint NOT NULL,
    total_completed bigint NOT NULL,
    total_failed    bigint NOT NULL,
    total_expired   bigint NOT NULL,
    total_retried   bigint NOT NULL,
    total_cancelled bigint NOT NULL
);
