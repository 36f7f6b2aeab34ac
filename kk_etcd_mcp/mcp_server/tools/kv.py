"""Toolset ``kv``: the configuration center. Thin: typed input, one ConfigCenter call, a model out."""

import json
import math
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
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
from ...config_center.service import MAX_HISTORY_LIMIT, MAX_LIST_LIMIT
from ...ranges import MAX_INT64, MAX_LEASE_TTL
from ..confirm import Reviewed
from ..toolset import DryRun, ToolRegistrar

Key = Annotated[str, Field(description="etcd key, e.g. 'app/db/url'.")]
Revision = Annotated[int, Field(ge=0, le=MAX_INT64, description="Read as of this revision; 0 = latest.")]
ExpectedRevision = Annotated[
    int | None,
    Field(
        ge=0,
        le=MAX_INT64,
        description="Compare-and-swap: write only if the key's mod_revision is this (0 = only if absent).",
    ),
]


def _value(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Objects and lists pass; a JSON number or true/false becomes its JSON text; anything else must be a string."""
    if isinstance(value, dict | list):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # over the interpreter's digit limit
            raise ValueError("the number is too long to store as text; pass it as a string") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinity have no JSON text; pass the value as a string")
        return json.dumps(value)
    return handler(value)


# The annotation is `str` on purpose: MCPServer json-decodes a string argument whose annotation is not
# exactly `str` ('{"a":1}' would be re-serialised, 'true' or 'null' rejected), yet a string value
# must be stored as given. Objects, lists, numbers and true/false still pass, through the validator
# and the schema: clients that send JSON-typed values (1, true) get what they meant.
Value = Annotated[
    str,
    WrapValidator(_value),
    WithJsonSchema(
        {"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}, {"type": "number"}, {"type": "boolean"}]}
    ),
    Field(
        description=(
            "The value. A string is stored as given; a number or true/false as its JSON text (1, true); an "
            "object/list is serialised as `format`."
        )
    ),
]


def register_kv_tools(tools: ToolRegistrar, center: ConfigCenter) -> None:
    @tools.query("Read a configuration value")
    async def kv_get(key: Key, revision: Revision = 0) -> KvEntry:
        """Read one configuration value with its revisions. json/yaml values also come back parsed in `data`;
        a value that parses but is not plain JSON comes back as text, and `note` says why."""
        return await center.get(key, revision)

    @tools.query("List configuration keys")
    async def kv_list(
        prefix: Annotated[str, Field(description="Key prefix, e.g. 'app/'. '' lists every allowed key.")],
        limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT, description="Page size, 1-1000.")] = 100,
        cursor: Annotated[
            str | None,
            Field(
                description=(
                    "next_cursor of the previous page. A cursor is the base64url of the key the page starts at, so "
                    "a listing may also start at any key under the prefix (e.g. past a whole sub-prefix)."
                )
            ),
        ] = None,
        keys_only: Annotated[bool, Field(description="Leave values out.")] = False,
        include_internal: Annotated[
            bool,
            Field(description="Also show the registry's own keys (its audit trail only with audit_log's scope)."),
        ] = False,
    ) -> KvListResult:
        """List keys (and values) under a prefix, one page at a time."""
        return await center.list(prefix, limit, cursor, keys_only, include_internal)

    @tools.query("Version history of a key")
    async def kv_history(
        key: Key,
        limit: Annotated[int, Field(ge=1, le=MAX_HISTORY_LIMIT, description="Most versions to return, 1-100.")] = 10,
    ) -> KvHistoryResult:
        """Earlier versions of a key, newest first, from etcd's MVCC history (until compaction)."""
        return await center.history(key, limit)

    @tools.query("Export a prefix")
    async def kv_export(prefix: Annotated[str, Field(description="Key prefix to export.")]) -> ExportDocument:
        """Export every key under a prefix as a kk-etcd-export/v1 document (one consistent revision)."""
        return await center.export(prefix)

    # An overwritten value stays in etcd's history and kv_rollback brings it back; a lease removes the key.
    @tools.change("Write a configuration value", destructive=True)
    async def kv_put(
        key: Key,
        value: Value,
        format: Annotated[
            Literal["text", "json", "yaml"],
            Field(description="json/yaml are validated before writing: they must read back as json/yaml."),
        ] = "text",
        expected_revision: ExpectedRevision = None,
        lease_ttl: Annotated[
            int | None,
            Field(
                ge=1,
                le=MAX_LEASE_TTL,
                description=(
                    "Attach a new lease of this many seconds: the key is then deleted when it expires (over an "
                    "existing key the user is asked to confirm that)."
                ),
            ),
        ] = None,
        dry_run: DryRun = False,
        reviewed: Reviewed[KvPutResult] | None = None,
    ) -> KvPutResult:
        """Write a configuration value. Use expected_revision from kv_get to avoid overwriting a concurrent change."""
        return await center.put(
            key,
            value,
            format,
            expected_revision,
            lease_ttl,
            dry_run=dry_run,
            reviewed=reviewed.plan if reviewed else None,
        )

    @tools.change("Roll a key back to an earlier revision")
    async def kv_rollback(
        key: Key,
        to_revision: Annotated[int, Field(ge=1, le=MAX_INT64, description="A mod_revision from kv_history.")],
        dry_run: DryRun = False,
    ) -> KvRollbackResult:
        """Write back the value a key had at an earlier revision (compare-and-swap on its current revision)."""
        return await center.rollback(key, to_revision, dry_run=dry_run)

    @tools.change("Delete keys", destructive=True, idempotent=True)
    async def kv_delete(
        key: Annotated[str, Field(description="The key, or the prefix when prefix=true.")],
        prefix: Annotated[
            bool, Field(description="Delete every key under `key` (the registry's keys are kept).")
        ] = False,
        expected_revision: Annotated[
            int | None,
            Field(ge=0, le=MAX_INT64, description="Compare-and-swap: delete only if the key's mod_revision is this."),
        ] = None,
        dry_run: DryRun = False,
    ) -> KvDeleteResult:
        """Delete a key, or every key under a prefix; returns how many (and which, up to 100) were deleted.
        The user is asked to confirm first, shown exactly what will go; dry_run=true only shows it."""
        return await center.delete(key, prefix, expected_revision, dry_run=dry_run)

    @tools.change("Import an export document", destructive=True)
    async def kv_import(
        document: Annotated[
            dict[str, Any] | str, Field(description="A kk-etcd-export/v1 document (as kv_export returns it).")
        ],
        mode: Annotated[
            Literal["merge", "replace"],
            Field(description="merge: create/update keys; replace: also delete keys under the prefix not in it."),
        ] = "merge",
        dry_run: Annotated[
            bool, Field(description="Only return the plan and its plan_fingerprint (default). Set false to apply it.")
        ] = True,
        plan_fingerprint: Annotated[
            str | None,
            Field(
                description=(
                    "To apply (dry_run=false): the plan_fingerprint of the dry run you reviewed. The import is "
                    "refused when the document or any key under the prefix changed since."
                )
            ),
        ] = None,
        ctx: Context | None = None,
        reviewed: Reviewed[ImportResult] | None = None,
    ) -> ImportResult:
        """Plan, and unless dry_run, apply an import: in one guarded transaction (or transactions of at most
        128 operations for a larger plan), only as the reviewed plan_fingerprint says. An import that deletes
        keys (mode=replace) asks the user to confirm first, showing the plan; a plan the user confirmed needs no
        plan_fingerprint."""
        if not dry_run and plan_fingerprint is None and reviewed is not None and reviewed.confirmed:
            plan_fingerprint = reviewed.plan.plan_fingerprint  # the user saw and accepted this very plan

        async def progress(done: int, total: int) -> None:
            if ctx is not None:
                await ctx.report_progress(done, total, f"{done}/{total} operations applied")

        return await center.import_(document, mode, dry_run, progress, plan_fingerprint)
