"""The audit trail in etcd is a hash chain: edits, removals and forgeries made behind the server's back show.

Real servers in process (as ``serve`` builds them; the mcp client), a real etcd, and etcdctl playing an
etcd user with write access who bypasses the server. ``audit_log`` must report what was done to the
chain (which entry, edited / removed / forged) and still show every entry. The chain must survive trimming, two servers
appending to the same etcd at once, and restarts. The pure check is tested table-driven at the end.
"""

from __future__ import annotations

import hashlib
import json
from base64 import b64decode
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import EtcdCtl
from mcp import Client
from mcp_helpers import call, served

from kk_etcd_mcp.audit.chain import GENESIS, ChainHead, ChainLayout, verify
from kk_etcd_mcp.audit.model import AuditEntry, ChainedEntry
from kk_etcd_mcp.etcd import KeyValue

pytestmark = pytest.mark.anyio


def entry_key(root: str, seq: int) -> str:
    return f"{root}audit/entry/{seq:020d}"


def stored(etcdctl: EtcdCtl, key: str) -> dict[str, Any] | None:
    kvs = json.loads(etcdctl("get", key, "-w", "json").stdout).get("kvs")
    return kvs[0] if kvs else None


def stored_bytes(etcdctl: EtcdCtl, key: str) -> bytes:
    kv = stored(etcdctl, key)
    assert kv is not None, key
    return b64decode(kv["value"])


