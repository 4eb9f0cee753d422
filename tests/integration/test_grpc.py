"""The gRPC API against the real cluster (WORKERS=2, GRPC=1) with a real grpcio client.

Every RPC, both streaming consumers through push -> stream -> ack on queues owned by each worker
(a channel lands on one worker, so one of the two queues is always reached through a link), the
status codes, auth on and off, a consumer that vanishes mid-stream (its jobs go back to waiting
with attempts 1, seen over TCP), and a clean stop with a stream open.

A queue's owner is computed here as a client would: `crc32(utf8(name)) % 32 % workers`.
"""

from __future__ import annotations

import itertools
import queue as queue_mod
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from proto.grpc_gen import load
from tests.harness import Client, Cluster

pb, pb_grpc = load()

RPC_TIMEOUT = 10.0  # seconds; every call has a deadline so a bug fails fast instead of hanging
STREAM_TIMEOUT = 30.0
_names = itertools.count()
_run = uuid.uuid4().hex[:6]


def queue_on(worker: int, tag: str = "q") -> str:
    """A fresh queue name whose shard belongs to `worker` (of 2)."""
    while True:
        name = f"grpc-{_run}-{tag}-{next(_names)}"
        if zlib.crc32(name.encode()) % 32 % 2 == worker:
            return name


