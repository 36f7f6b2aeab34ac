"""Results of the configuration center: the shared language of core, MCP tools and callers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from ..change import Change
from .formats import Encoding, ValueFormat

# Only a JSON object/array or a YAML mapping/sequence is parsed (anything else is text), so the schema says
# so: a property without a type is flagged by strict schema validators. Any, not a union of containers, since
# a YAML mapping may have keys that are not strings.
ParsedData = Annotated[Any, WithJsonSchema({"type": ["object", "array", "null"]})]


class KvEntry(BaseModel):
    key: str
    value: str = Field(description="The stored value; base64 when encoding is 'base64'.")
    format: ValueFormat = Field(description="json or yaml when the value parses as an object/list, else text.")
    encoding: Encoding = "utf-8"
    data: ParsedData = Field(default=None, description="The parsed object or list for json/yaml values, else null.")
    create_revision: int
    mod_revision: int
    version: int
    lease: int = Field(default=0, description="Lease ID the key is attached to (0: none).")
    note: str | None = Field(
        default=None,
        description="Why a value that parses as json/yaml is shown as text only (over a limit, or not plain JSON).",
    )


class KvPutResult(Change):
    key: str
    revision: int = Field(
        description="Revision of this write: the key's new mod_revision (with dry_run: the revision read)."
    )
    created: bool = Field(description="True when the key did not exist before.")
    previous_mod_revision: int | None = Field(description="mod_revision the key had before, if it existed.")
    lease: int = Field(default=0, description="Lease the key now expires with (0: none; with dry_run: 0).")


class KvListItem(BaseModel):
    key: str
    value: str | None = Field(default=None, description="Omitted with keys_only; base64 when encoding is base64.")
    encoding: Encoding | None = None
    mod_revision: int
    version: int


class KvListResult(BaseModel):
    items: list[KvListItem]
    next_cursor: str | None = Field(description="Pass as cursor to read the next page; null on the last page.")
    revision: int = Field(description="Store revision the first page was read at.")


class KvDeleteResult(Change):
    deleted: int = Field(description="Number of keys deleted (with dry_run: that would be).")
    revision: int = Field(description="Revision after the delete (with dry_run: the revision read).")
    keys: list[str] = Field(
        default_factory=list, description="The keys deleted (with dry_run: that would be), in key order, at most 100."
    )


class KvVersion(BaseModel):
    mod_revision: int
    version: int
    value: str
    encoding: Encoding = "utf-8"


class KvHistoryResult(BaseModel):
    key: str
    versions: list[KvVersion] = Field(description="Newest first.")
    complete: bool = Field(description="True when the list reaches the key's creation.")
    note: str | None = Field(default=None, description="Why the history stops early, if it does.")


class KvRollbackResult(Change):
    key: str
    restored_from_revision: int = Field(description="mod_revision of the value written back.")
    old_revision: int = Field(description="mod_revision the key had before the rollback (0: absent).")
    new_revision: int = Field(description="Revision of the write (with dry_run: 0).")


class ExportItem(BaseModel):
    key: str
    value: str
    encoding: Encoding = "utf-8"


class ExportDocument(BaseModel):
    format: Literal["kk-etcd-export/v1"] = "kk-etcd-export/v1"
    prefix: str
    revision: int
    items: list[ExportItem]


class ImportPlan(BaseModel):
    create: list[str] = Field(default_factory=list)
    update: list[str] = Field(default_factory=list)
    delete: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)


ImportMode = Literal["merge", "replace"]  # replace: also delete keys under the prefix that the document lacks


class ImportResult(Change):
    mode: ImportMode
    plan: ImportPlan
    plan_fingerprint: str = Field(
        description=(
            "Identifies this plan: the document, the mode, and the mod_revision of every key under the prefix. "
            "Pass it back as plan_fingerprint to apply exactly the plan reviewed; the apply is refused when "
            "anything changed since."
        )
    )
    applied: int = Field(description="Operations written (0 on a dry run).")
    revision: int | None = Field(default=None, description="Revision after the last transaction.")

    def reviewed(self) -> tuple[str, ...]:
        return (*super().reviewed(), self.plan_fingerprint)
