"""Toolset ``registry``: register services, see their health, pick a healthy instance."""

from typing import Annotated

from mcp.server.mcpserver.resolve import Resolve
from pydantic import Field

from ...registry import (
    CheckNow,
    CheckOptions,
    DeregisterResult,
    InstanceList,
    PickResult,
    RegisterResult,
    RegistryService,
    ServiceType,
    Status,
    Strategy,
)
from ..confirm import Answer, Preview
from ..toolset import ToolRegistrar

Name = Annotated[str, Field(description="Service name (no '/' or whitespace), e.g. 'orders'.")]
Addr = Annotated[str, Field(description="Instance address host:port, e.g. '10.0.0.5:8080'.")]
TypeFilter = Annotated[
    ServiceType | None, Field(description="http, grpc or tcp; leave out to match any (an error if ambiguous).")
]


def register_registry_tools(tools: ToolRegistrar, registry: RegistryService) -> None:
    confirm = tools.confirm

    async def service_register(
        name: Name,
        addr: Addr,
        type: Annotated[ServiceType, Field(description="How the instance is checked by default.")] = "http",
        check: Annotated[
            CheckOptions | None,
            Field(description="Check settings; defaults: GET http://<addr>/KKHealthCheck (or connect), 5s/10s."),
        ] = None,
        metadata: Annotated[dict[str, str] | None, Field(description="Free-form labels, e.g. version.")] = None,
        weight: Annotated[int, Field(description="Relative share for strategy=weighted (>= 1).")] = 1,
        ttl: Annotated[
            int | None, Field(description="Seconds until the registration expires (default: persistent).")
        ] = None,
    ) -> RegisterResult:
        """Register (or update) one instance of a service; the hub starts checking it within one interval."""
        return await registry.register(name, addr, type, check, metadata, weight, ttl)

    async def deregister_plan(name: str, addr: str, type: ServiceType | None) -> Preview[DeregisterResult]:
        return await confirm.preview(
            "service_deregister", lambda: registry.deregister(name, addr, type, dry_run=True), lambda _: True
        )

    async def service_deregister(
        name: Name,
        addr: Addr,
        type: TypeFilter = None,
        dry_run: Annotated[bool, Field(description="Only say what would be removed; remove nothing.")] = False,
        *,
        plan: Annotated[Preview[DeregisterResult], Resolve(deregister_plan)],
        confirmation: Annotated[Answer, Resolve(confirm.resolver("service_deregister", deregister_plan))],
    ) -> DeregisterResult:
        """Remove one instance of a service (only that instance); its checks and status go with it.
        The user is asked to confirm first; dry_run=true only shows what would be removed."""
        planned = plan.value()
        if dry_run:
            return planned
        await confirm.require("service_deregister", confirmation, plan, lambda: deregister_plan(name, addr, type))
        return await registry.deregister(name, addr, type)

    async def service_list(
        name: Annotated[str | None, Field(description="Only this service.")] = None,
        type: Annotated[ServiceType | None, Field(description="Only this type.")] = None,
        status: Annotated[Status | None, Field(description="Only instances in this status.")] = None,
    ) -> InstanceList:
        """Registered instances with their health: status, output of the check, since, checked_at."""
        return await registry.list_instances(name, type, status)

    async def service_alive(name: Name, type: TypeFilter = None) -> InstanceList:
        """Instances of a service that are passing or warning (routable)."""
        return await registry.alive_list(name, type)

    async def service_pick(
        name: Name,
        type: TypeFilter = None,
        strategy: Annotated[Strategy, Field(description="random, round_robin or weighted (by weight).")] = "random",
    ) -> PickResult:
        """One alive instance, confirmed by a live check first; fails with 'no alive instance of <name>'."""
        return await registry.pick(name, type, strategy)

    async def service_check(name: Name, addr: Addr, type: TypeFilter = None) -> CheckNow:
        """Check one instance now: result, latency and output (the hub's status is not changed)."""
        return await registry.check(name, addr, type)

    tools.add(service_list, title="List service instances and their health", read_only=True)
    tools.add(service_alive, title="Alive instances of a service", read_only=True)
    # These two reach out to the registered services themselves.
    tools.add(service_pick, title="Pick a healthy instance", read_only=True, open_world=True)
    tools.add(service_check, title="Check an instance now", read_only=True, open_world=True)
    tools.add(service_register, title="Register a service instance", read_only=False, idempotent=True)
    tools.add(
        service_deregister, title="Deregister a service instance", read_only=False, destructive=True, idempotent=True
    )
