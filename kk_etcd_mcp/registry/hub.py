"""The hub: one check loop per registered instance, kept in step with etcd by list + watch.

List the registrations at revision R, then watch from R + 1, so nothing is missed and nothing is
started twice; after a compaction, list again and reconcile (``etcd.list_and_watch`` does all three).
An instance's registration is two keys, kk_etcd_go's and ours (``wire.py``), written in one transaction:
the watch covers both, and the instances a batch of events touched are reconciled after the whole
batch, so a half-applied pair is never seen. A registration starts a loop, or restarts it when the
check spec changed; its end stops the loop and removes its status. Each loop lives in its own cancel
scope in the hub's task group, so no loop outlives the hub or its registration.

Sharded mode (``rendezvous.py``, ``membership.py``): every hub of the group follows every registration,
but runs loops only for the instances it owns (``ownership``); when the members change, loops stop on the
hub that lost an instance and start on the one that gained it, seeded from the status in etcd (same
status, same ``since``: nothing flips because it moved). The new owner writes that status with its own
id as ``checker`` at once and again after its first check (``Monitor.claim``), so ``checked_by`` tells who
checks each instance. Its writes carry its membership fence, and its status writes its view of the group
too (``Membership.view``): a hub that hears of a newcomer late cannot overwrite what the newcomer claimed,
and once it hears, it drops the results of what moved at once. The per-instance housekeeping below is the
owner's; the alive document is the duty holder's (``alive_duty.py``). In leader mode (no ``ownership``)
the one hub owns everything.

The owning hub also keeps the layout current: a registration an older version of ours wrote at
kk_etcd_go's key is rewritten (``RegistryStore.rewrite``), and our key of an instance kk_etcd_go
deregistered is deleted (``RegistryStore.remove_leftover``).

gRPC instances also get an etcd naming endpoint (``<root>endpoints/<name>/<addr>``) while alive
(passing or warning, as in the alive document): put when they become alive, deleted when they turn
critical, are deregistered or become invalid. Each sync reconciles the endpoint keys with the monitors,
so keys a dead hub left behind go.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio
from anyio.abc import TaskGroup

from .. import metrics
from ..errors import KkEtcdError
from ..etcd import Compare, KeyValue, Snapshot, WatchEvent, list_and_watch
from .checkers import CheckResult, Prober
from .checkers.prober import close_channel
from .keys import InstanceKey
from .model import ALIVE_STATUSES, CheckSpec, HealthStatus, Registration
from .recent import RecentChecks
from .rendezvous import Ownership
from .state import HealthState
from .status_writer import Membership, StatusWriter
from .store import Pair, RegistryStore, StoredRegistration, join
from .wire import alive_entry_json, endpoint_to_json

log = logging.getLogger(__name__)

Transition = Callable[[InstanceKey, HealthStatus], None]

# After a start or a relist, first checks are spread at about these rates: each first check opens a
# connection (for gRPC a channel and an HTTP/2 handshake), and thousands at once would starve the event
# loop, and with gRPC the completion queue, that also keep the leader's lease alive (bench/README.md).
FIRST_CHECKS_PER_SECOND = {"http": 500, "tcp": 500, "grpc": 200}
PROBE_GRACE = 5.0  # seconds a check may run past its timeout before the hub gives up on it


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class HubStats:
    """Counters for benchmarks and diagnostics."""

    checks: int = 0
    lateness: list[float] = field(default_factory=list)  # seconds each check started after its slot
    keep_lateness: bool = False
    recent: RecentChecks = field(default_factory=RecentChecks)  # the last minute, for hub_status


@dataclass
class Monitor:
    key: InstanceKey
    registration: Registration
    registered_by: KeyValue  # the key that makes it registered, as last seen (StoredRegistration.kv)
    state: HealthState
    alive_entry: str | None = field(default=None, repr=False)  # in the alive document (made once); None: not
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    checked_at: datetime | None = None
    latest_output: str = ""
    # Taken over from another hub: the first check writes the status again, naming this hub, since a write
    # the last owner still had queued or in flight may land after the hand-over's.
    claim: bool = False


class Hub:
    def __init__(
        self,
        store: RegistryStore,
        prober: Prober,
        fence: Callable[[], Compare],
        hub_id: str,
        *,
        on_transition: Transition | None = None,
        ownership: Ownership | None = None,
        membership: Membership | None = None,
    ) -> None:
        """``fence``: the compare that holds while this hub leads (leader mode) or is a member of the hub
        group (sharded mode); every write of the hub carries it. ``ownership``: sharded mode, where this
        hub checks only the instances it owns, and the alive document is not its job; ``membership``
        (sharded mode) adds the hub's view of the group to its status writes (``Membership.view``)."""
        self.store = store
        self.prober = prober
        sharded = ownership is not None
        alive = None if sharded else self.alive_entries
        lost = "this hub is no member of the hub group any more" if sharded else "another hub leads now"
        self.writer = StatusWriter(
            store.etcd, store.keys, fence, alive, lost=lost, membership=membership, owns=self.owns
        )
        self.hub_id = hub_id
        self.on_transition = on_transition
        self.ownership = ownership
        self.on_registrations: Callable[[], None] | None = None  # called after registrations changed
        self.monitors: dict[InstanceKey, Monitor] = {}
        self._pairs: dict[InstanceKey, Pair] = {}  # both registration keys of each instance, as last seen
        # alive_entry()'s cache: (mod revisions of the pair, the entry). Only the duty holder asks for the
        # instances it does not own, so the other hubs never parse registrations that are not theirs.
        self._alive_cache: dict[InstanceKey, tuple[tuple[int, int], str | None]] = {}
        self.stats = HubStats()
        self._metrics = metrics.CheckMetrics()
        self._tg: TaskGroup | None = None
        self._rebalance = anyio.Event()

    def owns(self, key: InstanceKey) -> bool:
        return self.ownership is None or self.ownership.owner(key.path) == self.hub_id

    def alive_entry(self, key: InstanceKey) -> str | None:
        """The registration of ``key`` as it goes in the alive document; None when it has no place there."""
        pair = self._pairs.get(key)
        if pair is None:
            return None
        revisions = (pair[0].mod_revision if pair[0] else 0, pair[1].mod_revision if pair[1] else 0)
        cached = self._alive_cache.get(key)
        if cached is not None and cached[0] == revisions:
            return cached[1]
        item = join(key, *pair)
        entry = alive_entry_json(item.registration) if item is not None and item.registration is not None else None
        self._alive_cache[key] = (revisions, entry)
        return entry

    def set_members(self, weights: dict[str, float]) -> None:
        """The hub group changed (sharded mode): hand over the instances that moved."""
        assert self.ownership is not None
        moved = self.ownership.set_members(weights)
        if moved:  # (before the first listing is done too: it may have started loops by the older members)
            log.info("hub %s: %d members; %d instances move", self.hub_id, len(weights), len(moved))
            self._rebalance.set()  # (the writer drops what waits for the instances that moved: StatusWriter.owns)

    def shortest_interval(self) -> float | None:
        return min((m.registration.check.interval for m in self.monitors.values()), default=None)

    def alive_entries(self) -> list[tuple[InstanceKey, str]]:
        return [
            (m.key, m.alive_entry)
            for m in self.monitors.values()
            if m.alive_entry is not None and m.state.status in ALIVE_STATUSES
        ]

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check until cancelled (or until the writer finds another hub leading)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self.writer.run)
            start, end = self.store.keys.registration_range
            started = False
            updates = list_and_watch(self.store.etcd, start, end)
            async with aclosing(updates):
                async for update in updates:
                    if isinstance(update, Snapshot):
                        if update.relisted:
                            log.info("hub %s: listing registrations again", self.hub_id)
                        await self._sync(update)
                        if not started and self.ownership is not None:
                            tg.start_soon(self._rebalance_loop)  # after the first listing, never during it
                        if not started:
                            task_status.started()
                            started = True
                        continue
                    for key in {key for event in update.events if (key := self._record_event(event))}:
                        self._reconcile(key)
                    self._registrations_changed()

    def _registrations_changed(self) -> None:
        metrics.OWNED_INSTANCES.set(len(self.monitors))
        if self.on_registrations is not None:
            self.on_registrations()

    # Reconciling ----------------------------------------------------------------------------------

    async def _sync(self, registrations: Snapshot) -> None:
        """Start, restart or stop loops to match ``registrations`` (both registration keys of every instance)."""
        revision = registrations.revision
        self._pairs = self.store.pairs_of(registrations.kvs)
        self._alive_cache = {}
        if self.ownership is not None:
            paths = {key.path for key in self._pairs}
            for path in [path for path in self.ownership.instances() if path not in paths]:
                self.ownership.discard(path)
            for path in paths:
                self.ownership.add(path)
        # only this hub's instances are parsed: the others are another hub's business
        mine = {key: pair for key, pair in self._pairs.items() if self.owns(key)}
        stored = [item for key, pair in mine.items() if (item := join(key, *pair)) is not None]
        for key, pair in mine.items():
            self._remove_if_leftover(key, pair)
        statuses = await self.store.statuses(revision=revision)
        seen = {item.key for item in stored}
        spread = sum(1 / FIRST_CHECKS_PER_SECOND[item.key.type] for item in stored)  # seconds
        for item in stored:
            self._apply(item, statuses.get(item.key), spread=spread)
        for key in list(self.monitors):
            if key not in seen:
                self._stop(key, gone=key not in self._pairs)
        for key in statuses.keys() - seen:  # left behind while no hub ran (this hub's to remove)
            if self.owns(key):
                self.writer.set(key, None, alive_changed=False)
        self.writer.touch_alive()  # a new term or a relist: the document may be stale or missing
        await self._reconcile_endpoints()
        await self.prober.retain({key.path for key in self.monitors})  # channels outlive terms; drop the rest
        self._registrations_changed()
        log.info(
            "hub %s checks %d of %d instances (registrations at revision %d)",
            self.hub_id, len(self.monitors), len(self._pairs), revision,
        )  # fmt: skip

    async def _rebalance_loop(self) -> None:
        """Sharded mode: after each change of the members, stop what this hub no longer owns and start
        what it gained, from the statuses in etcd (read after the change, so the last owner's are there
        unless still in flight: then this hub's own first checks set them right)."""
        while True:
            await self._rebalance.wait()
            self._rebalance = anyio.Event()
            for key in [key for key in self.monitors if not self.owns(key)]:
                self._stop(key, gone=False)
                channel = self.prober.detach(key.path)
                if channel is not None:
                    await close_channel(channel)
            gained = [key for key in self._pairs if self.owns(key) and key not in self.monitors]
            if gained:
                statuses = await self.store.statuses()
                stored = [item for key in gained if (item := join(key, *self._pairs[key])) is not None]
                spread = sum(1 / FIRST_CHECKS_PER_SECOND[item.key.type] for item in stored)
                for item in stored:
                    if item.key in self._pairs and self.owns(item.key) and item.key not in self.monitors:
                        self._apply(item, statuses.get(item.key), spread=spread)
                for key in statuses.keys() - self.monitors.keys():  # deregistered while its owner was away
                    pair = self._pairs.get(key)
                    if self.owns(key) and (pair is None or join(key, *pair) is None):
                        self.writer.set(key, None, alive_changed=False)
                await self._reconcile_endpoints()
            self._registrations_changed()
            log.info("hub %s checks %d instances", self.hub_id, len(self.monitors))

    async def _reconcile_endpoints(self) -> None:
        """Make the endpoint keys match the monitors: put the missing or outdated, delete the rest.

        Read after the monitors are set up. A write of this hub may still land after the read: it was
        queued from an older state, and any change since queued a newer write, which lands after it.
        """
        found = await self.store.endpoints()
        wanted = {key: document for key, m in self.monitors.items() if (document := _endpoint_document(m))}
        for key, document in wanted.items():
            if found.get(key) != document.encode():
                self.writer.set_endpoint(key, document)
        for key in found.keys() - wanted.keys():
            if self.owns(key):
                self.writer.set_endpoint(key, None)

    def _record_event(self, event: WatchEvent) -> InstanceKey | None:
        """Note a change of one of an instance's registration keys; the instance it touched."""
        parsed = self.store.keys.parse_registration(event.kv.key.decode(errors="replace"))
        if parsed is None:
            return None
        which, key = parsed
        kv = event.kv if event.type == "put" else None
        if self.ownership is not None and key not in self._pairs:
            self.ownership.add(key.path)
        base, extension = self._pairs.get(key, (None, None))
        self._pairs[key] = (kv, extension) if which == "registration" else (base, kv)
        return key

    def _reconcile(self, key: InstanceKey) -> None:
        """Bring an instance's loop in line with its registration keys as last seen."""
        pair = self._pairs.get(key, (None, None))
        owned = self.owns(key)
        item = join(key, *pair) if owned else None  # another hub's instance is not even parsed here
        if item is not None:
            self._apply(item, None, spread=None)
            return
        if pair == (None, None):
            del self._pairs[key]
            self._alive_cache.pop(key, None)
            if self.ownership is not None:
                self.ownership.discard(key.path)
        if owned:
            self._remove_if_leftover(key, pair)
            self._stop(key, gone=True)
            self.writer.set(key, None)
        elif key in self.monitors:  # it moved meanwhile (the rebalance closes its channel)
            self._stop(key, gone=False)

    def _remove_if_leftover(self, key: InstanceKey, pair: Pair) -> None:
        base, extension = pair
        if not self.owns(key):
            return
        if base is None and extension is not None and join(key, base, extension) is None:
            self._in_background(self.store.remove_leftover(extension, self.writer.fence()), f"remove {key.path}")

    def _in_background(self, write: Awaitable[bool], what: str) -> None:
        """A rare housekeeping write of the leader; failing, it is tried again at the next sync or change."""

        async def run() -> None:
            try:
                await write
            except KkEtcdError as error:
                log.warning("cannot %s yet: %s", what, error)

        assert self._tg is not None
        self._tg.start_soon(run, name=what)

    def _apply(self, item: StoredRegistration, stored: HealthStatus | None, *, spread: float | None) -> None:
        """Start, restart or update the loop of one registration; ``spread``: stagger its first check."""
        current = self.monitors.get(item.key)
        reg = item.registration
        if reg is None:
            self._stop(item.key, gone=True)
            self._report_invalid(item, stored)
            return
        if item.outdated:
            self._in_background(self.store.rewrite(item, self.writer.fence()), f"rewrite {item.key.path}")
        if current is not None and current.registration.check == reg.check:
            # metadata or weight: the loop goes on (neither is in the alive document or the endpoint)
            current.registration, current.registered_by = reg, item.kv
            return
        previous = current.state if current is not None else None
        self._stop(item.key, gone=False)
        first_delay = random.uniform(0, max(reg.check.interval, spread)) if spread is not None else 0.0
        monitor = self._start(item.key, reg, item.kv, _seed(reg, previous, stored), first_delay)
        if self.ownership is not None and previous is None and stored is not None and stored.checker != self.hub_id:
            # taken over: the same status, now saying who checks it (checked_by)
            self.writer.set(item.key, stored.model_copy(update={"checker": self.hub_id}), alive_changed=False)
            monitor.claim = True

    def _publish_endpoint(self, monitor: Monitor) -> None:
        """Queue a gRPC instance's endpoint as its status says: there while alive, gone otherwise."""
        if monitor.key.type == "grpc":
            self.writer.set_endpoint(monitor.key, _endpoint_document(monitor))

    def _report_invalid(self, item: StoredRegistration, stored: HealthStatus | None) -> None:
        output = item.problem or "invalid registration"
        if stored is not None and stored.status == "critical" and stored.output == output:
            return
        now = utcnow()
        status = HealthStatus(status="critical", output=output, since=now, checked_at=now, checker=self.hub_id)
        log.warning("%s: %s", item.key.path, output)
        self.writer.set(item.key, status)

    # Check loops ----------------------------------------------------------------------------------

    def _start(
        self, key: InstanceKey, reg: Registration, registered_by: KeyValue, state: HealthState, first_delay: float
    ) -> Monitor:
        assert self._tg is not None
        monitor = Monitor(key, reg, registered_by, state, alive_entry=alive_entry_json(reg))
        self.monitors[key] = monitor
        self._tg.start_soon(self._check_loop, monitor, first_delay, name=f"check {key.path}")
        return monitor

    def _stop(self, key: InstanceKey, *, gone: bool) -> None:
        """Stop the instance's loop; when its registration is ``gone``, close its gRPC channel and
        delete its endpoint too.

        A restarted loop keeps the channel (the prober replaces it if the target changed), and so does
        a new term: the channels outlive the hub, which is what makes a takeover cheap.
        """
        monitor = self.monitors.pop(key, None)
        if monitor is not None:
            monitor.scope.cancel()
        if gone and key.type == "grpc":
            self.writer.set_endpoint(key, None)
        channel = self.prober.detach(key.path) if gone else None
        if channel is not None and self._tg is not None:
            self._tg.start_soon(close_channel, channel)

    async def _check_loop(self, monitor: Monitor, first_delay: float) -> None:
        spec = monitor.registration.check
        # The loop's clock and sleep straight from asyncio (the hub runs on it, as its probes do): anyio's
        # look up the backend on every call, and this loop runs thousands of times a second.
        clock = asyncio.get_running_loop().time
        with monitor.scope:
            slot = clock() + first_delay
            while True:
                await asyncio.sleep(slot - clock())
                started = clock()
                self._count(started - slot)
                result = await self._probe(monitor, spec)
                self._metrics.check(spec.type, result.status, result.latency)
                await self._record(monitor, result)
                slot += spec.interval
                if slot < clock():  # fell behind: skip the missed slots, do not burst
                    slot = started + spec.interval

    async def _probe(self, monitor: Monitor, spec: CheckSpec) -> CheckResult:
        """One check, within an outer deadline: the probes bound themselves by ``spec.timeout``, so one
        still running ``PROBE_GRACE`` seconds later has a bug, and must not stall the instance's loop."""
        deadline = spec.timeout + PROBE_GRACE
        try:
            async with asyncio.timeout(deadline):
                return await self.prober.check(monitor.key.path, spec)
        except TimeoutError:
            pass  # the probes never raise it: only this deadline does
        what = "check of %s did not end within %gs (its timeout is %gs): a bug in the probe"
        log.error(what, monitor.key.path, deadline, spec.timeout)
        output = f"check did not end within {deadline:g}s: the probe hung (a bug; see the server log)"
        return CheckResult("critical", output, deadline)

    def _count(self, lateness: float) -> None:
        self.stats.checks += 1
        self.stats.recent.add(lateness)
        metrics.CHECK_LATENESS.observe(lateness)
        if self.stats.keep_lateness:
            self.stats.lateness.append(lateness)

    async def _record(self, monitor: Monitor, result: CheckResult) -> None:
        if not self.owns(monitor.key):
            return  # it moved to another hub a moment ago; its loop stops soon, and its result is not ours
        now = utcnow()
        monitor.checked_at, monitor.latest_output = now, result.output
        state = monitor.state
        before = state.status
        if state.observe(result.status, result.output, now):
            metrics.TRANSITIONS.labels(before, state.status).inc()
            assert state.since is not None
            status = HealthStatus(
                status=state.status, output=state.output, since=state.since, checked_at=now, checker=self.hub_id
            )
            log.info("%s is %s: %s", monitor.key.path, status.status, status.output[:200])
            self.writer.set(monitor.key, status)
            self._publish_endpoint(monitor)
            if self.on_transition is not None:
                self.on_transition(monitor.key, status)
        elif monitor.claim and state.since is not None:
            claimed = HealthStatus(
                status=state.status, output=state.output, since=state.since, checked_at=now, checker=self.hub_id
            )
            self.writer.set(monitor.key, claimed, alive_changed=False)
        monitor.claim = False
        limit = monitor.registration.check.deregister_critical_after
        if limit is not None and state.critical_for(now) >= limit:
            await self._deregister(monitor, limit)

    async def _deregister(self, monitor: Monitor, limit: float) -> None:
        """Delete a registration critical for too long, unless it was re-registered meanwhile."""
        registered = monitor.registered_by
        log.warning("%s critical for %gs or more: deregistering it", monitor.key.path, limit)
        try:
            await self.store.etcd.txn(
                [self.writer.fence(), Compare(registered.key, "mod", "==", registered.mod_revision)],
                self.store.delete_ops(monitor.key),
            )
        except KkEtcdError as error:  # tried again after the next check
            log.warning("cannot deregister %s yet: %s", monitor.key.path, error)


def _endpoint_document(monitor: Monitor) -> str | None:
    """The endpoint JSON a gRPC instance should have now; None when it should have none."""
    if monitor.key.type != "grpc" or monitor.state.status not in ALIVE_STATUSES:
        return None
    return endpoint_to_json(monitor.registration.addr)


def _seed(reg: Registration, previous: HealthState | None, stored: HealthStatus | None) -> HealthState:
    """Carry the known status over, so a restart or a new leader does not flap every instance."""
    state = HealthState(reg.check.success_before_passing, reg.check.failures_before_critical)
    if previous is not None:
        state.status, state.since, state.output = previous.status, previous.since, previous.output
    elif stored is not None:
        state.status, state.since, state.output = stored.status, stored.since, stored.output
    return state
