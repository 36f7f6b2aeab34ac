"""What one gRPC health check costs, per way of making it: the candidates for the hub's gRPC prober.

    python bench/grpc_probes.py [--n 2000] [--rate 2000] [--duration 10]
    python bench/grpc_probes.py --quick        # 300 channels, 2 s per candidate: about 20 s

One run starts bench/health_targets.py (a grpc.aio server with grpcio-health-checking's HealthServicer,
answering SERVING for any service) and, in this process, keeps ``--n`` channels open, each to a
loopback host of its own (as the hub keeps one per instance). Each candidate then checks them in turn
at ``--rate`` checks/s (2,000/s: 10,000 instances at a 5 s interval) for ``--duration`` seconds, one
asyncio task per check as the hub's loops do, and the CPU of this process (every thread: grpc's own
included) is divided by the checks made:

* ``grpc.aio (target URIs)``: ``probe_grpc`` on grpc.aio (``AioHealthChannel``, the call awaited through
  ``await_grpc``): what the hub uses for gRPC target URIs, and used for every check before; the baseline;
* ``lean client, as shipped``: ``probe_grpc`` on ``open_channel``'s channel for host:port, our own HTTP/2
  client (``registry/checkers/grpc_lean.py`` on ``h2grpc``);
* ``aio, bare await``: the grpc.aio call awaited directly (what ``await_grpc`` and the result add);
* ``aio, one channel``: every check on one channel (a bound: real instances are on hosts of their own);
* ``sync stub, .future()``: grpcio's synchronous channel, ``.future()`` per call, its done callback
  handed to the event loop with ``call_soon_threadsafe`` (grpc's own threads drive the call);
* ``sync stub, 4 threads``: the blocking call in a pool of 4 threads (``run_in_executor``);
* ``lean HTTP/2 prototype``: a bound for a purpose-built client, measurement only (see ``LeanHttp2``).

The baseline of each row is grpc.aio of the same run. Not measured here (see bench/README.md):
probes batched per host (real instances are on hosts of their own), a probe worker process (its CPU
would count too: the same calls, plus a pipe).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import grpc
from grpc_health.v1 import health_pb2
from hub_scale import instance_host, start_targets  # bench/ is sys.path[0] when a bench script runs
from verdicts import ratio_text, verdict

from kk_etcd_mcp.registry.checkers import probe_grpc
from kk_etcd_mcp.registry.checkers.grpc import CHECK_METHOD, open_channel
from kk_etcd_mcp.registry.checkers.grpc_aio import AioHealthChannel
from kk_etcd_mcp.registry.model import CheckOptions, resolve_check

Check = Callable[[int], Awaitable[bool]]  # instance index -> passing


def health_check(channel: Any) -> Any:
    """The Health/Check multi-callable of a channel, grpc.aio or sync alike."""
    return channel.unary_unary(
        CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


class Candidate:
    name = ""

    async def open(self, addrs: list[str]) -> None: ...

    async def check(self, i: int) -> bool:
        raise NotImplementedError

    async def close(self) -> None: ...


class LeanShipped(Candidate):
    name = "lean client, as shipped"

    async def open(self, addrs: list[str]) -> None:
        self.specs = [resolve_check("grpc", a, CheckOptions(interval=5, timeout=5)) for a in addrs]
        self.channels: list[Any] = [await open_channel(spec) for spec in self.specs]

    async def check(self, i: int) -> bool:
        result = await probe_grpc(self.specs[i], self.channels[i])
        if result.status != "passing":
            raise RuntimeError(result.output)
        return True

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


class AioShipped(LeanShipped):
    name = "grpc.aio (target URIs)"

    async def open(self, addrs: list[str]) -> None:
        self.specs = [resolve_check("grpc", a, CheckOptions(interval=5, timeout=5)) for a in addrs]
        self.channels = [AioHealthChannel(spec) for spec in self.specs]


class AioBare(Candidate):
    name = "aio, bare await"

    async def open(self, addrs: list[str]) -> None:
        self.channels = [grpc.aio.insecure_channel(a, options=[("grpc.enable_http_proxy", 0)]) for a in addrs]
        self.stubs = [health_check(c) for c in self.channels]

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def check(self, i: int) -> bool:
        response = await self.stubs[i](health_pb2.HealthCheckRequest(), timeout=5)
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


class AioOneChannel(AioBare):
    name = "aio, one channel"

    async def open(self, addrs: list[str]) -> None:
        await super().open(addrs[:1])
        self.stubs *= len(addrs)  # every instance's check on the first one's channel (a bound, not a design)


class SyncFuture(Candidate):
    name = "sync stub, .future()"

    async def open(self, addrs: list[str]) -> None:
        self.channels = [grpc.insecure_channel(a, options=[("grpc.enable_http_proxy", 0)]) for a in addrs]
        self.stubs = [health_check(c) for c in self.channels]

    async def check(self, i: int) -> bool:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        call = self.stubs[i].future(health_pb2.HealthCheckRequest(), timeout=5)
        call.add_done_callback(lambda f: loop.call_soon_threadsafe(_settle, done, f))
        try:
            response = await done
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        for channel in self.channels:
            channel.close()


class SyncThreads(SyncFuture):
    name = "sync stub, 4 threads"

    async def open(self, addrs: list[str]) -> None:
        await super().open(addrs)
        self.pool = ThreadPoolExecutor(4)

    async def check(self, i: int) -> bool:
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(self.pool, self.stubs[i], health_pb2.HealthCheckRequest(), 5)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        self.pool.shutdown()
        await super().close()


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + struct.pack(">I", stream) + payload


def _literal(name: bytes, value: bytes) -> bytes:  # HPACK: literal without indexing, new name, no Huffman
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


class LeanHttp2(asyncio.Protocol):
    """A measurement prototype, not a client to ship: one connection, Health/Check as fixed bytes, the answer
    read from the DATA frame (SERVING is ``08 01``); no HPACK decoding (headers are skipped), no TLS, no
    deadlines, flow control by one large window update. What a lean call path could cost."""

    def __init__(self, authority: str) -> None:
        self.buffer = bytearray()
        self.next_stream = 1
        self.calls: dict[int, tuple[asyncio.Future[bool], bytearray]] = {}
        block = b"".join(
            _literal(n, v)
            for n, v in (
                (b":method", b"POST"), (b":scheme", b"http"), (b":path", CHECK_METHOD.encode()),
                (b":authority", authority.encode()), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
            )
        )  # fmt: skip
        message = health_pb2.HealthCheckRequest().SerializeToString()
        self.headers, self.body = block, b"\x00" + struct.pack(">I", len(message)) + message

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        transport.write(preface + _frame(4, 0, 0) + _frame(8, 0, 0, struct.pack(">I", 1 << 30)))

    def check(self) -> asyncio.Future[bool]:
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.calls[stream] = (done, bytearray())
        self.transport.write(_frame(1, 4, stream, self.headers) + _frame(0, 1, stream, self.body))
        return done

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags = self.buffer[3], self.buffer[4]
            stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buffer[9 : 9 + length])
            del self.buffer[: 9 + length]
            if kind == 4 and not flags & 1:  # SETTINGS: acknowledge
                self.transport.write(_frame(4, 1, 0))
            elif kind == 6 and not flags & 1:  # PING: answer
                self.transport.write(_frame(6, 1, 0, payload))
            elif kind in (0, 1, 3) and stream in self.calls:
                done, answer = self.calls[stream]
                if kind == 0:
                    answer += payload
                if kind == 3 or flags & 1:  # RST_STREAM, or END_STREAM on DATA or trailers
                    del self.calls[stream]
                    if not done.done():
                        done.set_result(bytes(answer[5:]) == b"\x08\x01")


class LeanPrototype(Candidate):
    name = "lean HTTP/2 prototype"

    async def open(self, addrs: list[str]) -> None:
        loop = asyncio.get_running_loop()
        self.connections: list[LeanHttp2] = []
        for addr in addrs:
            host, _, port = addr.rpartition(":")
            _, protocol = await loop.create_connection(lambda a=addr: LeanHttp2(a), host, int(port))
            self.connections.append(protocol)

    async def check(self, i: int) -> bool:
        return await self.connections[i].check()

    async def close(self) -> None:
        for connection in self.connections:
            connection.transport.close()


def _settle(done: asyncio.Future[Any], call: Any) -> None:
    if done.done():
        return
    error = call.exception()
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(call.result())


CANDIDATES: list[type[Candidate]] = [
    AioShipped, LeanShipped, AioBare, AioOneChannel, SyncFuture, SyncThreads, LeanPrototype
]  # fmt: skip


async def measure(candidate: Candidate, n: int, rate: float, duration: float) -> dict[str, float]:
    """Check the instances in turn at ``rate``; CPU s of this process per check, checks made, failed."""
    failed = 0
    made = 0
    pending: set[asyncio.Task[bool]] = set()

    def finished(task: asyncio.Task[bool]) -> None:
        nonlocal failed, made
        pending.discard(task)
        made += 1
        if task.cancelled() or task.exception() is not None or not task.result():
            failed += 1
            if failed == 1 and not task.cancelled():
                print(f"  first failure: {task.exception() or 'not passing'}", file=sys.stderr)

    for i in range(n):  # warm-up: every channel connected
        await candidate.check(i)
    cpu0, start = time.process_time(), time.monotonic()
    slot = 0
    while (now := time.monotonic()) < start + duration:
        due = int((now - start) * rate)
        while slot < due:
            task = asyncio.ensure_future(candidate.check(slot % n))
            task.add_done_callback(finished)
            pending.add(task)
            slot += 1
        await asyncio.sleep(0.005)
    if pending:
        await asyncio.wait(pending)
    wall = time.monotonic() - start
    cpu = time.process_time() - cpu0
    return {"checks": made, "rate": made / wall, "cores": cpu / wall, "us": cpu / max(made, 1) * 1e6, "failed": failed}


async def run(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kk-grpc-probes-") as tmp:
        async with start_targets(1, 0, Path(tmp) / "targets.log") as targets:
            addrs = [f"{instance_host(i)}:{targets.grpc_port}" for i in range(args.n)]
            for kind in CANDIDATES:
                candidate = kind()
                print(f"  {candidate.name}: {args.n} channels, {args.duration:g} s", file=sys.stderr, flush=True)
                await candidate.open(addrs)
                try:
                    rows.append((candidate.name, await measure(candidate, args.n, args.rate, args.duration)))
                finally:
                    await candidate.close()
    return rows


def report(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> None:
    print()
    print(
        f"gRPC health checks: {args.n} channels (a loopback host each), {args.rate:g} checks/s asked, "
        f"{args.duration:g} s per candidate, python {sys.version.split()[0]}, grpcio {grpc.__version__}"
    )
    print(f"{'candidate':<24}{'checks/s':>9}{'cores':>7}{'us/check':>10}{'failed':>8}{'x grpc.aio':>11}")
    aio = rows[0][1]["us"]
    for name, r in rows:
        print(
            f"{name:<24}{r['rate']:>9.0f}{r['cores']:>7.2f}{r['us']:>10.0f}{r['failed']:>8.0f}"
            f"{ratio_text(r['us'], aio):>11}"
        )
    print()
    for name, r in rows[1:]:
        verdict(
            f"grpc probe cost per check: {name} (no target)",
            f"{r['us']:.0f} us",
            f"{aio:.0f} us (grpc.aio)",
            ratio_text(r["us"], aio),
            None,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="channels, one per instance (default 2000)")
    parser.add_argument("--rate", type=float, default=2000.0, help="checks per second (default 2000)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per candidate (default 10)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 channels, 2 s per candidate")
    args = parser.parse_args()
    if args.quick:
        args.n, args.duration = 300, 2.0
    rows = anyio.run(run, args, backend="asyncio")
    report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
