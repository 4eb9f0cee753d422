-- 0002: keep the DLQ's arrival order across restarts, and find old results by shard and age.

ALTER TABLE mq_jobs ADD COLUMN dlq_at bigint NOT NULL DEFAULT 0;
ALTER TABLE mq_jobs ALTER COLUMN dlq_at DROP DEFAULT;
CREATE INDEX mq_done_shard ON mq_done (shard, completed_at);