def wait_until(probe: Any, timeout: float = 10.0) -> Any:
    """Call `probe` until it returns something truthy (bounded), and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s (last: {value!r})")
        time.sleep(0.02)


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    return err.code(), err.details()


class Results:
    """The request side of a ProcessJobs call: a blocking iterator fed from the test."""

    def __init__(self) -> None:
        self._q: queue_mod.Queue[Any] = queue_mod.Queue()

    def send(self, msg: Any) -> None:
        self._q.put(msg)

    def close(self) -> None:
        self._q.put(None)

    def __iter__(self) -> Iterator[Any]:
        while True:
            msg = self._q.get()
            if msg is None:
                return
            yield msg


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gcluster() -> Iterator[Cluster]:
    c = Cluster(workers=2, GRPC="1").start()
    try:
        assert c.grpc_port, c.log()
        yield c
    finally:
        code = c.stop()
        assert code == 0, c.log()


@pytest.fixture(scope="module")
def channel(gcluster: Cluster) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(f"127.0.0.1:{gcluster.grpc_port}")
    try:
        yield ch
    finally:
        ch.close()


@pytest.fixture
def stub(channel: grpc.Channel) -> Any:
    return pb_grpc.QueueServiceStub(channel)


@pytest.fixture
def tcp(gcluster: Cluster) -> Iterator[Client]:
    with gcluster.client() as c:
        yield c


WORKERS = pytest.mark.parametrize("worker", [0, 1])


# ---------------------------------------------------------------- unary RPCs


@WORKERS
def test_push_get_pull_ack(stub: Any, tcp: Client, worker: int) -> None:
    q = queue_on(worker)
    parent = stub.Push(pb.PushRequest(queue=q, data=b"null"), timeout=RPC_TIMEOUT).id
    stub.Ack(
        pb.AckRequest(id=stub.Pull(pb.PullRequest(queue=q), timeout=RPC_TIMEOUT).id),
        timeout=RPC_TIMEOUT,
    )
    r = stub.Push(
        pb.PushRequest(
            queue=q,
            data=b'{"n": 1, "s": "\xc3\xa9"}',
            priority=7,
            ttl_ms=600_000,
            timeout_ms=600_000,
            max_attempts=3,
            backoff_ms=500,
            unique_key="k1",
            depends_on=[parent],
            tags=["a", "b"],
        ),
        timeout=RPC_TIMEOUT,
    )
    assert r.ok and r.id % 32 == zlib.crc32(q.encode()) % 32

    got = stub.GetJob(pb.GetJobRequest(id=r.id), timeout=RPC_TIMEOUT)
    assert got.state == pb.WAITING and got.HasField("job")
    job = got.job
    assert (job.id, job.queue, job.priority, job.max_attempts) == (r.id, q, 7, 3)
    assert (job.ttl, job.timeout, job.backoff, job.attempts, job.started_at) == (
        600_000,
        600_000,
        500,
        0,
        0,
    )
    assert job.unique_key == "k1" and list(job.depends_on) == [parent]
    assert list(job.tags) == ["a", "b"] and not job.HasField("progress_msg")
    # data travels as JSON bytes, and is the same JSON the TCP protocol sees
    assert tcp.ok("GETJOB", id=r.id)["job"]["data"] == {"n": 1, "s": "é"}

    state = stub.GetState(pb.GetStateRequest(id=r.id), timeout=RPC_TIMEOUT)
    assert (state.id, state.state) == (r.id, pb.WAITING)

    pulled = stub.Pull(pb.PullRequest(queue=q, timeout_ms=5_000), timeout=RPC_TIMEOUT)
    assert pulled.id == r.id and pulled.started_at > 0
    assert tcp.ok("GETSTATE", id=r.id)["state"] == "active"
    assert stub.Ack(pb.AckRequest(id=r.id, result=b'{"done": true}'), timeout=RPC_TIMEOUT).ok
    done = stub.GetJob(pb.GetJobRequest(id=r.id), timeout=RPC_TIMEOUT)
    assert done.state == pb.COMPLETED and not done.HasField("job")
    assert tcp.ok("GETRESULT", id=r.id)["result"] == {"done": True}
    # the unique key is released on completion
    assert stub.Push(pb.PushRequest(queue=q, data=b"1", unique_key="k1"), timeout=RPC_TIMEOUT).ok


@WORKERS
def test_batches(stub: Any, tcp: Client, worker: int) -> None:
    q = queue_on(worker)
    jobs = [pb.JobInput(data=str(i).encode(), priority=i % 2) for i in range(6)]
    r = stub.PushBatch(pb.PushBatchRequest(queue=q, jobs=jobs), timeout=RPC_TIMEOUT)
    assert r.ok and len(r.ids) == 6 and len(set(r.ids)) == 6
    # priority 1 first (ids 1, 3, 5 of the batch), then FIFO within a priority
    first = stub.PullBatch(pb.PullBatchRequest(queue=q, count=4), timeout=RPC_TIMEOUT).jobs
    assert [j.id for j in first] == [r.ids[1], r.ids[3], r.ids[5], r.ids[0]]
    assert [j.data for j in first] == [b"1", b"3", b"5", b"0"]
    acked = stub.AckBatch(
        pb.AckBatchRequest(ids=[j.id for j in first] + [r.ids[2], 987_654_321]),
        timeout=RPC_TIMEOUT,
    )
    assert acked.ok and acked.acked == 4  # only the active ones count
    assert [tcp.ok("GETSTATE", id=i)["state"] for i in r.ids] == [
        "completed",
        "completed",
        "waiting",
        "completed",
        "waiting",
        "completed",
    ]
    rest = stub.PullBatch(pb.PullBatchRequest(queue=q, count=10), timeout=RPC_TIMEOUT).jobs
    assert [j.id for j in rest] == [r.ids[2], r.ids[4]]


@WORKERS
def test_fail_retries_then_dead_letters(stub: Any, worker: int) -> None:
    q = queue_on(worker)
    jid = stub.Push(pb.PushRequest(queue=q, data=b"{}", max_attempts=2), timeout=RPC_TIMEOUT).id
    assert stub.Pull(pb.PullRequest(queue=q), timeout=RPC_TIMEOUT).id == jid
    assert stub.Fail(pb.FailRequest(id=jid, error="boom"), timeout=RPC_TIMEOUT).ok
    again = stub.GetJob(pb.GetJobRequest(id=jid), timeout=RPC_TIMEOUT)
    assert again.state == pb.WAITING
    assert (again.job.attempts, again.job.progress_msg) == (1, "boom")
    assert stub.Pull(pb.PullRequest(queue=q), timeout=RPC_TIMEOUT).id == jid
    assert stub.Fail(pb.FailRequest(id=jid), timeout=RPC_TIMEOUT).ok
    dead = stub.GetState(pb.GetStateRequest(id=jid), timeout=RPC_TIMEOUT)
    assert dead.state == pb.FAILED


def test_pull_timeouts_and_blocking_pull(stub: Any) -> None:
    q = queue_on(0)
    none = stub.Pull(pb.PullRequest(queue=q, timeout_ms=0), timeout=RPC_TIMEOUT)
    assert none.id == 0  # "no job"
    assert not stub.PullBatch(
        pb.PullBatchRequest(queue=q, count=5, timeout_ms=30), timeout=RPC_TIMEOUT
    ).jobs
    waiting = stub.Pull.future(pb.PullRequest(queue=q), timeout=RPC_TIMEOUT)
    jid = stub.Push(pb.PushRequest(queue=q, data=b'"late"'), timeout=RPC_TIMEOUT).id
    got = waiting.result(timeout=RPC_TIMEOUT)
    assert (got.id, got.data) == (jid, b'"late"')


@WORKERS
def test_abandoned_pull_is_never_handed_a_job(stub: Any, tcp: Client, worker: int) -> None:
    q = queue_on(worker)
    code, _ = code_of(lambda: stub.Pull(pb.PullRequest(queue=q), timeout=0.2))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    jid = stub.Push(pb.PushRequest(queue=q, data=b"1"), timeout=RPC_TIMEOUT).id
    # the parked pull is gone: the job waits for the next puller instead of vanishing into it
    job = tcp.ok("PULL", queue=q, timeout=5_000)["job"]
    assert job is not None and job["id"] == jid and job["attempts"] == 0
    tcp.ok("ACK", id=jid)  # nothing left in hand to be released behind the next test's back


def test_stats(stub: Any) -> None:
    q = queue_on(1)
    before = stub.Stats(pb.StatsRequest(), timeout=RPC_TIMEOUT)
    stub.PushBatch(
        pb.PushBatchRequest(
            queue=q,
            jobs=[pb.JobInput(data=b"1", delay_ms=600_000)] * 3 + [pb.JobInput(data=b"2")] * 2,
        ),
        timeout=RPC_TIMEOUT,
    )
    stub.Pull(pb.PullRequest(queue=q), timeout=RPC_TIMEOUT)
    after = stub.Stats(pb.StatsRequest(), timeout=RPC_TIMEOUT)
    assert after.delayed - before.delayed == 3
    assert after.queued - before.queued == 1
    assert after.processing - before.processing == 1


def test_state_of_unknown_job_is_unknown(stub: Any) -> None:
    r = stub.GetState(pb.GetStateRequest(id=123_456_789), timeout=RPC_TIMEOUT)
    assert (r.id, r.state) == (123_456_789, pb.UNKNOWN)


# ---------------------------------------------------------------- errors


def test_status_codes(stub: Any) -> None:
    q = queue_on(0)
    bad = grpc.StatusCode.INVALID_ARGUMENT
    code, msg = code_of(lambda: stub.Push(pb.PushRequest(queue=q, data=b"{oops"), timeout=5))
    assert code == bad and msg.startswith("Invalid: field 'data' is not valid JSON")
    code, msg = code_of(lambda: stub.Push(pb.PushRequest(queue=q), timeout=5))
    assert code == bad and "'data' is empty" in msg
    code, msg = code_of(lambda: stub.Push(pb.PushRequest(queue="x" * 300, data=b"1"), timeout=5))
    assert code == bad and "'queue'" in msg
    code, msg = code_of(
        lambda: stub.PushBatch(
            pb.PushBatchRequest(queue=q, jobs=[pb.JobInput(data=b"1"), pb.JobInput(data=b"[")]),
            timeout=5,
        )
    )
    assert code == bad and "jobs[1].data" in msg
    code, msg = code_of(lambda: stub.PullBatch(pb.PullBatchRequest(queue=q, count=0), timeout=5))
    assert code == bad and "'count'" in msg
    code, msg = code_of(
        lambda: stub.Push(pb.PushRequest(queue=q, data=b"1", depends_on=[999_999_999]), timeout=5)
    )
    assert code == bad and msg == "Unknown dependency: 999999999"
    code, msg = code_of(lambda: stub.Ack(pb.AckRequest(id=42, result=b"nope"), timeout=5))
    assert code == bad and "'result'" in msg

    missing = grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.Ack(pb.AckRequest(id=999_999_968), timeout=5)) == (
        missing,
        "Job 999999968 not found",
    )
    assert code_of(lambda: stub.Fail(pb.FailRequest(id=999_999_969), timeout=5)) == (
        missing,
        "Job 999999969 not found",
    )
    assert code_of(lambda: stub.GetJob(pb.GetJobRequest(id=999_999_970), timeout=5)) == (
        missing,
        "Job 999999970 not found",
    )

    dup = grpc.StatusCode.ALREADY_EXISTS
    stub.Push(pb.PushRequest(queue=q, data=b"1", unique_key="same"), timeout=5)
    assert code_of(
        lambda: stub.Push(pb.PushRequest(queue=q, data=b"2", unique_key="same"), timeout=5)
    ) == (dup, "Duplicate job with key: same")
    code, msg = code_of(
        lambda: stub.PushBatch(
            pb.PushBatchRequest(
                queue=q,
                jobs=[
                    pb.JobInput(data=b"1", unique_key="b1"),
                    pb.JobInput(data=b"2", unique_key="b1"),
                ],
            ),
            timeout=5,
        )
    )
    assert (code, msg) == (dup, "Duplicate job with key: b1")
    # the refused batch left nothing behind: its key is still free
    assert stub.Push(pb.PushRequest(queue=q, data=b"3", unique_key="b1"), timeout=5).ok


def test_auth_is_off_without_tokens(stub: Any) -> None:
    md = (("authorization", "Bearer whatever"),)
    assert stub.Stats(pb.StatsRequest(), timeout=RPC_TIMEOUT, metadata=md) is not None
    assert stub.Push(pb.PushRequest(queue=queue_on(1), data=b"1"), timeout=RPC_TIMEOUT).ok


# ---------------------------------------------------------------- streaming consumers


@WORKERS
def test_stream_jobs_push_stream_ack(stub: Any, tcp: Client, worker: int) -> None:
    q = queue_on(worker)
    ids = stub.PushBatch(
        pb.PushBatchRequest(queue=q, jobs=[pb.JobInput(data=str(i).encode()) for i in range(7)]),
        timeout=RPC_TIMEOUT,
    ).ids
    stream = stub.StreamJobs(
        pb.StreamJobsRequest(queue=q, batch_size=2, prefetch=3), timeout=STREAM_TIMEOUT
    )
    seen = []
    try:
        for job in stream:
            assert job.queue == q and job.data == str(len(seen)).encode()
            seen.append(job.id)
            assert stub.Ack(pb.AckRequest(id=job.id), timeout=RPC_TIMEOUT).ok
            if len(seen) == 5:  # pushed while the stream is open: it keeps delivering
                more = stub.Push(pb.PushRequest(queue=q, data=b"7"), timeout=RPC_TIMEOUT).id
                ids = [*ids, more]
            if len(seen) == len(ids):
                break
    finally:
        stream.cancel()
    assert seen == list(ids)
    assert {tcp.ok("GETSTATE", id=i)["state"] for i in ids} == {"completed"}


@WORKERS
def test_process_jobs_metadata_acks_and_fails(stub: Any, tcp: Client, worker: int) -> None:
    q = queue_on(worker)
    ids = stub.PushBatch(
        pb.PushBatchRequest(
            queue=q, jobs=[pb.JobInput(data=str(i).encode(), max_attempts=1) for i in range(6)]
        ),
        timeout=RPC_TIMEOUT,
    ).ids
    results = Results()
    call = stub.ProcessJobs(
        iter(results), metadata=(("x-queue", q), ("x-prefetch", "2")), timeout=STREAM_TIMEOUT
    )
    seen = []
    try:
        for job in call:
            seen.append(job.id)
            if len(seen) % 3 == 0:
                results.send(pb.JobResult(id=job.id, success=False, error="bad"))
            else:
                results.send(pb.JobResult(id=job.id, success=True, result=b'{"ok": 1}'))
            if len(seen) == len(ids):
                break
        results.close()  # half-close: the server ends the call
        assert list(call) == []
    finally:
        results.close()
        call.cancel()
    assert seen == list(ids)

    def settled() -> list[str] | None:
        states = [tcp.ok("GETSTATE", id=i)["state"] for i in ids]
        return states if "active" not in states else None

    states = wait_until(settled)
    assert states == ["completed", "completed", "failed"] * 2
    assert tcp.ok("GETRESULT", id=ids[0])["result"] == {"ok": 1}
    assert [j["progress_msg"] for j in tcp.ok("DLQ", queue=q)["jobs"]] == ["bad", "bad"]


@WORKERS
def test_process_jobs_first_message_names_the_queue(stub: Any, tcp: Client, worker: int) -> None:
    q = queue_on(worker)
    ids = stub.PushBatch(
        pb.PushBatchRequest(queue=q, jobs=[pb.JobInput(data=b"1")] * 4), timeout=RPC_TIMEOUT
    ).ids
    results = Results()
    results.send(pb.JobResult(queue=q, prefetch=4))
    call = stub.ProcessJobs(iter(results), timeout=STREAM_TIMEOUT)
    seen = []
    try:
        for job in call:
            seen.append(job.id)
            if len(seen) == 4:  # prefetch 4: all four arrive before any result is sent
                for i in seen:
                    results.send(pb.JobResult(id=i, success=True))
                break
        wait_until(lambda: {tcp.ok("GETSTATE", id=i)["state"] for i in ids} == {"completed"})
    finally:
        results.close()
        call.cancel()
    assert sorted(seen) == sorted(ids)


def test_process_jobs_without_a_queue_is_refused(stub: Any) -> None:
    results = Results()
    results.send(pb.JobResult(id=5, success=True))
    call = stub.ProcessJobs(iter(results), timeout=STREAM_TIMEOUT)
    try:
        code, msg = code_of(lambda: list(call))
    finally:
        results.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "x-queue" in msg


def test_process_jobs_bad_result_ends_the_call_and_gives_jobs_back(stub: Any, tcp: Client) -> None:
    q = queue_on(0)
    jid = stub.Push(pb.PushRequest(queue=q, data=b"1"), timeout=RPC_TIMEOUT).id
    results = Results()
    call = stub.ProcessJobs(iter(results), metadata=(("x-queue", q),), timeout=STREAM_TIMEOUT)
    try:
        assert next(call).id == jid
        results.send(pb.JobResult(id=jid, success=True, result=b"{not json"))
        code, msg = code_of(lambda: list(call))
    finally:
        results.close()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'result'" in msg
    job = wait_until(lambda: _all_back_to_waiting(tcp, [jid]))[0]
    assert job["attempts"] == 1


def test_stream_jobs_bad_window_is_refused(stub: Any) -> None:
    call = stub.StreamJobs(
        pb.StreamJobsRequest(queue="q", batch_size=1, prefetch=10**9), timeout=STREAM_TIMEOUT
    )
    code, msg = code_of(lambda: list(call))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'prefetch'" in msg


def _all_back_to_waiting(tcp: Client, ids: list[int]) -> list[dict[str, Any]] | None:
    jobs = [tcp.ok("GETJOB", id=i) for i in ids]
    if all(j["state"] == "waiting" for j in jobs):
        return [j["job"] for j in jobs]
    return None


@WORKERS
def test_stream_consumer_that_disconnects_gives_its_jobs_back(
    gcluster: Cluster, stub: Any, tcp: Client, worker: int
) -> None:
    q = queue_on(worker)
    ids = list(
        stub.PushBatch(
            pb.PushBatchRequest(queue=q, jobs=[pb.JobInput(data=b"1")] * 3), timeout=RPC_TIMEOUT
        ).ids
    )
    ch = grpc.insecure_channel(f"127.0.0.1:{gcluster.grpc_port}")
    try:
        consumer = pb_grpc.QueueServiceStub(ch)
        stream = consumer.StreamJobs(
            pb.StreamJobsRequest(queue=q, batch_size=3), timeout=STREAM_TIMEOUT
        )
        first = next(stream)
        assert first.id == ids[0]
        # one PULLB took all three: in the consumer's hand, though it read only one
        assert {tcp.ok("GETSTATE", id=i)["state"] for i in ids} == {"active"}
    finally:
        ch.close()  # the consumer vanishes without acking anything
    jobs = wait_until(lambda: _all_back_to_waiting(tcp, ids))
    assert [(j["attempts"], j["progress_msg"]) for j in jobs] == [(1, "Worker connection lost")] * 3


@WORKERS
def test_process_consumer_that_disconnects_gives_its_jobs_back(
    gcluster: Cluster, stub: Any, tcp: Client, worker: int
) -> None:
    q = queue_on(worker)
    ids = list(
        stub.PushBatch(
            pb.PushBatchRequest(queue=q, jobs=[pb.JobInput(data=b"1")] * 3), timeout=RPC_TIMEOUT
        ).ids
    )
    ch = grpc.insecure_channel(f"127.0.0.1:{gcluster.grpc_port}")
    results = Results()
    try:
        consumer = pb_grpc.QueueServiceStub(ch)
        call = consumer.ProcessJobs(
            iter(results), metadata=(("x-queue", q), ("x-prefetch", "2")), timeout=STREAM_TIMEOUT
        )
        got = [next(call).id, next(call).id]
        assert got == ids[:2]
        results.send(pb.JobResult(id=got[0], success=True))  # one answered, one still in hand
        wait_until(lambda: tcp.ok("GETSTATE", id=ids[0])["state"] == "completed")
        third = next(call)  # the answer made room for the third
        assert third.id == ids[2]
    finally:
        ch.close()
        results.close()
    jobs = wait_until(lambda: _all_back_to_waiting(tcp, ids[1:]))
    assert [j["attempts"] for j in jobs] == [1, 1]
    assert tcp.ok("GETSTATE", id=ids[0])["state"] == "completed"


# ---------------------------------------------------------------- auth on; clean stop


@pytest.fixture(scope="module")
def auth_cluster() -> Iterator[Cluster]:
    c = Cluster(workers=2, GRPC="1", AUTH_TOKENS="tok-one,tok-two").start()
    try:
        yield c
    finally:
        code = c.stop()
        assert code == 0, c.log()


def test_auth_tokens(auth_cluster: Cluster) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{auth_cluster.grpc_port}") as ch:
        s = pb_grpc.QueueServiceStub(ch)
        q = queue_on(0)
        no_auth = grpc.StatusCode.UNAUTHENTICATED
        req = pb.PushRequest(queue=q, data=b"1")
        assert code_of(lambda: s.Push(req, timeout=5)) == (no_auth, "Authentication required")
        wrong = (("authorization", "Bearer tok-three"),)
        assert code_of(lambda: s.Push(req, timeout=5, metadata=wrong)) == (
            no_auth,
            "Invalid token",
        )
        basic = (("authorization", "Basic tok-one"),)
        assert code_of(lambda: s.Stats(pb.StatsRequest(), timeout=5, metadata=basic))[0] == no_auth
        assert code_of(lambda: list(s.StreamJobs(pb.StreamJobsRequest(queue=q), timeout=5))) == (
            no_auth,
            "Authentication required",
        )
        results = Results()
        try:
            call = s.ProcessJobs(iter(results), metadata=(("x-queue", q),), timeout=5)
            assert code_of(lambda: list(call))[0] == no_auth
        finally:
            results.close()

        for token in ("tok-one", "tok-two"):
            md = (("authorization", f"Bearer {token}"),)
            jid = s.Push(req, timeout=5, metadata=md).id
            assert s.Pull(pb.PullRequest(queue=q), timeout=5, metadata=md).id == jid
            assert s.Ack(pb.AckRequest(id=jid), timeout=5, metadata=md).ok
        md = (("authorization", "Bearer tok-two"),)
        results = Results()
        jid = s.Push(req, timeout=5, metadata=md).id
        call = s.ProcessJobs(iter(results), metadata=(*md, ("x-queue", q)), timeout=STREAM_TIMEOUT)
        try:
            assert next(call).id == jid
        finally:
            results.close()
            call.cancel()


@pytest.mark.timeout(60)
def test_sigterm_with_an_open_stream_stops_cleanly() -> None:
    c = Cluster(workers=2, GRPC="1").start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as ch:
            s = pb_grpc.QueueServiceStub(ch)
            q = queue_on(1)
            jid = s.Push(pb.PushRequest(queue=q, data=b"1"), timeout=5).id
            stream = s.StreamJobs(pb.StreamJobsRequest(queue=q), timeout=STREAM_TIMEOUT)
            assert next(stream).id == jid  # in hand when the server is told to stop
            assert c.stop() == 0, c.log()
            code, _ = code_of(lambda: list(stream))
            assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    finally:
        if c.proc is not None and c.proc.poll() is None:
            c.kill()
