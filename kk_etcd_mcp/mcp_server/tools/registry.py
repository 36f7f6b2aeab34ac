"""Toolset ``registry``: register services, see their health, pick a healthy instance."""

from typing import Annotated

from pydantic import Field

from ...ranges import MAX_LEASE_TTL
from ...registry import (
    CheckNow,
    CheckOptions,
    DeregisterResult,
    HubStatus,
    InstanceList,
    PickResult,
    RegisterResult,
    RegistryService,
    ServiceType,
    Status,
    Strategy,
)
from ...registry.model import MAX_WEIGHT, NAME_RULE
from ...registry.service import MIN_TTL
from ..confirm import Reviewed
from ..toolset import DryRun, ToolRegistrar

Name = Annotated[str, Field(description=f"Service name: {NAME_RULE}; e.g. 'orders'.")]
Addr = Annotated[
    str,
    Field(description="Instance address host:port, e.g. '10.0.0.5:8080', 'orders.svc:8080' or '[::1]:8080'."),
]
TypeFilter = Annotated[
    ServiceType | None, Field(description="http, grpc or tcp; leave out to match any (an error if ambiguous).")
]


def register_registry_tools(tools: ToolRegistrar, registry: RegistryService) -> None:
    @tools.query("List service instances and their health")
    async def service_list(
        name: Annotated[str | None, Field(description="Only this service.")] = None,
        type: Annotated[ServiceType | None, Field(description="Only this type.")] = None,
        status: Annotated[Status | None, Field(description="Only instances in this status.")] = None,
    ) -> InstanceList:
        """Registered instances with their health: status, output of the check, since, checked_at."""
        return await registry.list_instances(name, type, status)

    @tools.query("Alive instances of a service")
    async def service_alive(name: Name, type: TypeFilter = None) -> InstanceList:
        """Instances of a service that are passing or warning (routable)."""
        return await registry.alive_list(name, type)

    @tools.query("Health-check hubs and their shares")
    async def hub_status() -> HubStatus:
        """The hubs that check the registry: each member's owned instances, checks/s and p99 lateness over the
        last minute, and which one holds the registry-wide duties."""
        return await registry.hub_status()

    # These two reach out to the registered services themselves.
    @tools.query("Pick a healthy instance", open_world=True)
    async def service_pick(
        name: Name,
        type: TypeFilter = None,
        strategy: Annotated[Strategy, Field(description="random, round_robin or weighted (by weight).")] = "random",
    ) -> PickResult:
        """One alive instance, confirmed by a live check first; fails with 'no alive instance of <name>'."""
        return await registry.pick(name, type, strategy)

    @tools.query("Check an instance now", open_world=True)
    async def service_check(name: Name, addr: Addr, type: TypeFilter = None) -> CheckNow:
        """Check one instance now: result, latency and output (the hub's status is not changed)."""
        return await registry.check(name, addr, type)

    # A ttl over an instance that is registered already removes it when the lease expires.
    @tools.change("Register a service instance", destructive=True, idempotent=True)
    async def service_register(
        name: Name,
        addr: Addr,
        type: Annotated[ServiceType, Field(description="How the instance is checked by default.")] = "http",
        check: Annotated[
            CheckOptions | None,
            Field(description="Check settings; defaults: GET http://<addr>/KKHealthCheck (or connect), 5s/10s."),
        ] = None,
        metadata: Annotated[dict[str, str] | None, Field(description="Free-form labels, e.g. version.")] = None,
        weight: Annotated[
            int, Field(ge=1, le=MAX_WEIGHT, description="Relative share for strategy=weighted (>= 1).")
        ] = 1,
        ttl: Annotated[
            int | None,
            Field(
                ge=MIN_TTL,
                le=MAX_LEASE_TTL,
                description=(
                    "Seconds until the registration expires (default: persistent). Over an instance that is "
                    "registered already, the user is asked to confirm, since it then disappears."
                ),
            ),
        ] = None,
        dry_run: DryRun = False,
        reviewed: Reviewed[RegisterResult] | None = None,
    ) -> RegisterResult:
        """Register (or update) one instance of a service; the hub starts checking it within one interval."""
        plan = reviewed.plan if reviewed is not None else None
        return await registry.register(name, addr, type, check, metadata, weight, ttl, dry_run=dry_run, reviewed=plan)

    @tools.change("Deregister a service instance", destructive=True, idempotent=True)
    async def service_deregister(
        name: Annotated[str, Field(description="Service name, as service_list shows it.")],
        addr: Annotated[str, Field(description="Instance address host:port, as service_list shows it.")],
        type: TypeFilter = None,
        dry_run: Annotated[bool, Field(description="Only say what would be removed; remove nothing.")] = False,
    ) -> DeregisterResult:
        """Remove one instance of a service (only that instance); its checks and status go with it.
        The user is asked to confirm first; dry_run=true only shows what would be removed."""
        return await registry.deregister(name, addr, type, dry_run)
