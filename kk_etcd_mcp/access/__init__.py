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
    RolePermissionChange,
    UserAddResult,
    UserDeleteResult,
    UserInfo,
    UserListResult,
    UserRoleChange,
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
    "RolePermissionChange",
    "UserAddResult",
    "UserDeleteResult",
    "UserInfo",
    "UserListResult",
    "UserRoleChange",
]
