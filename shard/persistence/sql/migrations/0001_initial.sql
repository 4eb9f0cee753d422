-- 0001: the first schema (jobs, completed ids, queue settings, crons, shard counters).

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
CREATE INDEX mq_jobs_shard ON mq_jobs (shard);

CREATE TABLE mq_done (
    id           bigint PRIMARY KEY,
    shard        smallint NOT NULL,
    result       bytea,
    completed_at bigint NOT NULL
);
CREATE INDEX mq_done_shard ON mq_done (shard, completed_at);

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
