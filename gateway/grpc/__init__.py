"""The gRPC API (GRPC=1, port GRPC_PORT, default 6791): `magicqueue.QueueService`.

- `service`: the worker's gRPC listener (grpcio's asyncio server on its own thread).
- `bridge`: the only crossing between that thread and the worker's trio thread.
- `servicer`: the RPC handlers; `convert`: messages <-> the TCP protocol's JSON objects.

The contract is `proto/magicqueue.proto`. Nothing here is imported unless GRPC is on.
"""
