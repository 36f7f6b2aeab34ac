"""ConfigCenter: read, write, version and move configuration values in etcd, within the key policy."""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ..change import named
from ..errors import (
    CompactedError,
    ConflictError,
    InvalidArgumentError,
    KkEtcdError,
    NotFoundError,
    PermissionDeniedError,
    RevisionConflictError,
)
from ..etcd import Compare, Delete, EtcdClient, Get, KeyValue, Put, PutResult
from ..ranges import MAX_INT64, MAX_LEASE_TTL, check_range
from . import transfer
from .formats import Encoding, ValueFormat, decode_value, encode_value, utf8
from .keys import KeyPolicy, Range, show
from .limits import DEFAULT_MAX_VALUE_BYTES, check_value_size
from .models import (
    ExportDocument,
    ImportMode,
    ImportResult,
    KvDeleteResult,
    KvEntry,
    KvHistoryResult,
    KvListItem,
    KvListResult,
    KvPutResult,
    KvRollbackResult,
    KvVersion,
)
from .workers import ValueWorkers

MAX_LIST_LIMIT = 1000
MAX_HISTORY_LIMIT = 100
MAX_KEYS_LISTED = 100  # keys a delete result lists
KEYS_IN_CHANGE = 20  # keys its `change` text names

Progress = Callable[[int, int], Awaitable[None]]


def _key(key: str) -> bytes:
    if not key:
        raise InvalidArgumentError("key must not be empty")
    return utf8(key, "the key")


def _range_end(end: bytes | None) -> bytes:
    return b"\0" if end is None else end  # etcd's "to the last key"


def entry(kv: KeyValue) -> KvEntry:
    decoded = decode_value(kv.value)
    return KvEntry(
        key=show(kv.key),
        value=decoded.value,
        format=decoded.format,
        encoding=decoded.encoding,
        data=decoded.data,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        lease=kv.lease,
        note=decoded.note,
    )


