"""Helpers for the hub tests: run a HubRunner in the test's task group, read statuses, poll."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from polling import WITHIN, eventually

from kk_etcd_mcp.etcd import EtcdClient, KeyValue, prefix_end
from kk_etcd_mcp.registry import CheckOptions, HubRunner, InstanceKey, RegistryKeys
from kk_etcd_mcp.registry.hub import Hub, Monitor
from kk_etcd_mcp.registry.model import HealthStatus, ServiceType
from kk_etcd_mcp.registry.service import build_registration
from kk_etcd_mcp.registry.store import RegistryStore
from kk_etcd_mcp.registry.wire import status_from_json

# The fastest check allowed: timeout 1 s, interval 1 s.
FAST: dict[str, Any] = {"timeout": 1, "interval": 1}


def registry_keys(key_prefix: str) -> RegistryKeys:
    """A registry root of this test alone: its hubs never share a leader key with another test's."""
    return RegistryKeys(f"{key_prefix}kk_service/")


@asynccontextmanager
async def running_hubs(etcd: EtcdClient, keys: RegistryKeys, count: int = 1, **kwargs: Any) -> AsyncIterator[
    list[HubRunner]
]:  # fmt: skip
    """``count`` HubRunners campaigning on ``keys``, each in its own cancel scope (``scopes[i]``)."""
    runners = [HubRunner(etcd, keys, hub_id=f"hub-{i}", **kwargs) for i in range(count)]
    async with anyio.create_task_group() as tg:
        for runner in runners:
            await tg.start(_run_in_scope, runner)
        yield runners
        tg.cancel_scope.cancel()


async def _run_in_scope(runner: HubRunner, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    with anyio.CancelScope() as scope:
        runner.scope = scope  # type: ignore[attr-defined]  # lets a test stop one runner
        await runner.run(task_status=task_status)


@asynccontextmanager
async def running_hub(etcd: EtcdClient, keys: RegistryKeys, **kwargs: Any) -> AsyncIterator[HubRunner]:
    """One HubRunner, yielded once it leads."""
    async with running_hubs(etcd, keys, 1, **kwargs) as (runner,):
        await eventually(lambda: runner.hub is not None, "the only hub leads")
        yield runner


@asynccontextmanager
async def hub_at(etcd_endpoint: str, root: str) -> AsyncIterator[HubRunner]:
    """A leading hub for the registry root ``root``, on its own client; its lease is revoked on exit."""
    async with EtcdClient([etcd_endpoint]) as etcd, running_hub(etcd, RegistryKeys(root), lease_ttl=3) as runner:
        yield runner


def active_hub(runner: HubRunner) -> Hub:
    assert runner.hub is not None, f"{runner.hub_id} does not lead"
    return runner.hub


def monitor_of(runner: HubRunner, key: InstanceKey) -> Monitor | None:
    return runner.hub.monitors.get(key) if runner.hub is not None else None


async def register(
    etcd: EtcdClient, keys: RegistryKeys, name: str, addr: str, kind: ServiceType = "http",
    metadata: dict[str, str] | None = None, **check: Any,
) -> InstanceKey:  # fmt: skip
    """Register through the store (what the tools and the SDK call); the check defaults to FAST."""
    registration = build_registration(name, addr, kind, CheckOptions(**(FAST | check)), metadata, 1)
    await RegistryStore(etcd, keys).put(registration)
    return InstanceKey(kind, name, addr)


async def status_kv(etcd: EtcdClient, keys: RegistryKeys, key: InstanceKey) -> KeyValue | None:
    return await etcd.get(keys.status(key))


async def status_of(etcd: EtcdClient, keys: RegistryKeys, key: InstanceKey) -> HealthStatus | None:
    kv = await status_kv(etcd, keys, key)
    return status_from_json(kv.value) if kv is not None else None


async def wait_status(
    etcd: EtcdClient, keys: RegistryKeys, key: InstanceKey, status: str, within: float = WITHIN
) -> HealthStatus:
    """Wait until etcd holds ``status`` for ``key`` (what every other process sees)."""

    async def reached() -> HealthStatus | None:
        found = await status_of(etcd, keys, key)
        return found if found is not None and found.status == status else None

    result: HealthStatus = await eventually(reached, f"{key.path} is {status} in etcd", within)
    return result


async def leader_keys(etcd: EtcdClient, keys: RegistryKeys) -> list[KeyValue]:
    prefix = keys.leader + "/"
    return (await etcd.range(prefix, prefix_end(prefix))).kvs
