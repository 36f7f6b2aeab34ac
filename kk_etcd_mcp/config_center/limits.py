"""Limits on what the configuration center writes, checked before anything is written."""

from __future__ import annotations

from ..errors import InvalidArgumentError

DEFAULT_MAX_VALUE_BYTES = 1_048_576  # 1 MiB; etcd refuses requests over about 1.5 MiB (--max-request-bytes)


def check_value_size(key: str, size: int, limit: int) -> None:
    if size > limit:
        raise InvalidArgumentError(
            f"the value for {key} is {size:,} bytes, over the limit of {limit:,} bytes (setting max_value_bytes). "
            "Nothing was written; keep large data elsewhere and store a reference to it in etcd."
        )
