"""Weighted rendezvous hashing (``registry/rendezvous.py``): fair shares, few moves, the same answer everywhere."""

from __future__ import annotations

import pytest

from kk_etcd_mcp.registry.rendezvous import Ownership, owner_of, stable_hash

INSTANCES = [f"Http/svc-{i % 37}/10.{i // 65536}.{i // 256 % 256}.{i % 256}:8080" for i in range(10_000)]


def members(count: int, weights: dict[str, float] | None = None) -> dict[str, float]:
    found = {f"host-{i}:{1000 + i}:a1b2c{i % 10}": 1.0 for i in range(count)}
    return found | (weights or {})


def owned(group: dict[str, float]) -> Ownership:
    ownership = Ownership(group)
    for key in INSTANCES:
        ownership.add(key)
    return ownership


@pytest.mark.parametrize("count", range(2, 17))
def test_each_member_gets_its_fair_share_within_ten_percent(count: int) -> None:
    shares = owned(members(count)).shares()
    fair = len(INSTANCES) / count
    assert sum(shares.values()) == len(INSTANCES)
    for member, share in shares.items():
        assert abs(share - fair) <= 0.10 * fair, f"{member} owns {share}, fair is {fair:.0f}"


@pytest.mark.parametrize(("weights", "heavy"), [({"big": 2.0}, 2.0), ({"big": 3.0}, 3.0), ({"small": 0.5}, 0.5)])
def test_a_weighted_member_gets_a_share_in_proportion_to_its_weight(weights: dict[str, float], heavy: float) -> None:
    group = members(3, weights)
    shares = owned(group).shares()
    total = sum(group.values())
    for member, weight in group.items():
        fair = len(INSTANCES) * weight / total
        assert abs(shares[member] - fair) <= 0.10 * fair, f"{member} (weight {weight}) owns {shares[member]}"


@pytest.mark.parametrize("count", [2, 3, 4, 8, 15])
def test_a_join_moves_only_instances_to_the_joiner_about_one_nth(count: int) -> None:
    ownership = owned(members(count))
    before = {key: ownership.owner(key) for key in INSTANCES}
    joiner = "joiner:1:ffffff"
    moved = ownership.set_members(members(count) | {joiner: 1.0})
    ideal = len(INSTANCES) / (count + 1)
    assert 0 < len(moved) <= 1.5 * ideal
    assert all(ownership.owner(key) == joiner for key in moved), "every move goes to the joiner"
    assert all(ownership.owner(key) == before[key] for key in INSTANCES if key not in moved)


@pytest.mark.parametrize("count", [2, 3, 4, 8, 16])
def test_a_leave_moves_only_the_leavers_instances(count: int) -> None:
    group = members(count)
    ownership = owned(group)
    leaver = sorted(group)[0]
    its_own = {key for key in INSTANCES if ownership.owner(key) == leaver}
    moved = ownership.set_members({m: w for m, w in group.items() if m != leaver})
    assert moved == its_own
    assert len(moved) <= 1.5 * len(INSTANCES) / count
    assert leaver not in ownership.shares()


def test_incremental_ownership_agrees_with_the_pure_function_after_changes() -> None:
    ownership = owned(members(5))
    ownership.set_members(members(7))
    ownership.set_members({m: w for m, w in members(7).items() if not m.startswith("host-2")} | {"x": 2.0})
    for key in INSTANCES[:2000]:
        assert ownership.owner(key) == owner_of(key, ownership.members)


def test_without_members_nobody_owns_and_the_first_member_takes_everything() -> None:
    ownership = Ownership()
    assert ownership.add("Http/a/1.2.3.4:80") is None
    moved = ownership.set_members({"only": 1.0})
    assert moved == {"Http/a/1.2.3.4:80"}
    assert ownership.owner("Http/a/1.2.3.4:80") == "only"
    assert ownership.set_members({}) == {"Http/a/1.2.3.4:80"}
    assert ownership.owner("Http/a/1.2.3.4:80") is None


def test_the_answer_does_not_depend_on_the_process_or_the_order_of_members() -> None:
    # Pinned: hubs of different versions in one group must agree, so the hash may never change.
    assert stable_hash("Http/web/10.0.0.1:80") == 0xF6AD9BA6622E1944
    group = members(6)
    reordered = dict(reversed(list(group.items())))
    assert [owner_of(key, group) for key in INSTANCES[:500]] == [owner_of(key, reordered) for key in INSTANCES[:500]]


@pytest.mark.parametrize("weight", [0.0, -1.0])
def test_a_weight_that_is_not_positive_is_refused(weight: float) -> None:
    with pytest.raises(ValueError, match="weights must be positive"):
        Ownership({"a": weight})
