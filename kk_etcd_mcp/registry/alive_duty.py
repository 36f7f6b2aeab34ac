"""The duty holder's job in sharded mode: kk_etcd_go's alive document, one key with one writer.

Each hub checks its own share, so none has every status in memory; the elected duty holder
(``<root>hub/leader``) follows every status in etcd (list, then watch) and rebuilds the document from
them and from the registrations its hub follows anyway. Its writes are fenced by its leadership.
The per-instance duties (statuses, gRPC endpoints, deregister_critical_after, layout rewrites) stay with
each instance's owner: they need no single writer, and the owner is the one that knows.
"""

from __future__ import annotations

from contextlib import aclosing

import anyio

from ..etcd import Compare, Snapshot, list_and_watch
from .hub import Hub
from .keys import InstanceKey
from .model import ALIVE_STATUSES, Status
from .status_writer import StatusWriter
from .wire import status_from_json


class AliveDuty:
    def __init__(self, hub: Hub, fence: Compare) -> None:
        self.hub = hub
        self.writer = StatusWriter(hub.store.etcd, hub.store.keys, lambda: fence, self.alive_entries)
        self._statuses: dict[InstanceKey, Status] = {}

    def alive_entries(self) -> list[tuple[InstanceKey, str]]:
        return [
            (key, entry)
            for key, status in self._statuses.items()
            if status in ALIVE_STATUSES and (entry := self.hub.alive_entry(key)) is not None
        ]

    async def run(self) -> None:
        keys = self.hub.store.keys
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.writer.run)
            self.hub.on_registrations = self.writer.touch_alive
            try:
                updates = list_and_watch(self.hub.store.etcd, keys.statuses, prefix=True)
                async with aclosing(updates):
                    async for update in updates:
                        changes: list[tuple[bytes, bytes | None]]
                        if isinstance(update, Snapshot):
                            self._statuses = {}
                            changes = [(kv.key, kv.value) for kv in update.kvs]
                        else:
                            changes = [(e.kv.key, e.kv.value if e.type == "put" else None) for e in update.events]
                        for raw_key, value in changes:
                            self._apply(keys.parse(raw_key.decode(errors="replace")), value)
                        self.writer.touch_alive()
            finally:
                self.hub.on_registrations = None

    def _apply(self, key: InstanceKey | None, value: bytes | None) -> None:
        if key is None:
            return
        status = status_from_json(value) if value is not None else None
        if status is None:
            self._statuses.pop(key, None)
        else:
            self._statuses[key] = status.status
