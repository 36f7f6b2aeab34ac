"""The hub's latest view of an instance's health, read-only, for whoever shows statuses.

``RegistryService`` shows what etcd holds, and, where this process leads the checking, the hub's own
latest results instead (a status write to etcd may lag behind them). It sees the hub only through
``LiveStatus``, so it does not depend on how the hub keeps its monitors; ``HubLiveStatus`` is that view
of a ``HubRunner``, wired in by the composition root (``app/runner.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .keys import InstanceKey
from .leadership import HubRunner
from .model import Status


@dataclass(frozen=True)
class LiveState:
    """An instance's status as the hub last decided it, and when it last checked the instance."""

    status: Status
    output: str
    since: datetime | None
    checked_at: datetime
    checked_by: str


class LiveStatus(Protocol):
    def leads(self) -> bool:
        """Whether this process checks instances now (only then is there a live view)."""

    def get(self, key: InstanceKey) -> LiveState | None:
        """The instance's live state; None when it is not checked here or not checked yet."""


class HubLiveStatus:
    """``LiveStatus`` of the hub a ``HubRunner`` runs while this process checks (its share, or all while it leads)."""

    def __init__(self, runner: HubRunner) -> None:
        self._runner = runner

    def leads(self) -> bool:
        return self._runner.hub is not None

    def get(self, key: InstanceKey) -> LiveState | None:
        hub = self._runner.hub
        if hub is None:
            return None
        monitor = hub.monitors.get(key)
        if monitor is None or monitor.checked_at is None:
            return None
        state = monitor.state
        return LiveState(
            status=state.status,
            output=state.output,
            since=state.since,
            checked_at=monitor.checked_at,
            checked_by=hub.hub_id,
        )
