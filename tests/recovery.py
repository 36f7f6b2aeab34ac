"""Recovery times the fault tests measure (tests/faults/): reported in a table at the end of the run,
never asserted (no test asserts on elapsed time). The ``recovery`` fixture and the report hook live in
conftest.py."""

from __future__ import annotations

import time
from collections.abc import Callable

RECOVERY = "recovery"  # the user_properties name of a measured figure

# recovery(what, value, unit="s")
Recorder = Callable[..., None]


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started
