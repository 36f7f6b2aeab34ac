"""Export a prefix to a document, and import one back as a plan of guarded transactions.

An import applies only a plan somebody reviewed. Its dry run returns the plan and a fingerprint of it
(the document, the mode, and the mod_revision of every key under the prefix, unchanged keys included);
the apply takes that fingerprint back, plans again, and is refused when the fingerprints differ: a key
changed since the review, even one the plan called unchanged, is never silently overwritten or
reverted. The writes are then guarded by the mod_revisions the plan saw, in one transaction when the
plan has at most ``TXN_MAX_OPS`` operations (etcd's default ``--max-txn-ops``), else in transactions of
that size, each all or nothing; a key that changes meanwhile stops the import at that transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from ..change import named
from ..errors import ConflictError, InvalidArgumentError, InvalidValueError
from ..etcd import Compare, Delete, EtcdClient, KeyValue, Put
from .formats import load_json, utf8
from .keys import KeyPolicy, show
from .limits import DEFAULT_MAX_VALUE_BYTES, check_value_size
from .models import ExportDocument, ExportItem, ImportMode, ImportPlan, ImportResult

TXN_MAX_OPS = 128
PAGE_SIZE = 500
KEYS_IN_CHANGE = 20  # keys the plan's `change` text names per kind

Progress = Callable[[int, int], Awaitable[None]]


async def read_prefix(etcd: EtcdClient, policy: KeyPolicy, prefix: str) -> tuple[int, list[KeyValue]]:
    """Every permitted key under ``prefix`` (registry keys excluded), page by page at one revision."""
    revision = 0
    kvs: list[KeyValue] = []
    for lo, hi in policy.readable(prefix.encode(), include_internal=False):
        async for page in etcd.range_pages(lo, b"\0" if hi is None else hi, revision=revision, page_size=PAGE_SIZE):
            revision = page.revision
            kvs.extend(page.kvs)
    if revision == 0:
        revision = await etcd.current_revision()
    return revision, kvs


async def export_prefix(etcd: EtcdClient, policy: KeyPolicy, prefix: str) -> ExportDocument:
    revision, kvs = await read_prefix(etcd, policy, prefix)
    return ExportDocument(prefix=prefix, revision=revision, items=[_export_item(kv) for kv in kvs])


def _export_item(kv: KeyValue) -> ExportItem:
    try:
        return ExportItem(key=show(kv.key), value=kv.value.decode("utf-8"))
    except UnicodeDecodeError:
        return ExportItem(key=show(kv.key), value=base64.b64encode(kv.value).decode(), encoding="base64")


def parse_document(document: ExportDocument | dict[str, Any] | str) -> ExportDocument:
    if isinstance(document, ExportDocument):
        return document
    if isinstance(document, str):
        try:
            document = load_json(document)  # within the depth limit: a deep document is an error, not a crash
        except InvalidValueError as exc:
            raise InvalidValueError(f"the document is not usable: {exc} Nothing was written.") from None
    try:
        return ExportDocument.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise InvalidArgumentError(
            f"not a kk-etcd-export/v1 document: {where}: {first['msg']}. Pass what kv_export returned. "
            "Nothing was written."
        ) from None


def _item_bytes(item: ExportItem) -> bytes:
    if item.encoding == "utf-8":
        return utf8(item.value, f"the value of item {item.key}")
    try:
        return base64.b64decode(item.value, validate=True)
    except binascii.Error:
        raise InvalidArgumentError(f"item {item.key}: value is not valid base64. Nothing was written.") from None


async def import_document(
    etcd: EtcdClient,
    policy: KeyPolicy,
    document: ExportDocument | dict[str, Any] | str,
    mode: ImportMode,
    dry_run: bool,
    progress: Progress | None = None,
    *,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    plan_fingerprint: str | None = None,
) -> ImportResult:
    """Plan the import; unless ``dry_run``, apply it. Every item is checked before anything is written.

    ``plan_fingerprint``: the fingerprint of the plan the caller reviewed. An apply needs it; a plan
    (dry run or apply) is refused when it no longer matches, saying what the plan is now.
    """
    if mode not in ("merge", "replace"):
        raise InvalidArgumentError("mode must be 'merge' or 'replace'")
    doc = parse_document(document)
    prefix = utf8(doc.prefix, "the document's prefix")
    wanted: dict[bytes, bytes] = {}
    for item in doc.items:
        key = utf8(item.key, "an item's key")
        if not key:
            raise InvalidArgumentError("an item has an empty key. Nothing was written.")
        if not key.startswith(prefix):
            raise InvalidArgumentError(f"item {item.key} is not under the document's prefix {doc.prefix!r}")
        if key in wanted:
            raise InvalidArgumentError(f"item {item.key} appears twice in the document. Nothing was written.")
        policy.check_write(key)
        wanted[key] = _item_bytes(item)
        check_value_size(item.key, len(wanted[key]), max_value_bytes)
    if mode == "replace":
        policy.check_write_prefix(prefix)

    _, current_kvs = await read_prefix(etcd, policy, doc.prefix)
    current = {kv.key: kv for kv in current_kvs}
    plan, steps = _plan(wanted, current, replace=mode == "replace")
    fingerprint = _fingerprint(mode, wanted, current)
    change = plan_change(doc.prefix, mode, plan)
    if plan_fingerprint is not None and plan_fingerprint != fingerprint:
        raise ConflictError(
            f"kv_import: the plan is no longer the one reviewed (plan_fingerprint {plan_fingerprint}): the document "
            f"or a key under {doc.prefix!r} changed since. Nothing was written. The plan now: {change}. Review it "
            "with dry_run=true and apply it with its new plan_fingerprint."
        )
    if not dry_run and plan_fingerprint is None:
        raise InvalidArgumentError(
            "kv_import applies only a reviewed plan: call it with dry_run=true, check the plan, then call it again "
            "with dry_run=false and the plan_fingerprint of that dry run. Nothing was written."
        )
    result = ImportResult(
        mode=mode,
        dry_run=dry_run,
        plan=plan,
        plan_fingerprint=fingerprint,
        applied=0,
        change=change,
        removes=named("key", plan.delete),
    )
    if dry_run or not steps:
        return result
    return await _apply(etcd, steps, result, progress)


def _fingerprint(mode: ImportMode, wanted: dict[bytes, bytes], current: dict[bytes, KeyValue]) -> str:
    """What a plan depends on: the mode, each wanted value, each current key's mod_revision (unchanged ones too)."""
    digest = hashlib.sha256(mode.encode())
    for key in sorted(wanted.keys() | current.keys()):
        kv = current.get(key)
        value = wanted.get(key)
        value_hash = hashlib.sha256(value).hexdigest() if value is not None else "-"
        digest.update(b"\0%s\0%d\0%s" % (key, kv.mod_revision if kv else 0, value_hash.encode()))
    return digest.hexdigest()[:32]


