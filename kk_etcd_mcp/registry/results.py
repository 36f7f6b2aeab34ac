"""What registry operations return: the models tools and SDK callers see."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..change import Change
from .membership import MemberInfo
from .model import CheckSpec, Instance, ServiceType, Status


class RegisterResult(Change):
    type: ServiceType
    name: str
    addr: str
    key: str = Field(description="The registration's etcd key.")
    revision: int = Field(description="Revision of the write (with dry_run: the revision read).")
    created: bool = Field(description="False when it replaced an existing registration of this instance.")
    previous_mod_revision: int | None = Field(
        default=None, description="mod_revision of the registration it replaced (null: it was new)."
    )
    lease: int = Field(
        description="Lease the registration expires with (0: persistent until deregistered; with dry_run: 0)."
    )
    check: CheckSpec


class DeregisterResult(Change):
    type: ServiceType
    name: str
    addr: str
    revision: int = Field(description="Revision after the delete (with dry_run: the revision read).")
    key: str = Field(default="", description="The registration's etcd key.")


class InstanceList(BaseModel):
    instances: list[Instance]
    count: int
    hub: str | None = Field(default=None, description="The hub that leads the checking, if any.")


class HubMember(MemberInfo):
    duty_holder: bool = Field(description="Whether it holds the registry-wide duties (the alive document).")


class HubStatus(BaseModel):
    mode: str = Field(
        description="sharded: the members share the checking; leader: one elected hub checks; none: no hub runs."
    )
    members: list[HubMember] = Field(description="Live hubs (sharded mode), with their figures of the last minute.")
    count: int
    duty_holder: str | None = Field(description="The elected hub: registry-wide duties (leader mode: all checking).")
    instances: int = Field(description="Registered instances, which the members share.")


class CheckNow(BaseModel):
    type: ServiceType
    name: str
    addr: str
    result: Status = Field(description="What this check found (no thresholds applied).")
    latency_ms: float
    output: str
    status: Status = Field(description="The instance's status as the hub keeps it.")


class PickResult(BaseModel):
    instance: Instance
    check: CheckNow = Field(description="The live check that confirmed it.")
    skipped: list[str] = Field(default_factory=list, description="Alive instances that failed the live check.")
