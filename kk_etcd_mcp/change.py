"""What a mutating call changes: the fields every mutating result carries, and what counts as removing.

Every mutating operation can run as a dry run (``dry_run=True``): it checks everything, changes nothing,
and returns the result it would return, saying what it would change. ``removes`` names what the change
takes away:

- data: a key, a registration;
- access: a user, a role, a permission, a password that stops working, the anonymous clients that
  enabling authentication locks out, the protection that disabling it drops;
- availability: a key or a registration put on a lease, so that it disappears when the lease expires.

An overwrite is not a removal: etcd keeps the old value in its history and kv_rollback brings it back.
The MCP layer asks the user to confirm exactly the calls whose plan removes something, whichever tool
makes them (``mcp_server/confirm.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

MAX_NAMED = 20  # entries `removes` names one by one before it summarises the rest


class Change(BaseModel):
    dry_run: bool = Field(default=False, description="True: nothing was changed; the result says what would be.")
    change: str = Field(default="", description="What the call changes (with dry_run: would change), in words.")
    removes: list[str] = Field(
        default_factory=list,
        description=(
            "What the change takes away: data, access or availability. A call that removes something asks "
            "the user to confirm it first (with dry_run: what it would take away). Empty when it only adds "
            "or overwrites (overwritten values stay in etcd's history)."
        ),
    )

    def reviewed(self) -> tuple[str, ...]:
        """What a confirmation shows, and what must still hold when the change is applied."""
        return (self.change, *self.removes)


def named(kind: str, names: Sequence[str], total: int | None = None) -> list[str]:
    """``removes`` entries for many things of one kind: the first ``MAX_NAMED``, then how many more."""
    total = len(names) if total is None else total
    entries = [f"{kind} {name}" for name in names[:MAX_NAMED]]
    if total > len(entries):
        entries.append(f"... and {total - len(entries)} more ({total} {kind}s in all)")
    return entries
