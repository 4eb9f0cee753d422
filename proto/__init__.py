"""Wire formats and the command schema of MagicQueue.

Pure code: no trio, no sockets, no clock. Bytes and decoded JSON come in; typed commands,
frames and reply shapes come out. Every error raised here is a `proto.errors.QueueError`
subclass that already knows its wire message and HTTP status.
"""
