"""Unary gRPC calls on our own HTTP/2 client, read on the event loop: the hub's gRPC health checks and
etcd's KV requests, at a fraction of grpc.aio's CPU and wake-ups per call (see ``http2.py``)."""