async def audit_log(client: Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("audit_log", {"limit": 1000, **arguments})
    assert not result.is_error and result.structured_content is not None, result
    return result.structured_content


def chained_server(etcd_endpoint: str, root: str, **settings: str) -> Any:
    return served(etcd_endpoint, registry_prefix=root, audit_to_etcd="true", hub="false", **settings)


async def test_audit_log_reports_edits_removals_and_forgeries_without_hiding_entries(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    p, root = key_prefix, f"{key_prefix}reg/"
    audit_file = tmp_path / "audit.jsonl"
    async with chained_server(etcd_endpoint, root, audit_file=str(audit_file)) as client:
        for i in range(1, 7):
            await call(client, "kv_put", key=f"{p}k{i}", value=str(i))
        clean = await audit_log(client)
        assert clean["chain"]["intact"] is True and clean["chain"]["breaks"] == []
        assert [e["seq"] for e in clean["entries"]] == [6, 5, 4, 3, 2, 1]
        for entry in clean["entries"]:  # the hash is of the bytes etcd holds; each entry names the one before
            raw = stored_bytes(etcdctl, entry_key(root, entry["seq"]))
            assert entry["hash"] == hashlib.sha256(raw).hexdigest()
            assert json.loads(raw)["seq"] == entry["seq"]
        hashes = {e["seq"]: e["hash"] for e in clean["entries"]}
        assert [json.loads(stored_bytes(etcdctl, entry_key(root, s)))["prev_hash"] for s in range(1, 7)] == [
            GENESIS,
            *(hashes[s] for s in range(1, 6)),
        ]
        # The audit file anchors the chain outside etcd: each line names the seq and hash etcd holds.
        lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
        assert [line["chain"] for line in lines] == [{"seq": s, "hash": hashes[s]} for s in range(1, 7)]

        # An etcd user bypasses the server: edits entry 2, removes entry 4, puts entry 5 on a lease,
        # and forges an entry 7 that the server never wrote (with a correct link to entry 6!).
        edited = json.loads(stored_bytes(etcdctl, entry_key(root, 2)))
        edited["client"] = "somebody-else"
        etcdctl("put", entry_key(root, 2), json.dumps(edited))
        etcdctl("del", entry_key(root, 4))
        lease = etcdctl("lease", "grant", "600").stdout.split()[1]
        etcdctl("put", entry_key(root, 5), stored_bytes(etcdctl, entry_key(root, 5)).decode(), "--lease", lease)
        forged = ChainedEntry.model_validate(
            {**json.loads(stored_bytes(etcdctl, entry_key(root, 6))), "seq": 7, "prev_hash": hashes[6]}
        )
        forged.arguments = {"key": f"{p}innocent"}
        etcdctl("put", entry_key(root, 7), forged.model_dump_json())
        plain = AuditEntry.model_validate({**forged.model_dump(), "arguments": {"key": f"{p}plain"}})
        etcdctl("put", f"{root}audit/entry/not-a-seq", plain.model_dump_json())

        report = await audit_log(client)
        chain = report["chain"]
        assert chain["intact"] is False
        found = {(b["problem"], b["seq"]) for b in chain["breaks"]}
        assert ("edited", 2) in found
        assert ("removed", 4) in found
        assert ("edited", 5) in found  # the lease: it would vanish when the lease expires
        assert ("forged", 7) in found
        assert ("forged", None) in found  # the entry without a place in the chain
        for b in chain["breaks"]:
            assert b["detail"] and b["key"].startswith(f"{root}audit/"), b
        [lease_break] = [b for b in chain["breaks"] if b["seq"] == 5]
        assert "lease" in lease_break["detail"]
        # Nothing is hidden: the real entries, the edited one as it is now, and the forgeries.
        shown = report["entries"]
        assert sorted(e["seq"] for e in shown if e["seq"] is not None) == [1, 2, 3, 5, 6, 7]
        assert next(e for e in shown if e["seq"] == 2)["client"] == "somebody-else"
        assert any(e["arguments"] == {"key": f"{p}plain"} for e in shown)
        # Forgeries outside the chain never push the newest real entries out of a page.
        assert [e["seq"] for e in (await audit_log(client, limit=3))["entries"]] == [6, 5, 3]

        # The server still appends after a tampered chain, and the break stays reported.
        await call(client, "kv_put", key=f"{p}after", value="x")
        later = await audit_log(client)
        assert later["chain"]["intact"] is False
        assert later["entries"][0]["arguments"]["key"] == f"{p}after"
        assert ("removed", 4) in {(b["problem"], b["seq"]) for b in later["chain"]["breaks"]}


async def test_trimming_keeps_the_chain_intact(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    p, root = key_prefix, f"{key_prefix}reg/"
    async with chained_server(etcd_endpoint, root, audit_etcd_max_entries="10") as client:
        for i in range(25):
            await call(client, "kv_put", key=f"{p}k{i}", value=str(i))
            entries = [k for k in etcdctl("get", f"{root}audit/entry/", "--prefix", "--keys-only").stdout.split()]
            assert len(entries) <= 10
        report = await audit_log(client)
        assert report["chain"]["intact"] is True, report["chain"]
        seqs = [e["seq"] for e in report["entries"]]
        assert seqs == list(range(25, 25 - len(seqs), -1)) and report["chain"]["last_seq"] == 25
        assert report["chain"]["first_seq"] == seqs[-1] > 1

        # Removing the oldest kept entry is not trimming: it shows.
        etcdctl("del", entry_key(root, seqs[-1]))
        broken = await audit_log(client)
        assert ("removed", seqs[-1]) in {(b["problem"], b["seq"]) for b in broken["chain"]["breaks"]}


async def test_two_servers_and_a_restart_append_to_one_chain(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p, root = key_prefix, f"{key_prefix}reg/"
    written: list[str] = []

    async def writer(client: Client, name: str, count: int) -> None:
        for i in range(count):
            key = f"{p}{name}/{i}"
            await call(client, "kv_put", key=key, value="x")
            written.append(key)

    async with (
        chained_server(etcd_endpoint, root) as one,
        chained_server(etcd_endpoint, root) as two,
        anyio.create_task_group() as tg,
    ):
        for n in range(3):  # concurrent calls within each server too
            tg.start_soon(writer, one, f"one{n}", 5)
            tg.start_soon(writer, two, f"two{n}", 5)
    async with chained_server(etcd_endpoint, root) as restarted:  # a new process: nothing cached
        await writer(restarted, "three", 3)
        report = await audit_log(restarted)
    assert report["chain"]["intact"] is True, report["chain"]["breaks"]
    assert sorted(e["seq"] for e in report["entries"]) == list(range(1, 34))
    assert sorted(e["arguments"]["key"] for e in report["entries"]) == sorted(written)
    assert [e["arguments"]["key"] for e in report["entries"][:3]] == [f"{p}three/2", f"{p}three/1", f"{p}three/0"]


async def test_a_removed_head_is_reported_then_the_chain_goes_on_after_the_last_entry(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    p, root = key_prefix, f"{key_prefix}reg/"
    async with chained_server(etcd_endpoint, root) as client:
        for i in range(3):
            await call(client, "kv_put", key=f"{p}k{i}", value="x")
        etcdctl("del", f"{root}audit/head")
        report = await audit_log(client)
        assert {(b["problem"], b["seq"]) for b in report["chain"]["breaks"]} == {("head", None)}
        assert [e["seq"] for e in report["entries"]] == [3, 2, 1]
    async with chained_server(etcd_endpoint, root) as restarted:  # nothing cached: it finds the entries
        await call(restarted, "kv_put", key=f"{p}k3", value="x")
        report = await audit_log(restarted)
    assert [e["seq"] for e in report["entries"]] == [4, 3, 2, 1]
    assert report["entries"][0]["prev_hash"] == report["entries"][1]["hash"]


# The check itself, without I/O ---------------------------------------------------------------------------

LAYOUT = ChainLayout("r/audit/")
PREFIX, HEAD_KEY = LAYOUT.entries, LAYOUT.head


def chain_of(count: int, first: int = 1) -> tuple[KeyValue, list[KeyValue]]:
    """A correct chain of entries first..first+count-1 and its head, as the server writes them."""
    kvs: list[KeyValue] = []
    prev = GENESIS
    for seq in range(first, first + count):
        entry = ChainedEntry.model_validate(
            {
                "time": "2030-01-01T00:00:00Z",
                "tool": "kv_put",
                "client": "stdio",
                "arguments": {"key": f"k{seq}"},
                "outcome": "ok",
                "seq": seq,
                "prev_hash": prev,
            }
        )
        raw = entry.model_dump_json().encode()
        kvs.append(KeyValue(PREFIX + f"{seq:020d}".encode(), raw, seq, seq, 1))
        prev = hashlib.sha256(raw).hexdigest()
    head = ChainHead(seq=first + count - 1, hash=prev, first=first)
    return KeyValue(HEAD_KEY, head.model_dump_json().encode(), 1, 1, 1), kvs


def replace_value(kv: KeyValue, **changes: Any) -> KeyValue:
    data = json.loads(kv.value) | changes
    return KeyValue(kv.key, json.dumps(data).encode(), kv.create_revision, kv.mod_revision, kv.version)


def problems(head: KeyValue | None, kvs: list[KeyValue]) -> set[tuple[str, int | None]]:
    _, report = verify(LAYOUT, head, kvs)
    assert report.intact is (not report.breaks)
    return {(b.problem, b.seq) for b in report.breaks}


def test_an_untouched_chain_is_intact_also_after_trimming() -> None:
    assert problems(*chain_of(5)) == set()
    assert problems(*chain_of(5, first=40)) == set()
    entries, report = verify(LAYOUT, *chain_of(3))
    assert [e.seq for e in entries] == [1, 2, 3] and report.first_seq == 1 and report.last_seq == 3
    assert verify(LAYOUT, None, [])[1].intact is True  # nothing written yet


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ("edit 3", {("edited", 3)}),
        ("edit last", {("edited", 5)}),
        ("replace 3", {("forged", 3)}),
        ("remove 3", {("removed", 3)}),
        ("remove 3 and 4", {("removed", 3)}),
        ("remove oldest", {("removed", 1)}),
        ("remove newest", {("removed", 5)}),
        ("append", {("forged", 6)}),
        ("before first", {("forged", 0)}),
        ("no chain fields", {("forged", None)}),
        ("seq differs from key", {("forged", 4)}),
        ("unreadable", {("unreadable", None)}),
        ("head removed", {("head", None)}),
        ("head damaged", {("head", None)}),
    ],
)
def test_each_kind_of_tampering_is_named(tamper: str, expected: set[tuple[str, int | None]]) -> None:
    head, kvs = chain_of(5)
    by_seq = {json.loads(kv.value)["seq"]: i for i, kv in enumerate(kvs)}
    if tamper == "edit 3":
        kvs[by_seq[3]] = replace_value(kvs[by_seq[3]], client="mallory")
    elif tamper == "edit last":
        kvs[by_seq[5]] = replace_value(kvs[by_seq[5]], outcome="refused")
    elif tamper == "replace 3":
        kvs[by_seq[3]] = replace_value(kvs[by_seq[3]], client="mallory", prev_hash="f" * 64)
    elif tamper == "remove 3":
        del kvs[by_seq[3]]
    elif tamper == "remove 3 and 4":
        del kvs[by_seq[3] : by_seq[4] + 1]
    elif tamper == "remove oldest":
        del kvs[0]
    elif tamper == "remove newest":
        del kvs[-1]
    elif tamper == "append":
        extra = replace_value(kvs[-1], seq=6, prev_hash=hashlib.sha256(kvs[-1].value).hexdigest())
        kvs.append(KeyValue(PREFIX + b"%020d" % 6, extra.value, 9, 9, 1))
    elif tamper == "before first":
        extra = replace_value(kvs[0], seq=0)
        kvs.insert(0, KeyValue(PREFIX + b"%020d" % 0, extra.value, 9, 9, 1))
    elif tamper == "no chain fields":
        data = json.loads(kvs[0].value)
        del data["seq"], data["prev_hash"]
        kvs.append(KeyValue(PREFIX + b"zz", json.dumps(data).encode(), 9, 9, 1))
    elif tamper == "seq differs from key":
        kvs[by_seq[4]] = replace_value(kvs[by_seq[4]], seq=44)
    elif tamper == "unreadable":
        kvs.append(KeyValue(PREFIX + b"zz", b"\xff not json", 9, 9, 1))
    elif tamper == "head removed":
        head = None  # type: ignore[assignment]
    elif tamper == "head damaged":
        head = KeyValue(HEAD_KEY, b"{}", 1, 1, 1)
    found = problems(head, kvs)
    assert expected <= found, found
    # Every entry that can be read is still shown.
    entries, _ = verify(LAYOUT, head, kvs)
    assert len(entries) == sum(1 for kv in kvs if kv.value.startswith(b"{"))
