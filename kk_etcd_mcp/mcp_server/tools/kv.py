"""Toolset ``kv``: the configuration center. Thin: typed input, one ConfigCenter call, a model out."""

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from pydantic import Field, ValidatorFunctionWrapHandler, WithJsonSchema, WrapValidator

from ...config_center import (
    ConfigCenter,
    ExportDocument,
    ImportResult,
    KvDeleteResult,
    KvEntry,
    KvHistoryResult,
    KvListResult,
    KvPutResult,
    KvRollbackResult,
)
from ..confirm import Answer, Preview
from ..toolset import ToolRegistrar

Key = Annotated[str, Field(description="etcd key, e.g. 'app/db/url'.")]


def _string_or_structure(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    return value if isinstance(value, dict | list) else handler(value)


DryRun = Annotated[bool, Field(description="Only say what would change (the `change` field); change nothing.")]

# The annotation is `str` on purpose: MCPServer json-decodes a string argument whose annotation is not
# exactly `str` ('{"a":1}' would be re-serialised, 'true' or 'null' rejected), yet a string value
# must be stored as given. Objects and lists still pass, through the validator and the schema.
Value = Annotated[
    str,
    WrapValidator(_string_or_structure),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}]}),
    Field(description="The value. A string is stored as given; an object/list is serialised as `format`."),
]


def register_kv_tools(tools: ToolRegistrar, center: ConfigCenter) -> None:
    confirm = tools.confirm

    async def kv_get(
        key: Key, revision: Annotated[int, Field(description="Read as of this revision; 0 = latest.")] = 0
    ) -> KvEntry:
        """Read one configuration value with its revisions. json/yaml values also come back parsed in `data`."""
        return await center.get(key, revision)

    async def kv_put(
        key: Key,
        value: Value,
        format: Annotated[
            Literal["text", "json", "yaml"], Field(description="json/yaml are validated before writing.")
        ] = "text",
        expected_revision: Annotated[
            int | None,
            Field(description="Compare-and-swap: write only if the key's mod_revision is this (0 = only if absent)."),
        ] = None,
        lease_ttl: Annotated[
            int | None, Field(description="Attach a new lease of this many seconds: the key then expires.")
        ] = None,
    ) -> KvPutResult:
        """Write a configuration value. Use expected_revision from kv_get to avoid overwriting a concurrent change."""
        return await center.put(key, value, format, expected_revision, lease_ttl)

    async def kv_list(
        prefix: Annotated[str, Field(description="Key prefix, e.g. 'app/'. '' lists every allowed key.")],
        limit: Annotated[int, Field(description="Page size, 1-1000.")] = 100,
        cursor: Annotated[str | None, Field(description="next_cursor of the previous page.")] = None,
        keys_only: Annotated[bool, Field(description="Leave values out.")] = False,
        include_internal: Annotated[
            bool,
            Field(description="Also show the registry's own keys (its audit trail only with audit_log's scope)."),
        ] = False,
    ) -> KvListResult:
        """List keys (and values) under a prefix, one page at a time."""
        return await center.list(prefix, limit, cursor, keys_only, include_internal)

    async def delete_plan(key: str, prefix: bool, expected_revision: int | None) -> Preview[KvDeleteResult]:
        return await confirm.preview(
            "kv_delete",
            lambda: center.delete(key, prefix, expected_revision, dry_run=True),
            lambda planned: planned.deleted > 0,
        )

    async def kv_delete(
        key: Annotated[str, Field(description="The key, or the prefix when prefix=true.")],
        prefix: Annotated[
            bool, Field(description="Delete every key under `key` (the registry's keys are kept).")
        ] = False,
        expected_revision: Annotated[
            int | None, Field(description="Compare-and-swap: delete only if the key's mod_revision is this.")
        ] = None,
        dry_run: DryRun = False,
        *,
        plan: Annotated[Preview[KvDeleteResult], Resolve(delete_plan)],
        confirmation: Annotated[Answer, Resolve(confirm.resolver("kv_delete", delete_plan))],
    ) -> KvDeleteResult:
        """Delete a key, or every key under a prefix; returns how many (and which, up to 100) were deleted.
        The user is asked to confirm first, shown exactly what will go; dry_run=true only shows it."""
        planned = plan.value()
        if dry_run:
            return planned
        await confirm.require("kv_delete", confirmation, plan, lambda: delete_plan(key, prefix, expected_revision))
        return await center.delete(key, prefix, expected_revision)

    async def kv_history(
        key: Key, limit: Annotated[int, Field(description="Most versions to return, 1-100.")] = 10
    ) -> KvHistoryResult:
        """Earlier versions of a key, newest first, from etcd's MVCC history (until compaction)."""
        return await center.history(key, limit)

    async def kv_rollback(
        key: Key, to_revision: Annotated[int, Field(description="A mod_revision from kv_history.")]
    ) -> KvRollbackResult:
        """Write back the value a key had at an earlier revision (compare-and-swap on its current revision)."""
        return await center.rollback(key, to_revision)

    async def kv_export(prefix: Annotated[str, Field(description="Key prefix to export.")]) -> ExportDocument:
        """Export every key under a prefix as a kk-etcd-export/v1 document (one consistent revision)."""
        return await center.export(prefix)

    async def import_plan(document: dict[str, Any] | str, mode: Literal["merge", "replace"]) -> Preview[ImportResult]:
        return await confirm.preview(
            "kv_import",
            lambda: center.import_(document, mode, dry_run=True, progress=None),
            lambda planned: bool(planned.plan.delete),  # overwritten values stay in history: only deletes are asked
        )

    async def kv_import(
        document: Annotated[
            dict[str, Any] | str, Field(description="A kk-etcd-export/v1 document (as kv_export returns it).")
        ],
        mode: Annotated[
            Literal["merge", "replace"],
            Field(description="merge: create/update keys; replace: also delete keys under the prefix not in it."),
        ] = "merge",
        dry_run: Annotated[bool, Field(description="Only return the plan (default). Set false to apply it.")] = True,
        ctx: Context | None = None,
        *,
        plan: Annotated[Preview[ImportResult], Resolve(import_plan)],
        confirmation: Annotated[Answer, Resolve(confirm.resolver("kv_import", import_plan))],
    ) -> ImportResult:
        """Plan, and unless dry_run, apply an import in guarded transactions of at most 128 operations.
        An import that deletes keys (mode=replace) asks the user to confirm first, showing the plan."""
        planned = plan.value()
        if dry_run:
            return planned
        await confirm.require("kv_import", confirmation, plan, lambda: import_plan(document, mode))

        async def progress(done: int, total: int) -> None:
            if ctx is not None:
                await ctx.report_progress(done, total, f"{done}/{total} operations applied")

        return await center.import_(document, mode, dry_run, progress)

    tools.add(kv_get, title="Read a configuration value", read_only=True)
    tools.add(kv_list, title="List configuration keys", read_only=True)
    tools.add(kv_history, title="Version history of a key", read_only=True)
    tools.add(kv_export, title="Export a prefix", read_only=True)
    # An overwritten value stays in etcd's history and kv_rollback brings it back: not destructive.
    tools.add(kv_put, title="Write a configuration value", read_only=False)
    tools.add(kv_rollback, title="Roll a key back to an earlier revision", read_only=False)
    tools.add(kv_delete, title="Delete keys", read_only=False, destructive=True, idempotent=True)
    tools.add(kv_import, title="Import an export document", read_only=False, destructive=True)
