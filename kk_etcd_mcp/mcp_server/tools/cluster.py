"""Toolset ``cluster``: etcd's members and health, snapshots into backup_dir, and the ``kk://cluster`` resource.

``cluster_snapshot`` takes a file name, never a path: the directory is the server's ``backup_dir``
setting, so a model cannot make the server write anywhere else.
"""

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from pydantic import Field, ValidatorFunctionWrapHandler, WithJsonSchema, WrapValidator

from ...cluster import ClusterService, ClusterStatus, SnapshotResult
from ..toolset import ToolRegistrar


def _optional_name(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    return value if value is None else handler(value)


# The annotation is `str` on purpose (see kv.Value): MCPServer json-decodes string arguments of any other
# annotation, so the name "null" would silently become the default name.
SnapshotName = Annotated[
    str,
    WrapValidator(_optional_name),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]}),
    Field(
        description=(
            "File name inside the server's backup directory, e.g. 'before-upgrade.db': letters, digits, '.', '-', "
            "'_', at most 100 characters, not starting with '.'; '.db' is appended when it has no dot. Leave out "
            "for 'etcd-snapshot-<UTC time>.db'. An existing file is never overwritten."
        )
    ),
]


def byte_size(size: int) -> str:
    """A size as people read it: ``512 bytes``, ``20.5 KiB``, ``1.5 MiB``, ``2.0 GiB``."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} GiB"


def register_cluster_tools(tools: ToolRegistrar, cluster: ClusterService) -> None:
    @tools.query("etcd cluster status")
    async def cluster_status() -> ClusterStatus:
        """etcd cluster health: members (which is leader, learners, each member's own status), leader id,
        version, database size and size in use, store revision, raft term and index, active alarms
        (NOSPACE means etcd refuses writes). Ids are hex, as etcdctl prints them."""
        return await cluster.status()

    @tools.change("Snapshot etcd into the backup directory")
    async def cluster_snapshot(
        ctx: Context[Any, Any],
        name: SnapshotName = None,  # type: ignore[assignment]  # None is allowed by the validator and schema
        dry_run: Annotated[bool, Field(description="Only check the name and say where the file would go.")] = False,
    ) -> SnapshotResult:
        """Save a snapshot of etcd's whole database (every key, with history, users and roles) as a file in the
        server's backup directory; reports progress while it streams. Returns the path, size, SHA-256 and the
        store revision it holds. The file appears only when complete and verified against etcd's checksum.
        Needs an etcd user with role root when etcd authentication is on."""

        async def progress(received: int, total: int) -> None:
            await ctx.report_progress(received, total, f"{byte_size(received)} of {byte_size(total)} received")

        return await cluster.snapshot(name, progress, dry_run)