Step = tuple[Compare, Put | Delete]


def plan_change(prefix: str, mode: ImportMode, plan: ImportPlan) -> str:
    """The plan in words, e.g. "import into 'app/' (replace): create 2 keys (app/a, app/b), delete 1 key (app/x)"."""
    parts = []
    for verb, keys in (("create", plan.create), ("update", plan.update), ("delete", plan.delete)):
        if keys:
            shown = ", ".join(keys[:KEYS_IN_CHANGE])
            more = f", ... (first {KEYS_IN_CHANGE} of {len(keys)} shown)" if len(keys) > KEYS_IN_CHANGE else ""
            parts.append(f"{verb} {len(keys)} key{'s' if len(keys) != 1 else ''} ({shown}{more})")
    if not parts:
        return f"change nothing: import into {prefix!r} ({mode}), {len(plan.unchanged)} keys already as in the document"
    unchanged = f"; {len(plan.unchanged)} unchanged" if plan.unchanged else ""
    return f"import into {prefix!r} ({mode}): {', '.join(parts)}{unchanged}"


def _plan(
    wanted: dict[bytes, bytes], current: dict[bytes, KeyValue], *, replace: bool
) -> tuple[ImportPlan, list[Step]]:
    plan = ImportPlan()
    steps: list[Step] = []
    for key, value in wanted.items():
        kv = current.get(key)
        if kv is None:
            plan.create.append(show(key))
            steps.append((Compare(key, "mod", "==", 0), Put(key, value)))
        elif kv.value != value:
            plan.update.append(show(key))
            steps.append((Compare(key, "mod", "==", kv.mod_revision), Put(key, value)))
        else:
            plan.unchanged.append(show(key))
    if replace:
        for key, kv in current.items():
            if key not in wanted:
                plan.delete.append(show(key))
                steps.append((Compare(key, "mod", "==", kv.mod_revision), Delete(key)))
    return plan, steps


async def _apply(etcd: EtcdClient, steps: list[Step], result: ImportResult, progress: Progress | None) -> ImportResult:
    total = len(steps)
    if progress:
        await progress(0, total)
    for start in range(0, total, TXN_MAX_OPS):
        batch = steps[start : start + TXN_MAX_OPS]
        res = await etcd.txn([c for c, _ in batch], [op for _, op in batch])
        if not res.succeeded:
            if total <= TXN_MAX_OPS:
                raise ConflictError(
                    "kv_import: a key changed between the plan and the write; nothing was written. "
                    "Review the plan again with dry_run=true."
                )
            raise ConflictError(
                f"import stopped: a key in operations {start + 1}-{start + len(batch)} changed after planning. "
                f"{start} of {total} operations were applied, that batch and the rest were not. "
                "Run kv_import with dry_run=true again to plan from the current state."
            )
        result.applied = start + len(batch)
        result.revision = res.revision
        if progress:
            await progress(result.applied, total)
    return result
