-- 0002: find old completed ids by shard and age (recovery loads and prunes them that way).

CREATE INDEX mq_done_shard ON mq_done (shard, completed_at);
