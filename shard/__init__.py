"""The queue engine.

`shard.core` is pure: jobs, per-queue structures, limits, cron schedules and the state machine,
with time passed in as integer milliseconds and no I/O. `shard.shardset` joins the shards one
process owns (dependencies and cron firings between them). `shard.runtime` drives them under
trio: timers, parked blocking pulls, event emission. `shard.persistence` writes and restores them.
"""
