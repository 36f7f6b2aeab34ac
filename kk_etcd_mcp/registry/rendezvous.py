"""Which hub checks which instance: weighted rendezvous (highest random weight) hashing. No I/O.

Every hub computes the same answer from the same inputs (an instance's key, the live members and their
weights), so the hubs agree on ownership without talking to each other. For each (instance, member)
pair a hash ``h`` in (0, 1) gives the score ``weight / -ln(h)``; the member with the highest score owns
the instance. A member with twice the weight owns twice the share, and when a member joins or leaves
only the instances that hash to or from it move (about 1/N of them), never the rest.

``Ownership`` keeps each instance's owner and winning score, so a join compares one new score per
instance and a leave recomputes only the leaver's instances.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

_MASK = (1 << 64) - 1
_TWO_64 = float(1 << 64)


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's ``hash`` of a str is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _mix(x: int) -> int:
    """splitmix64's finalizer: spreads the bits of ``instance hash ^ member hash`` over all 64."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def score(instance_hash: int, member_hash: int, weight: float) -> float:
    """The member's bid for the instance: ``weight / -ln(u)`` with u uniform in (0, 1)."""
    u = (_mix(instance_hash ^ member_hash) + 0.5) / _TWO_64
    return weight / -math.log(u)


def owner_of(key: str, members: Mapping[str, float]) -> str | None:
    """The member (id -> weight) that owns ``key``; None when there are no members."""
    candidates = ((member, (stable_hash(member), float(weight))) for member, weight in members.items())
    return Ownership._best(stable_hash(key), candidates)[0]


class Ownership:
    """The owner of each instance for the current members, kept up to date incrementally."""

    def __init__(self, members: Mapping[str, float] | None = None) -> None:
        self._members: dict[str, tuple[int, float]] = {}  # id -> (hash, weight)
        self._owners: dict[str, tuple[str, float, int]] = {}  # instance -> (owner, its score, instance hash)
        self._unowned: set[str] = set()  # tracked while there are no members
        if members:
            self.set_members(members)

    @property
    def members(self) -> dict[str, float]:
        return {member: weight for member, (_, weight) in self._members.items()}

    def owner(self, key: str) -> str | None:
        """The owner of ``key``, tracked or not (an untracked one is computed, not remembered)."""
        found = self._owners.get(key)
        if found is not None:
            return found[0]
        return self._best(stable_hash(key), self._members.items())[0]

    def instances(self) -> Iterable[str]:
        return self._owners.keys()

    def shares(self) -> dict[str, int]:
        """How many instances each member owns (every member listed, with 0 when it owns none)."""
        counts = dict.fromkeys(self._members, 0)
        for owner, _, _ in self._owners.values():
            counts[owner] += 1
        return counts

    def add(self, key: str) -> str | None:
        """Track ``key``; its owner (None while there are no members)."""
        if key not in self._owners:
            self._place(key, stable_hash(key), self._members.items())
        return self.owner(key)

    def discard(self, key: str) -> None:
        self._owners.pop(key, None)
        self._unowned.discard(key)

    def set_members(self, members: Mapping[str, float]) -> set[str]:
        """Change the members (id -> weight, > 0); the instances whose owner changed."""
        for member, weight in members.items():
            if not weight > 0:
                raise ValueError(f"member {member!r} has weight {weight}; weights must be positive")
        wanted = {member: (stable_hash(member), float(weight)) for member, weight in members.items()}
        leaving = {m for m, known in self._members.items() if wanted.get(m) != known}
        joining = {m: known for m, known in wanted.items() if self._members.get(m) != known}
        self._members = wanted
        moved: set[str] = set()
        if leaving:  # their instances go to the best of the members now (joiners included)
            for key, (owner, _, instance_hash) in list(self._owners.items()):
                if owner in leaving:
                    moved.add(key)
                    self._place(key, instance_hash, self._members.items())
        if joining:  # a joiner takes an instance where it outbids the current owner
            for key, (owner, bid, instance_hash) in list(self._owners.items()):
                new_owner, new_bid = self._best(instance_hash, joining.items())
                if new_owner is not None and new_bid > bid and new_owner != owner:
                    self._owners[key] = (new_owner, new_bid, instance_hash)
                    moved.add(key)
        if self._members and self._unowned:
            for key in self._unowned:
                self._place(key, stable_hash(key), self._members.items())
                moved.add(key)
            self._unowned.clear()
        if not self._members:
            self._unowned.update(self._owners)
            moved.update(self._owners)
            self._owners.clear()
        return moved

    def _place(self, key: str, instance_hash: int, candidates: Iterable[tuple[str, tuple[int, float]]]) -> None:
        owner, bid = self._best(instance_hash, candidates)
        if owner is None:
            self._owners.pop(key, None)
            self._unowned.add(key)
        else:
            self._owners[key] = (owner, bid, instance_hash)

    @staticmethod
    def _best(instance_hash: int, candidates: Iterable[tuple[str, tuple[int, float]]]) -> tuple[str | None, float]:
        best: str | None = None
        best_score = -1.0
        log = math.log
        for member, (member_hash, weight) in candidates:
            # score() inlined: this loop runs (instances x members) times when the members change
            x = instance_hash ^ member_hash
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
            bid = weight / -log(((x ^ (x >> 31)) + 0.5) / _TWO_64)
            # a tie (never seen in practice) goes to the smaller id, so every hub breaks it alike
            if bid > best_score or (bid == best_score and best is not None and member < best):
                best, best_score = member, bid
        return best, best_score
