"""Token auth: the clients send AUTH on connect; refusals map to AuthenticationFailed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from magicqueue_client import AsyncClient, AuthenticationFailed, Client
from tests.client.helpers import current_backend, qname
from tests.harness import Cluster

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def auth_cluster() -> Iterator[Cluster]:
    c = Cluster(workers=2, AUTH_TOKENS=f"other,{TOKEN}").start()
    try:
        yield c
    finally:
        assert c.stop() == 0, c.log()


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_async_auth(auth_cluster: Cluster, anyio_backend: str) -> None:
    assert current_backend() == anyio_backend
    q = qname()
    port = auth_cluster.port
    async with AsyncClient(port=port) as c:
        with pytest.raises(AuthenticationFailed) as ei:
            await c.push(q, 1)
        assert ei.value.message == "Authentication required"
        with pytest.raises(AuthenticationFailed, match="Invalid token"):
            await c.auth("wrong")
        await c.auth(TOKEN)  # explicit AUTH on the live connection
        assert await c.get_state(await c.push(q, 1)) == "waiting"
    with pytest.raises(AuthenticationFailed, match="Invalid token"):
        async with AsyncClient(port=port, token="wrong"):
            pass
    q2 = qname()
    async with AsyncClient(port=port, token=TOKEN) as c:
        jid = await c.push(q2, 2)
        job = await c.pull(q2, timeout=5)
        assert job is not None and job.id == jid
        await c.ack(jid)
        assert await c.get_state(jid) == "completed"


@pytest.mark.timeout(30)
def test_sync_auth(auth_cluster: Cluster) -> None:
    q = qname()
    with Client(port=auth_cluster.port) as c, pytest.raises(AuthenticationFailed) as ei:
        c.push(q, 1)
    assert ei.value.message == "Authentication required"
    with pytest.raises(AuthenticationFailed, match="Invalid token"):
        Client(port=auth_cluster.port, token="nope").connect()
    with Client(port=auth_cluster.port, token=TOKEN) as c:
        jid = c.push(q, 1)
        assert c.get_state(jid) == "waiting"
    with Client(port=auth_cluster.port) as c:
        with pytest.raises(AuthenticationFailed, match="Invalid token"):
            c.auth("wrong")
        c.auth(TOKEN)  # explicit AUTH on the live connection
        assert c.get_state(jid) == "waiting"
