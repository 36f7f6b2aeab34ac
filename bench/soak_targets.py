"""Flapping HTTP health targets for bench/soak.py: one listener, many instances, each up or down at random.

    python bench/soak_targets.py --port P --instances N [--flip-rate 0.02] [--healthy 0.8] [--seed S]

A raw asyncio responder (no HTTP framework, as in bench/health_targets.py) on ``0.0.0.0:P``. Instance
``i`` is reached at its own loopback host (``instance_host(i)``, 127.20.x.y; Linux routes all of
127.0.0.0/8 to lo), so the instance a request is for is the connection's local address: no parsing
beyond the blank line that ends a request head. A healthy instance answers ``200 ok``, a down one
``500 down``; both keep the connection open (HTTP/1.1 keep-alive, as the hub uses it).

Flapping: once a second every instance flips (up <-> down) with probability ``--flip-rate``; at the
start a share ``--healthy`` is up. Commands on stdin, one JSON object per line, each answered with
one JSON line on stdout:

* ``{"cmd": "count"}``: ``flips`` so far and ``requests`` served.
* ``{"cmd": "freeze"}``: stop flapping; the answer holds ``up``, the indices of the instances up now
  (they stay so from then on).

The process prints ``{"ready": pid}`` once it listens and exits when stdin closes or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sys
from typing import Any

UP = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
DOWN = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\ndown"
END_OF_HEAD = b"\r\n\r\n"
HOST_BASE = 20  # instance hosts are 127.20.0.1, 127.20.0.2, ...


def instance_host(i: int) -> str:
    """The loopback host of instance ``i``: 250 per /24, from 127.20.0.1 on."""
    return f"127.{HOST_BASE + i // 62_500}.{(i // 250) % 250}.{i % 250 + 1}"


class Flock:
    """The instances' states, and what was served."""

    def __init__(self, instances: int, healthy: float, rng: random.Random) -> None:
        self.up = [rng.random() < healthy for _ in range(instances)]
        self.index = {instance_host(i): i for i in range(instances)}
        self.flips = 0
        self.requests = 0
        self.frozen = False

    def flap(self, rate: float, rng: random.Random) -> None:
        for i in range(len(self.up)):
            if rng.random() < rate:
                self.up[i] = not self.up[i]
                self.flips += 1


class FlappingProtocol(asyncio.Protocol):
    """Answers each request head with the instance's current status; keeps the connection open."""

    __slots__ = ("flock", "instance", "pending", "transport")

    def __init__(self, flock: Flock) -> None:
        self.flock = flock
        self.transport: asyncio.Transport | None = None
        self.instance = -1
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host = transport.get_extra_info("sockname")[0]
        self.instance = self.flock.index.get(host, -1)

    def data_received(self, data: bytes) -> None:
        data = self.pending + data if self.pending else data
        heads = data.count(END_OF_HEAD)
        if heads:
            assert self.transport is not None
            up = self.instance < 0 or self.flock.up[self.instance]  # an unknown host is a plain "up"
            self.transport.write((UP if up else DOWN) * heads)
            self.flock.requests += heads
            data = data[data.rfind(END_OF_HEAD) + len(END_OF_HEAD) :]
        self.pending = data


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    rng = random.Random(args.seed)
    flock = Flock(args.instances, args.healthy, rng)
    server = await loop.create_server(lambda: FlappingProtocol(flock), sock=listening_socket(args.port), backlog=4096)

    async def flapping() -> None:
        while not flock.frozen:
            await asyncio.sleep(1.0)
            if not flock.frozen:
                flock.flap(args.flip_rate, rng)

    async def commands() -> None:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            cmd = json.loads(line)["cmd"]
            if cmd == "freeze":
                flock.frozen = True
                _emit(done=cmd, flips=flock.flips, up=[i for i, up in enumerate(flock.up) if up])
            else:
                _emit(done=cmd, flips=flock.flips, requests=flock.requests)
        stopping.set()  # stdin closed: the benchmark is gone

    tasks = [asyncio.create_task(flapping()), asyncio.create_task(commands())]
    _emit(ready=os.getpid())
    await stopping.wait()
    for task in tasks:
        task.cancel()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instances", type=int, required=True)
    parser.add_argument("--flip-rate", type=float, default=0.02, help="flip probability per instance per second")
    parser.add_argument("--healthy", type=float, default=0.8, help="share of instances up at the start")
    parser.add_argument("--seed", type=int, default=None)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
