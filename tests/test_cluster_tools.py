"""The cluster toolset end to end: the server in process (as ``serve`` builds it), the mcp client, a real etcd.

etcdctl and etcdutl (of the etcd under test, called by path) check what the tools report and write:
status against ``etcdctl endpoint status``, snapshots with ``etcdutl snapshot status`` and by
restoring one into a fresh etcd and reading the keys back. Snapshot names are checked as a pure
unit first. Every server here runs without the hub, so nothing else writes to etcd meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import EtcdCtl
from etcd_under_test import binary, is_34, make_etcd, version_text
from mcp import Client
from mcp_helpers import call, call_error, error_text, served
from polling import eventually

from kk_etcd_mcp.cluster import ClusterService, snapshot_file_name
from kk_etcd_mcp.cluster.service import restore_command
from kk_etcd_mcp.errors import InvalidArgumentError, UnavailableError
from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.etcd.embedded import EmbeddedEtcd, free_ports
from kk_etcd_mcp.mcp_server.tools.cluster import byte_size

CLUSTER_TOOLS = {
    # name: (read_only, destructive, idempotent)
    "cluster_status": (True, False, True),
    "cluster_snapshot": (False, False, False),
}


def cluster_client(endpoint: str, backup_dir: Path, **settings: str) -> AbstractAsyncContextManager[Client]:
    return served(endpoint, backup_dir=str(backup_dir), hub="false", **settings)


def snapshot_tool(*args: str, tool: str | None = None) -> str:
    """etcd's offline snapshot tool: etcdutl, or etcdctl on etcd 3.4, which has no etcdutl."""
    tool = tool or ("etcdctl" if is_34() else "etcdutl")
    done = subprocess.run([str(binary(tool)), *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{tool} {' '.join(args)} failed: {done.stderr.strip()}"
    return done.stdout


def files_in(directory: Path) -> list[str]:
    """Every entry, hidden ones (temporary files) included; [] when the directory does not exist."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def revision_of(etcdctl: EtcdCtl, endpoint: str | None = None) -> int:
    status = json.loads(etcdctl("endpoint", "status", "-w", "json", endpoint=endpoint).stdout)
    return int(status[0]["Status"]["header"]["revision"])


# Snapshot names (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "file_name"),
    [
        ("before-upgrade.db", "before-upgrade.db"),
        ("nightly_2024.snap", "nightly_2024.snap"),
        ("nightly", "nightly.db"),
        ("a..b", "a..b"),
        ("x" * 100, "x" * 100 + ".db"),
    ],
)
def test_snapshot_names_accepted(name: str, file_name: str) -> None:
    assert snapshot_file_name(name) == file_name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "it is empty"),
        ("../x", "it is a path"),
        ("a/b", "it is a path"),
        ("/etc/passwd", "it is a path"),
        ("a\\b", "it is a path"),
        (".hidden", "it starts with '.'"),
        (".", "it starts with '.'"),
        ("..", "it starts with '.'"),
        ("snap shot", "characters other than"),
        ("snäp", "characters other than"),
        ("a\nb", "characters other than"),
        ("x" * 101, "longer than 100"),
    ],
)
def test_snapshot_names_refused(name: str, reason: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        snapshot_file_name(name)
    message = str(caught.value)
    assert reason in message and "Nothing was written" in message


@pytest.mark.parametrize(
    ("version", "command"),
    [
        ("3.4.23", "etcdctl snapshot restore"),  # etcd 3.4 has no etcdutl
        ("3.3.27", "etcdctl snapshot restore"),
        ("3.5.1", "etcdutl snapshot restore"),
        ("3.6.0-rc.1", "etcdutl snapshot restore"),
        ("", "etcdutl snapshot restore"),  # not said: current etcd's tool
    ],
)
def test_the_restore_command_follows_the_server_version(version: str, command: str) -> None:
    assert restore_command(version) == command


def test_default_snapshot_name_is_a_utc_timestamp() -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert snapshot_file_name(None, now=when) == "etcd-snapshot-20240506T070809Z.db"
    default = snapshot_file_name(None)
    assert snapshot_file_name(default) == default  # a default name passes validation itself


# Tools, annotations, read_only --------------------------------------------------------------------


@pytest.mark.anyio
async def test_tools_annotations_resource_and_read_only(etcd_endpoint: str, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    async with cluster_client(etcd_endpoint, backups) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name, (read_only, destructive, idempotent) in CLUSTER_TOOLS.items():
            ann = tools[name].annotations
            assert ann is not None and tools[name].title, name
            assert (ann.read_only_hint, ann.destructive_hint, ann.idempotent_hint) == (
                read_only,
                destructive,
                idempotent,
            ), name
        assert tools["cluster_status"].output_schema is not None
        assert "name" in tools["cluster_snapshot"].input_schema["properties"]
        assert "ctx" not in tools["cluster_snapshot"].input_schema["properties"]
        resources = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert resources["kk://cluster"].mime_type == "application/json"

    async with cluster_client(etcd_endpoint, backups, read_only="true") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "cluster_status" in names and "cluster_snapshot" not in names
        result = await client.call_tool("cluster_snapshot", {"name": "sneaky"})
        assert result.is_error and "Unknown tool" in error_text(result)
        assert (await call(client, "cluster_status"))["members"]
    assert files_in(backups) == []


# Status -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_status_agrees_with_etcdctl_and_the_resource(
    etcd_endpoint: str, etcdctl: EtcdCtl, key_prefix: str, tmp_path: Path
) -> None:
    etcdctl("put", f"{key_prefix}a", "1")
    members = json.loads(etcdctl("member", "list", "-w", "json").stdout)["members"]
    async with cluster_client(etcd_endpoint, tmp_path / "backups") as client:
        before = revision_of(etcdctl)
        status = await call(client, "cluster_status")
        after = revision_of(etcdctl)
        resource = await client.read_resource("kk://cluster")

    assert before <= status["revision"] <= after  # equal unless something else wrote meanwhile
    theirs = json.loads(etcdctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
    assert int(status["cluster_id"], 16) == int(theirs["header"]["cluster_id"])
    assert int(status["leader_id"], 16) == int(theirs["leader"])
    assert status["version"] == theirs["version"] == version_text()
    assert status["db_size"] > 0 and 0 < status["db_size_in_use"] <= status["db_size"]
    assert status["raft_term"] == int(theirs["raftTerm"]) and status["raft_index"] > 0
    assert status["alarms"] == [] and status["errors"] == []

    # The leader is a member, and the members are etcdctl's.
    assert {int(m["id"], 16) for m in status["members"]} == {int(m["ID"]) for m in members}
    leaders = [m for m in status["members"] if m["is_leader"]]
    assert [m["id"] for m in leaders] == [status["leader_id"]]
    member = status["members"][0]
    assert member["client_urls"] == members[0]["clientURLs"] and member["peer_urls"] == members[0]["peerURLs"]
    assert member["is_learner"] is False and member["status_error"] is None
    assert member["status"]["version"] == version_text() and member["status"]["revision"] >= status["revision"]

    # kk://cluster: the same document as JSON.
    content = resource.contents[0]
    assert content.mime_type == "application/json"
    document = json.loads(content.text)  # type: ignore[union-attr]
    assert document.keys() == status.keys()
    assert (document["cluster_id"], document["leader_id"]) == (status["cluster_id"], status["leader_id"])
    assert document["revision"] >= status["revision"]


# Snapshot -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (20 * 1024 + 512, "20.5 KiB"), (3 << 20, "3.0 MiB"), (5 << 30, "5.0 GiB")],
)
def test_progress_sizes_read_well_small_or_large(size: int, shown: str) -> None:
    # A small snapshot once read "0.0 MiB of 0.0 MiB received".
    assert byte_size(size) == shown


@pytest.mark.anyio
async def test_snapshot_is_a_valid_etcd_backup(
    etcd_endpoint: str, etcdctl: EtcdCtl, key_prefix: str, tmp_path: Path
) -> None:
    backups = tmp_path / "backups"
    for i in range(20):
        etcdctl("put", f"{key_prefix}k{i}", f"value-{i}" * 100)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with cluster_client(etcd_endpoint, backups) as client:
        revision = revision_of(etcdctl)
        result = await client.call_tool("cluster_snapshot", {"name": "before-change"}, progress_callback=on_progress)
        assert not result.is_error, error_text(result)
        snap = result.structured_content
        assert snap is not None
        etcdctl("put", f"{key_prefix}k0", "changed after the snapshot")

    # The file: in backup_dir, owner-only, exactly as reported, nothing else left there.
    path = Path(snap["path"])
    assert path == backups / "before-change.db" and snap["name"] == "before-change.db"
    assert files_in(backups) == ["before-change.db"]
    assert backups.stat().st_mode & 0o777 == 0o700 and path.stat().st_mode & 0o777 == 0o600
    data = path.read_bytes()
    assert snap["size"] == len(data)
    assert snap["sha256"] == hashlib.sha256(data).hexdigest()
    assert data[-32:] == hashlib.sha256(data[:-32]).digest()  # etcd's own integrity trailer, kept
    assert snap["revision_exact"] is True and snap["revision"] == snap["revision_after"] == revision

    # etcd's own tool reads it and finds the same revision.
    report = json.loads(snapshot_tool("snapshot", "status", str(path), "-w", "json"))
    assert report["revision"] == snap["revision"] and report["totalKey"] > 20 and report["hash"] > 0

    # Progress: rising to the whole size.
    await eventually(lambda: progress and progress[-1][0] == snap["size"], "progress reached the full size")
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    assert all(total == snap["size"] for _, total, _ in progress)
    whole = byte_size(snap["size"])
    assert progress[-1][2] == f"{whole} of {whole} received"

    # Restored by the command the hint names (etcd 3.4 has no etcdutl), into a fresh etcd, it holds the
    # keys as they were when the snapshot was taken.
    tool = "etcdctl" if is_34() else "etcdutl"
    assert snap["restore_hint"].startswith(f"{tool} snapshot restore {path} --data-dir ")
    restored = await anyio.to_thread.run_sync(_restore_and_start, path, tmp_path / "restored", tool)
    try:
        there = restored.client_url
        assert etcdctl("get", f"{key_prefix}k0", "--print-value-only", endpoint=there).stdout.strip() == (
            "value-0" * 100
        )
        keys = etcdctl("get", "--prefix", key_prefix, "--keys-only", endpoint=there).stdout.split()
        assert sorted(keys) == sorted(f"{key_prefix}k{i}" for i in range(20))
        assert revision_of(etcdctl, there) == snap["revision"]
    finally:
        restored.stop()


def _restore_and_start(snapshot: Path, base: Path, tool: str) -> EmbeddedEtcd:
    client_port, peer_port = free_ports(2)
    etcd = make_etcd(base / "data", client_port, peer_port, log_file=base / "etcd.log")
    snapshot_tool(
        "snapshot",
        "restore",
        str(snapshot),
        f"--data-dir={etcd.data_dir}",
        f"--name={etcd.name}",
        f"--initial-cluster={etcd.name}={etcd.peer_url}",
        f"--initial-advertise-peer-urls={etcd.peer_url}",
        tool=tool,
    )
    etcd.start()
    return etcd


@pytest.mark.anyio
async def test_bad_names_and_existing_files_change_nothing(etcd_endpoint: str, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "taken.db").write_bytes(b"an older backup")
    outside = tmp_path / "x.db"
    async with cluster_client(etcd_endpoint, backups) as client:
        for name, reason in [
            ("../x", "it is a path"),
            ("a/b", "it is a path"),
            (str(outside), "it is a path"),
            (".hidden", "it starts with '.'"),
            ("", "it is empty"),
            ("[1]", "it contains characters other than"),  # reads as JSON, but stays a (bad) name
        ]:
            text = await call_error(client, "cluster_snapshot", name=name)
            assert "invalid snapshot name" in text and f"': {reason}" in text and "Nothing was written" in text
        for name in ("taken.db", "taken"):  # "taken" becomes taken.db
            text = await call_error(client, "cluster_snapshot", name=name)
            assert "a file named taken.db already exists in backup_dir" in text and "choose another name" in text
        # A wrongly typed name is refused before the tool runs.
        result = await client.call_tool("cluster_snapshot", {"name": 7})
        assert result.is_error
    assert files_in(backups) == ["taken.db"]
    assert (backups / "taken.db").read_bytes() == b"an older backup"
    assert not outside.exists() and files_in(tmp_path) == ["backups"]


@pytest.mark.anyio
async def test_default_name_and_backup_dir_created(etcd_endpoint: str, tmp_path: Path) -> None:
    backups = tmp_path / "not" / "yet"
    async with cluster_client(etcd_endpoint, backups) as client:
        snap = await call(client, "cluster_snapshot")
        # "null" reads as JSON null, yet it is the name given, not a request for the default name.
        named = await call(client, "cluster_snapshot", name="null")
    assert snap["name"].startswith("etcd-snapshot-") and snap["name"].endswith("Z.db")
    assert named["name"] == "null.db"
    assert files_in(backups) == sorted([snap["name"], "null.db"]) and backups.stat().st_mode & 0o777 == 0o700


# Failures leave nothing behind --------------------------------------------------------------------

BIG_VALUE = b"x" * 1_000_000


@pytest.mark.anyio
async def test_frozen_etcd_fails_the_snapshot_and_leaves_no_file(own_etcd: EmbeddedEtcd, tmp_path: Path) -> None:
    """etcd freezes mid-stream: the next chunk read times out, the tool errors, the temp file goes."""
    backups = tmp_path / "backups"
    async with EtcdClient([own_etcd.client_url]) as etcd:
        for i in range(48):  # large enough that the stream is still running when etcd is frozen
            await etcd.put(f"big/{i}", BIG_VALUE)
    frozen = anyio.Event()

    async def freeze_on_first_chunk(done: float, total: float | None, message: str | None) -> None:
        if not frozen.is_set():
            frozen.set()
            await anyio.to_thread.run_sync(own_etcd.pause)

    try:
        async with cluster_client(own_etcd.client_url, backups, request_timeout="2") as client:
            result = await client.call_tool(
                "cluster_snapshot", {"name": "frozen"}, progress_callback=freeze_on_first_chunk
            )
            assert frozen.is_set()
            assert result.is_error, "the snapshot finished before etcd froze: make the database larger"
            text = error_text(result)
            assert f"etcd at {own_etcd.client_url} stopped sending the snapshot" in text, text
            assert files_in(backups) == []
            own_etcd.resume()
            # The server is still fine, and a snapshot now works.
            assert (await call(client, "cluster_snapshot", name="after"))["size"] > 48 * len(BIG_VALUE)
    finally:
        own_etcd.resume()
    assert files_in(backups) == ["after.db"]


@pytest.mark.anyio
async def test_cancelled_snapshot_leaves_no_file(etcd_endpoint: str, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    chunks: list[int] = []
    async with EtcdClient([etcd_endpoint]) as etcd:
        service = ClusterService(etcd, backups)
        with anyio.CancelScope() as scope:

            async def cancel_on_first_chunk(received: int, total: int) -> None:
                chunks.append(received)
                scope.cancel()

            await service.snapshot("cancelled", cancel_on_first_chunk)
        assert scope.cancelled_caught and chunks
        assert files_in(backups) == []
        # The client is usable afterwards: the cancelled stream was closed, not leaked.
        assert (await service.snapshot("next")).size > 0
    assert files_in(backups) == ["next.db"]


@pytest.mark.anyio
async def test_snapshot_needs_role_root(own_etcd: EmbeddedEtcd, etcdctl: EtcdCtl, tmp_path: Path) -> None:
    for command in (
        "user add root:root-pw-71c2",
        "user grant-role root root",
        "user add alice:alice-pw-71c2",
        "auth enable",
    ):
        etcdctl(*command.split(), endpoint=own_etcd.client_url)
    backups = tmp_path / "backups"
    async with cluster_client(own_etcd.client_url, backups, username="alice", password="alice-pw-71c2") as client:
        assert (await call(client, "cluster_status"))["members"]
        text = await call_error(client, "cluster_snapshot", name="denied")
        assert "permission denied: alice may not take a snapshot of etcd" in text and "role root" in text
    assert files_in(backups) == []


# A cluster without a leader -----------------------------------------------------------------------

FAST_RAFT = ("--heartbeat-interval=20", "--election-timeout=200")


@pytest.mark.anyio
async def test_status_without_a_leader_still_answers(tmp_path: Path) -> None:
    """A two-member cluster loses one member, so it has no quorum and no leader: cluster_status must still
    say so (members, which one is unreachable, no leader) instead of failing; only alarms need a leader."""
    ports = free_ports(4)
    peers = {name: f"http://127.0.0.1:{ports[i + 2]}" for i, name in enumerate(("one", "two"))}
    initial = ",".join(f"{name}={url}" for name, url in peers.items())
    members = [
        make_etcd(
            tmp_path / name, ports[i], ports[i + 2], name=name, extra_args=[f"--initial-cluster={initial}", *FAST_RAFT]
        )
        for i, name in enumerate(peers)
    ]
    # Started together (each one's start() would wait for the other); our own status says when both are up.
    processes = []
    for member in members:
        with (tmp_path / f"{member.name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(member.args(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            )
    try:
        async with EtcdClient([members[0].client_url], request_timeout=1) as etcd:
            service = ClusterService(etcd, tmp_path / "backups")

            async def status_where(condition: Any) -> Any:
                try:
                    status = await service.status()
                except UnavailableError:
                    return None  # not serving yet
                return status if condition(status) else None

            status = await eventually(
                lambda: status_where(lambda s: s.leader_id and all(m.status for m in s.members)), "both members up"
            )
            assert len(status.members) == 2
            assert [m.id for m in status.members if m.is_leader] == [status.leader_id]

            processes[1].terminate()
            processes[1].wait(timeout=30)
            status = await eventually(lambda: status_where(lambda s: s.leader_id is None), "no leader left")
            assert not any(m.is_leader for m in status.members)
            by_name = {m.name: m for m in status.members}
            assert by_name["one"].status is not None and by_name["one"].status_error is None
            gone = by_name["two"]
            assert gone.status is None and gone.status_error and f"at {members[1].client_url}" in gone.status_error
            assert status.alarms == [] and status.alarms_error and "unavailable" in status.alarms_error
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
