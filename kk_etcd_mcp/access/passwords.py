"""Passwords for etcd users: generated strong, or checked without ever repeating them.

No function here puts a password into a message: errors describe the problem, not the value.
"""

from __future__ import annotations

import secrets
import string

from ..errors import InvalidArgumentError

# Letters and digits only: safe to paste into a shell, a TOML file or `etcdctl --user name:password`.
ALPHABET = string.ascii_letters + string.digits
GENERATED_LENGTH = 32  # log2(62) * 32 ≈ 190 bits
# etcd stores bcrypt hashes, and bcrypt reads at most 72 bytes: anything after them would not count.
MAX_PASSWORD_BYTES = 72


def generate_password(length: int = GENERATED_LENGTH) -> str:
    """A random password from ``secrets`` (the OS's CSPRNG)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def check_password(password: str) -> None:
    """Refuse passwords etcd would accept but that cannot be meant; the message never contains it."""
    if not password.strip():
        raise InvalidArgumentError(
            "the password must not be empty or only whitespace; leave it out to have a strong one generated."
        )
    size = len(password.encode())
    if size > MAX_PASSWORD_BYTES:
        raise InvalidArgumentError(
            f"the password is {size} bytes long; etcd's bcrypt uses only the first {MAX_PASSWORD_BYTES}, "
            "so use a shorter one, or leave it out to have one generated."
        )
