"""The audit trail's wiring, and the ``audit_log`` tool reading the part kept in etcd (scope admin: it
names keys and clients), checking its hash chain as it reads."""

from typing import Annotated

from pydantic import Field

from ...audit import AuditLogResult, AuditTrail, EtcdAuditSink, JsonLinesSink
from ...errors import InvalidArgumentError
from ...etcd import EtcdClient
from ...registry import RegistryKeys
from ...settings import Settings, SettingsError
from ..identity import Scope
from ..toolset import ToolRegistrar

MAX_LIMIT = 1000
AUDIT_LOG_SCOPE: Scope = "admin"  # also what reading the trail through the kv tools needs (app.py)


def build_audit_trail(settings: Settings, etcd: EtcdClient) -> AuditTrail:
    """The file (or stderr) sink, plus etcd's under <registry_prefix>audit/ when audit_to_etcd is on;
    ``audit_values`` decides what entries repeat of the values calls write."""
    try:
        file = JsonLinesSink.open(settings.audit_file)
    except OSError as exc:
        raise SettingsError(f"setting audit_file: cannot open {settings.audit_file}: {exc.strerror}") from None
    sink = None
    if settings.audit_to_etcd:
        sink = EtcdAuditSink(etcd, RegistryKeys(settings.registry_prefix).audit, settings.audit_etcd_max_entries)
    return AuditTrail(file, sink, values=settings.audit_values)


def register_audit_tools(tools: ToolRegistrar, trail: AuditTrail) -> None:
    sink: EtcdAuditSink | None = trail.etcd  # None when audit_to_etcd is off: the tool then says so

    @tools.query("Read the audit trail", scope=AUDIT_LOG_SCOPE)
    async def audit_log(
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description=f"Most entries to return, 1-{MAX_LIMIT}.")] = 50,
        tool: Annotated[str | None, Field(description="Only calls of this tool, e.g. 'kv_delete'.")] = None,
    ) -> AuditLogResult:
        """The audit trail of mutating tool calls, newest first: time, tool, client, arguments (values only as
        size and hash, secrets redacted), outcome (ok, dry_run, refused, error), affected keys and revision.
        `chain` checks the whole trail kept in etcd: each entry carries the hash of the one before, so an
        entry edited, removed or forged behind the server's back is named in `chain.breaks` (entries are
        never hidden; compare `seq`/`hash` with the audit file's `chain` to catch a rewritten chain)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgumentError(f"limit must be between 1 and {MAX_LIMIT}")
        if sink is None:
            return AuditLogResult(
                enabled=False,
                note=(
                    f"this server does not keep the audit trail in etcd (audit_to_etcd = false); its entries go "
                    f"to {trail.file.where}. Set audit_to_etcd = true (KK_ETCD_AUDIT_TO_ETCD=true) to read them here."
                ),
            )
        entries, chain = await sink.read(limit, tool)
        return AuditLogResult(enabled=True, entries=entries, chain=chain)
