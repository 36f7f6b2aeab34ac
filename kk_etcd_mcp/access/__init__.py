"""Access administration: etcd users, roles, key permissions and auth on/off, with guardrails."""

from .models import (
    AuthChangeResult,
    AuthStatusResult,
    KeyPermission,
    PasswordChangeResult,
    PermissionKind,
    RoleDeleteResult,
    RoleInfo,
    RoleListResult,
    UserAddResult,
    UserDeleteResult,
    UserInfo,
    UserListResult,
)
from .service import AccessService

__all__ = [
    "AccessService",
    "AuthChangeResult",
    "AuthStatusResult",
    "KeyPermission",
    "PasswordChangeResult",
    "PermissionKind",
    "RoleDeleteResult",
    "RoleInfo",
    "RoleListResult",
    "UserAddResult",
    "UserDeleteResult",
    "UserInfo",
    "UserListResult",
]
