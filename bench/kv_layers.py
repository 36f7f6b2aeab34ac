"""Where kv_get's time goes inside one process, layer by layer (no transport, no second process).

    python bench/kv_layers.py [--calls 2000] [--warmup 200] [--value text|json|yaml]
    python bench/kv_layers.py --quick       # 300 calls after 30 warm-up: a few seconds

Each row adds one layer on top of the previous one, so the difference between two rows is the cost of
that layer; the "cpu only" rows repeat the pure-Python steps without etcd. A companion to
bench/kv_latency.py: use it to see which layer a change makes cheaper. Its ``verdict:`` lines (no aim of
their own, informational): what our layers add to EtcdClient.get, and what our HTTP guards (console, auth,
metrics, limits, sessions; ``kk_etcd_mcp.mcp_server.http.guarded``) add to one POST around an ASGI app that
answers at once, each next to a no-op's MCPServer.call_tool.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_types.version import LATEST_PROTOCOL_VERSION

from kk_etcd_mcp.config_center import ConfigCenter, KeyPolicy
from kk_etcd_mcp.config_center.service import entry
from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_port
from kk_etcd_mcp.mcp_server.app import build_server, reserved_prefixes
from kk_etcd_mcp.mcp_server.http import guarded
from kk_etcd_mcp.mcp_server.identity import STDIO, acting_as
from kk_etcd_mcp.registry import RegistryKeys
from kk_etcd_mcp.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kv_latency import GET_KEY, VALUES
from noop_server import build as build_noop
from verdicts import ratio_text, verdict


def _http_post(app: Any, body: bytes) -> Callable[[], Awaitable[None]]:
    """One kv_get POST of the current protocol era, as uvicorn hands it to an ASGI app (body already in)."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"mcp-protocol-version", LATEST_PROTOCOL_VERSION.encode()),
        (b"content-length", str(len(body)).encode()),
    ]

    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def post() -> None:
        scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": headers, "client": ("127.0.0.1", 1)}
        await app(scope, receive, send)
        if statuses.pop() != 200:  # a refusal is a cheaper path: the row would not measure what it says
            raise RuntimeError("the bench's POST was refused; the HTTP rows measure a request that passes")

    return post


async def _answer_at_once(scope: Any, receive: Any, send: Any) -> None:
    """The innermost app of the HTTP rows: reads the body and answers, as mcp's endpoint would, at once."""
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _pct(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


async def _measure(call: Callable[[], Awaitable[Any]] | Callable[[], Any], calls: int, warmup: int) -> list[float]:
    is_async = None
    perf = time.perf_counter
    samples: list[float] = []
    for i in range(warmup + calls):
        t0 = perf()
        res = call()
        if is_async is None:
            is_async = hasattr(res, "__await__")
        if is_async:
            await res
        if i >= warmup:
            samples.append(perf() - t0)
    return samples


async def run(args: argparse.Namespace) -> None:
    value = VALUES[args.value]
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="kk-layers-") as tmp:
        ports = [free_port(), free_port()]
        while ports[0] == ports[1]:
            ports[1] = free_port()
        etcd = EmbeddedEtcd(Path(tmp) / "etcd", ports[0], ports[1], log_file=Path(tmp) / "etcd.log")
        await etcd.astart()
        try:
            async with EtcdClient([etcd.client_url]) as client:
                await client.put(GET_KEY, value)
                settings = Settings(endpoints=[etcd.client_url])
                reserved = reserved_prefixes(RegistryKeys(settings.registry_prefix))
                center = ConfigCenter(client, KeyPolicy(settings.allowed_prefixes, (), reserved))
                server = build_server(settings, client)
                tool = server._tool_manager.get_tool("kv_get")
                assert tool is not None
                noop = build_noop()
                kv = await client.get(GET_KEY)
                assert kv is not None
                model = entry(kv)
                key_bytes = GET_KEY.encode()
                policy = center.policy
                # The rate limiter counts, but never refuses these back-to-back calls (as in kv_latency.py).
                unlimited = settings.model_copy(update={"http_rate_limit": 1e9, "http_rate_burst": 100_000})
                call = {"name": "kv_get", "arguments": {"key": GET_KEY}}
                post_body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}).encode()

                async def tool_fn() -> Any:
                    return await tool.fn(key=GET_KEY)

                cases: list[tuple[str, Callable[[], Any]]] = [
                    ("EtcdClient.get", lambda: client.get(GET_KEY)),
                    ("+ ConfigCenter.get", lambda: center.get(GET_KEY)),
                    ("+ tool fn (translate_errors)", tool_fn),
                    ("+ MCPServer.call_tool", lambda: server.call_tool("kv_get", {"key": GET_KEY})),
                    ("noop: MCPServer.call_tool", lambda: noop.call_tool("noop", {})),
                    ("cpu only: policy.check_read", lambda: policy.check_read(key_bytes)),
                    ("cpu only: entry(kv)", lambda: entry(kv)),
                    ("cpu only: validate args", lambda: tool.fn_metadata.validate_arguments({"key": GET_KEY})),
                    ("cpu only: convert_result", lambda: tool.fn_metadata.convert_result(model)),
                    # Our HTTP guards (console, auth, metrics, limits, sessions) at their defaults, around an app
                    # that answers at once: what they add to each request, apart from mcp's HTTP transport.
                    ("cpu only: POST, bare ASGI app", _http_post(_answer_at_once, post_body)),
                    ("cpu only: POST, our HTTP guards", _http_post(guarded(_answer_at_once, unlimited), post_body)),
                ]
                async with Client(server) as c_kk, Client(noop) as c_noop:
                    cases += [
                        ("in-process Client kv_get", lambda: c_kk.call_tool("kv_get", {"key": GET_KEY})),
                        ("in-process Client noop", lambda: c_noop.call_tool("noop", {})),
                    ]
                    for name, call in cases:
                        rows.append((name, await _measure(call, args.calls, args.warmup)))
        finally:
            await etcd.astop()
    print(f"kv_get layers, in one process: {args.calls} calls after {args.warmup} warm-up, value {args.value!r}")
    print(f"{'layer':<32}{'p50 us':>10}{'p95 us':>10}")
    for name, samples in rows:
        print(f"{name:<32}{_pct(samples, 50) * 1e6:>10.1f}{_pct(samples, 95) * 1e6:>10.1f}")
    p50 = {name: _pct(samples, 50) * 1e6 for name, samples in rows}
    ours = p50["+ MCPServer.call_tool"] - p50["EtcdClient.get"]
    noop = p50["noop: MCPServer.call_tool"]
    guards = p50["cpu only: POST, our HTTP guards"] - p50["cpu only: POST, bare ASGI app"]
    print()
    verdict(
        "kv_get's layers over EtcdClient.get (in process), next to a no-op's MCPServer.call_tool",
        f"{ours:.0f} us",
        f"{noop:.0f} us",
        ratio_text(ours, noop),
        None,
    )
    verdict(
        "our HTTP guards per request (in process), next to a no-op's MCPServer.call_tool",
        f"{guards:.0f} us",
        f"{noop:.0f} us",
        ratio_text(guards, noop),
        None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--value", choices=sorted(VALUES), default="text")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 calls after 30 warm-up")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.warmup = 300, 30
    with acting_as(STDIO):  # as the stdio transport does: a server no transport named refuses every call
        anyio.run(run, args, backend="asyncio")


if __name__ == "__main__":
    main()