def _text(raw: bytes) -> tuple[str, Encoding]:
    """(value, encoding) without recognising a format: cheap enough for listings."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


class ConfigCenter:
    def __init__(self, etcd: EtcdClient, policy: KeyPolicy, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> None:
        self.etcd = etcd
        self.policy = policy
        self.max_value_bytes = max_value_bytes
        self.workers = ValueWorkers()  # big values are parsed and rendered off the event loop

    async def get(self, key: str, revision: int = 0) -> KvEntry:
        k = _key(key)
        self.policy.check_read(k)
        check_range("revision", revision, 0, MAX_INT64, " (0 = latest)")
        kv = await self.etcd.get(k, revision=revision)
        if kv is None:
            at = f" at revision {revision}" if revision else ""
            raise NotFoundError(f"key not found: {key}{at}. kv_list shows the keys that exist.")
        return await self.workers.run(len(kv.value), entry, kv)

    async def put(
        self,
        key: str,
        value: str | dict[str, Any] | list[Any],
        fmt: ValueFormat = "text",
        expected_revision: int | None = None,
        lease_ttl: int | None = None,
        *,
        dry_run: bool = False,
        reviewed: KvPutResult | None = None,
    ) -> KvPutResult:
        """Write a value; ``dry_run`` checks everything and says what it would change.

        With ``lease_ttl`` the key is deleted when its lease expires, which removes a key that exists.
        ``reviewed``: the dry run the caller was shown; a write with a lease then goes ahead only while
        the key is still as that dry run saw it (unless ``expected_revision`` says otherwise).
        """
        k = _key(key)
        self.policy.check_write(k)  # before the lease: a lease is a write too (it deletes when it expires)
        size = len(value) if isinstance(value, str) else None
        data = await self.workers.run(size, encode_value, value, fmt)  # invalid json/yaml stops here
        check_value_size(key, len(data), self.max_value_bytes)
        if expected_revision is not None:
            check_range("expected_revision", expected_revision, 0, MAX_INT64, " (0 = the key must be absent)")
        if lease_ttl is not None:
            check_range("lease_ttl", lease_ttl, 1, MAX_LEASE_TTL, " seconds")
        if dry_run:
            try:
                page = await self.etcd.range(k, keys_only=True)
            except PermissionDeniedError:
                if expected_revision is not None:
                    raise
                return _unread_put_result(key, lease_ttl)  # a user who may write but not read the key
            current = page.kvs[0] if page.kvs else None
            found = current.mod_revision if current else 0
            if expected_revision is not None and found != expected_revision:
                raise RevisionConflictError(key, expected_revision, found)
            return _put_result(key, current, page.revision, 0, lease_ttl).model_copy(update={"dry_run": True})
        guard, guarded_by_review = expected_revision, False
        if guard is None and lease_ttl is not None and reviewed is not None and reviewed.revision:  # it read the key
            guard, guarded_by_review = reviewed.previous_mod_revision or 0, True
        lease = await self.etcd.lease_grant(lease_ttl) if lease_ttl else 0
        try:
            if guard is None:
                result = await self.etcd.put(k, data, lease=lease, prev_kv=True)
                prev, revision = result.prev, result.revision
            else:
                prev, revision = await self._put_if(k, data, lease, guard, guarded_by_review)
        except BaseException:
            if lease:  # nothing was written under it; if the revoke fails too, the lease expires by itself
                with anyio.CancelScope(shield=True), contextlib.suppress(KkEtcdError):
                    await self.etcd.lease_revoke(lease)
            raise
        return _put_result(key, prev, revision, lease, lease_ttl)

    async def _put_if(
        self, k: bytes, data: bytes, lease: int, expected: int, guarded_by_review: bool
    ) -> tuple[KeyValue | None, int]:
        res = await self.etcd.txn(
            [Compare(k, "mod", "==", expected)], [Put(k, data, lease=lease, prev_kv=True)], [Get(k)]
        )
        if not res.succeeded:
            found = _mod_revision(res.results[0])
            if guarded_by_review:
                raise ConflictError(
                    f"{show(k)} changed after kv_put previewed it (mod_revision {expected} then, {found} now); "
                    "nothing was written. Call kv_put again to see (and confirm) what it would change now."
                )
            raise RevisionConflictError(show(k), expected, found)
        put = res.results[0]
        assert isinstance(put, PutResult)
        return put.prev, res.revision

    async def list(
        self,
        prefix: str,
        limit: int = 100,
        cursor: str | None = None,
        keys_only: bool = False,
        include_internal: bool = False,
    ) -> KvListResult:
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidArgumentError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        ranges = self.policy.readable(prefix.encode(), include_internal=include_internal)
        start = _decode_cursor(cursor, prefix) if cursor else None
        items: list[KvListItem] = []
        next_key: bytes | None = None
        revision = 0
        pending = [r for r in ranges if start is None or r[1] is None or start < r[1]]
        for index, (lo, hi) in enumerate(pending):
            lo = max(lo, start) if start is not None else lo
            page = await self.etcd.range(lo, _range_end(hi), limit=limit - len(items), keys_only=keys_only)
            revision = revision or page.revision
            items.extend(_list_item(kv, keys_only) for kv in page.kvs)
            if page.more or (len(items) >= limit and index < len(pending) - 1):
                next_key = page.kvs[-1].key + b"\0"
                break
        return KvListResult(items=items, next_cursor=_encode_cursor(next_key), revision=revision)

    async def delete(
        self, key: str, prefix: bool = False, expected_revision: int | None = None, dry_run: bool = False
    ) -> KvDeleteResult:
        """Delete a key or every permitted key under a prefix; ``dry_run`` says what would go, deleting nothing."""
        if prefix:
            if expected_revision is not None:
                raise InvalidArgumentError("expected_revision applies to one key; it cannot be used with prefix=true")
            ranges = self.policy.writable(key.encode())
            keys, count, revision = await _keys_in(self.etcd, ranges)
            if dry_run:
                return KvDeleteResult(
                    deleted=count,
                    revision=revision,
                    keys=keys,
                    dry_run=True,
                    change=_prefix_change(key, keys, count),
                    removes=named("key", keys, count),
                )
            res = await self.etcd.txn([], [Delete(lo, _range_end(hi)) for lo, hi in ranges])
            deleted = sum(getattr(r, "deleted", 0) for r in res.results)
            # `keys` were read just before the delete, in its own request.
            return KvDeleteResult(
                deleted=deleted,
                revision=res.revision,
                keys=keys,
                change=_prefix_change(key, keys, deleted),
                removes=named("key", keys, deleted),
            )
        k = _key(key)
        self.policy.check_write(k)
        if dry_run:
            page = await self.etcd.range(k, keys_only=True)
            found = page.kvs[0].mod_revision if page.kvs else 0
            if expected_revision is not None and found != expected_revision:
                raise RevisionConflictError(key, expected_revision, found)
            return KvDeleteResult(
                deleted=len(page.kvs),
                revision=page.revision,
                keys=[key] if page.kvs else [],
                dry_run=True,
                change=_key_change(key, bool(page.kvs)),
                removes=named("key", [key] if page.kvs else []),
            )
        if expected_revision is None:
            result = await self.etcd.delete(k)
            deleted, revision = result.deleted, result.revision
        else:
            res = await self.etcd.txn([Compare(k, "mod", "==", expected_revision)], [Delete(k)], [Get(k)])
            if not res.succeeded:
                raise RevisionConflictError(key, expected_revision, _mod_revision(res.results[0]))
            deleted, revision = getattr(res.results[0], "deleted", 0), res.revision
        return KvDeleteResult(
            deleted=deleted,
            revision=revision,
            keys=[key] if deleted else [],
            change=_key_change(key, bool(deleted)),
            removes=named("key", [key] if deleted else []),
        )

    async def history(self, key: str, limit: int = 10) -> KvHistoryResult:
        k = _key(key)
        self.policy.check_read(k)
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise InvalidArgumentError(f"limit must be between 1 and {MAX_HISTORY_LIMIT}")
        current = await self.etcd.get(k)
        if current is None:
            raise NotFoundError(f"key not found: {key}. kv_list shows the keys that exist.")
        versions: list[KvVersion] = []
        note: str | None = None
        kv: KeyValue = current
        while True:
            value, encoding = _text(kv.value)
            versions.append(KvVersion(mod_revision=kv.mod_revision, version=kv.version, value=value, encoding=encoding))
            if kv.version == 1:
                break
            if len(versions) >= limit:
                note = f"stopped at limit {limit}; ask for a larger limit to see older versions"
                break
            try:
                older = await self.etcd.get(k, revision=kv.mod_revision - 1)
            except CompactedError:
                note = f"etcd compacted the history before revision {kv.mod_revision}; older versions are gone"
                break
            if older is None:  # cannot happen while version > 1, but never loop on it
                break
            kv = older
        complete = versions[-1].version == 1
        return KvHistoryResult(key=key, versions=versions, complete=complete, note=note)

    async def rollback(self, key: str, to_revision: int, *, dry_run: bool = False) -> KvRollbackResult:
        """Write back the value ``key`` had at ``to_revision`` (compare-and-swap on its current revision);
        ``dry_run`` checks everything and says what it would write."""
        k = _key(key)
        self.policy.check_write(k)
        check_range("to_revision", to_revision, 1, MAX_INT64, " (a mod_revision from kv_history)")
        old = await self.etcd.get(k, revision=to_revision)
        if old is None:
            raise NotFoundError(f"key {key} did not exist at revision {to_revision}; kv_history lists its revisions")
        check_value_size(key, len(old.value), self.max_value_bytes)  # the limit holds for every write
        current = await self.etcd.get(k)
        expected = current.mod_revision if current else 0
        if current is None:
            change = f"recreate key {key} with the value it had at revision {old.mod_revision}"
        else:
            change = f"write back the value key {key} had at revision {old.mod_revision} over its current value "
            change += f"(mod_revision {expected}; that value stays in the history)"
        result = KvRollbackResult(
            key=key, restored_from_revision=old.mod_revision, old_revision=expected, new_revision=0, change=change
        )
        if dry_run:
            return result.model_copy(update={"dry_run": True})
        res = await self.etcd.txn([Compare(k, "mod", "==", expected)], [Put(k, old.value)], [Get(k)])
        if not res.succeeded:
            raise RevisionConflictError(key, expected, _mod_revision(res.results[0]))
        return result.model_copy(update={"new_revision": res.revision})

    async def export(self, prefix: str) -> ExportDocument:
        return await transfer.export_prefix(self.etcd, self.policy, prefix)

    async def import_(
        self,
        document: ExportDocument | dict[str, Any] | str,
        mode: ImportMode,
        dry_run: bool,
        progress: Progress | None,
        plan_fingerprint: str | None = None,
    ) -> ImportResult:
        """See ``transfer.import_document``: an apply needs the ``plan_fingerprint`` of the plan reviewed."""
        return await transfer.import_document(
            self.etcd,
            self.policy,
            document,
            mode,
            dry_run,
            progress,
            max_value_bytes=self.max_value_bytes,
            plan_fingerprint=plan_fingerprint,
        )


async def _keys_in(etcd: EtcdClient, ranges: list[Range]) -> tuple[list[str], int, int]:
    """(the first keys, how many in all, the revision read) in ``ranges``, at one revision."""
    keys: list[str] = []
    count = revision = 0
    for lo, hi in ranges:
        page = await etcd.range(lo, _range_end(hi), limit=MAX_KEYS_LISTED, keys_only=True, revision=revision)
        revision = revision or page.revision
        count += page.count
        keys.extend(show(kv.key) for kv in page.kvs[: MAX_KEYS_LISTED - len(keys)])
    if revision == 0:
        revision = await etcd.current_revision()
    return keys, count, revision


def _put_result(key: str, prev: KeyValue | None, revision: int, lease: int, lease_ttl: int | None) -> KvPutResult:
    """What a write does (or would do): create or overwrite, and whether its lease removes an existing key."""
    change = f"create key {key}" if prev is None else f"overwrite key {key} (mod_revision {prev.mod_revision})"
    removes: list[str] = []
    if lease_ttl is not None:
        change += f" on a new lease of {lease_ttl} s: the key is deleted when the lease expires"
        if prev is not None:
            removes = [f"key {key}: it is deleted when its new {lease_ttl}-second lease expires"]
    return KvPutResult(
        key=key,
        revision=revision,
        created=prev is None,
        previous_mod_revision=prev.mod_revision if prev else None,
        lease=lease,
        change=change,
        removes=removes,
    )


def _unread_put_result(key: str, lease_ttl: int | None) -> KvPutResult:
    """A dry run that may not read the key: a lease may remove it, so that is what the plan says."""
    change = f"write key {key} (this server's etcd user may not read it, so whether it exists is unknown)"
    removes = []
    if lease_ttl is not None:
        change += f" on a new lease of {lease_ttl} s: the key is deleted when the lease expires"
        removes = [f"key {key}, if it exists: it is deleted when its new {lease_ttl}-second lease expires"]
    return KvPutResult(
        key=key, revision=0, created=False, previous_mod_revision=None, dry_run=True, change=change, removes=removes
    )


def _key_change(key: str, exists: bool) -> str:
    return f"delete key {key}" if exists else f"delete nothing: key {key} does not exist"


def _prefix_change(prefix: str, keys: list[str], count: int) -> str:
    where = f"under {prefix!r}" if prefix else "in the allowed prefixes"
    if count == 0:
        return f"delete nothing: there are no keys {where}"
    shown = keys[:KEYS_IN_CHANGE]
    more = f", ... (first {len(shown)} of {count} shown)" if count > len(shown) else ""
    return f"delete {count} key{'s' if count != 1 else ''} {where}: {', '.join(shown)}{more}"


def _mod_revision(result: object) -> int:
    kvs = getattr(result, "kvs", [])
    return kvs[0].mod_revision if kvs else 0


def _list_item(kv: KeyValue, keys_only: bool) -> KvListItem:
    if keys_only:
        return KvListItem(key=show(kv.key), mod_revision=kv.mod_revision, version=kv.version)
    value, encoding = _text(kv.value)
    return KvListItem(
        key=show(kv.key), value=value, encoding=encoding, mod_revision=kv.mod_revision, version=kv.version
    )


def _encode_cursor(key: bytes | None) -> str | None:
    return base64.urlsafe_b64encode(key).decode() if key is not None else None


def _decode_cursor(cursor: str, prefix: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(cursor.encode())
    except (binascii.Error, ValueError):
        key = b""
    if not key or not key.startswith(prefix.encode()):
        raise InvalidArgumentError(
            f"cursor {cursor!r} does not belong to a listing of prefix {prefix!r}; pass the next_cursor of that listing"
        )
    return key
