"""Waiting for a condition in tests: poll with a generous deadline instead of asserting on time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio

HANG_GUARD = 30.0  # fails a test that would hang; no test asserts on elapsed time
WITHIN = 15.0
POLL = 0.1


async def eventually(condition: Callable[[], Any], what: str, within: float = WITHIN) -> Any:
    """Poll ``condition`` (sync or async) until it returns something truthy, and return that."""
    last: Any = None
    with anyio.move_on_after(within):
        while True:
            last = condition()
            if isinstance(last, Awaitable):
                last = await last
            if last:
                return last
            await anyio.sleep(POLL)
    # AssertionError, not pytest.fail: Failed is a BaseException, and one raised inside a task group
    # ends the session-wide anyio runner, failing every later async test of the session.
    raise AssertionError(f"not within {within:g}s: {what} (last seen: {last!r})")
