"""The health state machine: check results in, status transitions out. No I/O, no clock of its own.

Consul's rules: a new instance is ``critical`` until ``success_before_passing`` consecutive good
results; a routable instance (passing or warning) turns ``critical`` after
``failures_before_critical`` consecutive failures. Between passing and warning there is no damping:
both are routable and the latest good result says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .model import ALIVE_STATUSES, Status


@dataclass(slots=True)
class HealthState:
    success_before_passing: int = 1
    failures_before_critical: int = 3
    status: Status = "critical"
    since: datetime | None = None
    output: str = "not checked yet"
    successes: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)

    def observe(self, result: Status, output: str, now: datetime) -> bool:
        """Record one check result; True when it must be reported: the first result, or a new ``status``."""
        first = self.since is None
        if result in ALIVE_STATUSES:
            self.successes += 1
            self.failures = 0
            routable = self.status in ALIVE_STATUSES
            new = result if routable or self.successes >= self.success_before_passing else self.status
        else:
            self.failures += 1
            self.successes = 0
            routable = self.status in ALIVE_STATUSES
            new = "critical" if not routable or self.failures >= self.failures_before_critical else self.status
        if new != self.status or first:  # the first result reports at once, so its output says why
            self.status, self.since, self.output = new, now, output
            return True
        if new == result:  # keep the output of the result that agrees with the status shown
            self.output = output
        return False

    def critical_for(self, now: datetime) -> float:
        """Seconds spent critical so far (0 when not critical)."""
        if self.status != "critical" or self.since is None:
            return 0.0
        return (now - self.since).total_seconds()
