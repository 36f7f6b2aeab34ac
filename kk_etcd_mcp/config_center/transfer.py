"""Export a prefix to a document, and import one back as a plan of guarded transactions.

Every write of an import is guarded by the mod_revision seen when the plan was made, so a key that
changes meanwhile stops the import instead of being overwritten; transactions hold at most
``TXN_MAX_OPS`` operations (etcd's default ``--max-txn-ops``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from ..errors import ConflictError, InvalidArgumentError, InvalidValueError
from ..etcd import Compare, Delete, EtcdClient, KeyValue, Put
from .formats import load_json
from .keys import KeyPolicy, show
from .limits import DEFAULT_MAX_VALUE_BYTES, check_value_size
from .models import ExportDocument, ExportItem, ImportPlan, ImportResult

TXN_MAX_OPS = 128
PAGE_SIZE = 500
KEYS_IN_CHANGE = 20  # keys the plan's `change` text names per kind

Progress = Callable[[int, int], Awaitable[None]]


async def read_prefix(etcd: EtcdClient, policy: KeyPolicy, prefix: str) -> tuple[int, list[KeyValue]]:
    """Every permitted key under ``prefix`` (registry keys excluded), page by page at one revision."""
    revision = 0
    kvs: list[KeyValue] = []
    for lo, hi in policy.readable(prefix.encode(), include_internal=False):
        start = lo
        while True:
            page = await etcd.range(start, b"\0" if hi is None else hi, limit=PAGE_SIZE, revision=revision)
            revision = revision or page.revision
            kvs.extend(page.kvs)
            if not page.more:
                break
            start = page.kvs[-1].key + b"\0"
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
        return item.value.encode()
    try:
        return base64.b64decode(item.value, validate=True)
    except binascii.Error:
        raise InvalidArgumentError(f"item {item.key}: value is not valid base64. Nothing was written.") from None


async def import_document(
    etcd: EtcdClient,
    policy: KeyPolicy,
    document: ExportDocument | dict[str, Any] | str,
    mode: str,
    dry_run: bool,
    progress: Progress | None = None,
    *,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> ImportResult:
    """Plan the import; unless ``dry_run``, apply it. Every item is checked before anything is written."""
    if mode not in ("merge", "replace"):
        raise InvalidArgumentError("mode must be 'merge' or 'replace'")
    doc = parse_document(document)
    wanted: dict[bytes, bytes] = {}
    for item in doc.items:
        key = item.key.encode()
        if not key:
            raise InvalidArgumentError("an item has an empty key. Nothing was written.")
        if not key.startswith(doc.prefix.encode()):
            raise InvalidArgumentError(f"item {item.key} is not under the document's prefix {doc.prefix!r}")
        if key in wanted:
            raise InvalidArgumentError(f"item {item.key} appears twice in the document. Nothing was written.")
        policy.check_write(key)
        wanted[key] = _item_bytes(item)
        check_value_size(item.key, len(wanted[key]), max_value_bytes)
    if mode == "replace":
        policy.check_write_prefix(doc.prefix.encode())

    _, current_kvs = await read_prefix(etcd, policy, doc.prefix)
    current = {kv.key: kv for kv in current_kvs}
    plan, steps = _plan(wanted, current, replace=mode == "replace")
    result = ImportResult(
        mode=mode,  # type: ignore[arg-type]
        dry_run=dry_run,
        plan=plan,
        applied=0,
        change=plan_change(doc.prefix, mode, plan),
    )
    if dry_run or not steps:
        return result
    return await _apply(etcd, steps, result, progress)


Step = tuple[Compare, Put | Delete]


def plan_change(prefix: str, mode: str, plan: ImportPlan) -> str:
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
            raise ConflictError(
                f"import stopped: a key in operations {start + 1}-{start + len(batch)} changed after planning. "
                f"{start} of {total} operations were applied, that batch and the rest were not. "
                "Run kv_import again to plan from the current state."
            )
        result.applied = start + len(batch)
        result.revision = res.revision
        if progress:
            await progress(result.applied, total)
    return result
