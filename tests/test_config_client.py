"""The SDK's ``ConfigClient`` against real etcd: typed get/put, live values through faults, and a change made
through the real MCP ``kv_put`` tool. etcdctl writes what the outside world writes and confirms what is stored.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from conftest import EtcdCtl
from etcd_under_test import make_etcd
from mcp_helpers import call, stdio_client
from polling import HANG_GUARD, eventually
from pydantic import BaseModel
from tcp_proxy import tcp_proxy

from kk_etcd_mcp import ConfigClient, InvalidConfigError
from kk_etcd_mcp.config_center import LiveConfig
from kk_etcd_mcp.errors import (
    ForbiddenKeyError,
    InvalidArgumentError,
    InvalidValueError,
    NotFoundError,
    RevisionConflictError,
    UnavailableError,
)
from kk_etcd_mcp.etcd import EmbeddedEtcd, EtcdClient
from kk_etcd_mcp.etcd.embedded import free_port

pytestmark = pytest.mark.anyio


class Db(BaseModel):
    host: str
    port: int
    pool: int = 5


def stored(etcdctl: EtcdCtl, key: str) -> str:
    return etcdctl("get", key, "--print-value-only").stdout.removesuffix("\n")


def collect(live: LiveConfig[Any]) -> list[Any]:
    """Every value ``live`` delivers from now on, through a callback (iteration is tested separately)."""
    seen: list[Any] = []
    live.on_change(seen.append)
    return seen


# get and put -------------------------------------------------------------------------------------


async def test_round_trip_of_text_json_yaml_and_models(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    async with ConfigClient([etcd_endpoint]) as config:
        await config.put(f"{key_prefix}text", "hello: not yaml to me", format="text")
        assert stored(etcdctl, f"{key_prefix}text") == "hello: not yaml to me"
        assert await config.get(f"{key_prefix}text", format="text") == "hello: not yaml to me"
        assert await config.get(f"{key_prefix}text") == {"hello": "not yaml to me"}  # read as kv_get recognises it

        await config.put(f"{key_prefix}json", {"host": "db", "port": 5432}, format="json")
        assert json.loads(stored(etcdctl, f"{key_prefix}json")) == {"host": "db", "port": 5432}
        assert await config.get(f"{key_prefix}json") == {"host": "db", "port": 5432}

        written = await config.put(f"{key_prefix}yaml", Db(host="db", port=5432, pool=9))  # yaml by default
        assert yaml.safe_load(stored(etcdctl, f"{key_prefix}yaml")) == {"host": "db", "port": 5432, "pool": 9}
        read = await config.get_versioned(f"{key_prefix}yaml", Db)
        assert read.value == Db(host="db", port=5432, pool=9) and read.revision == written.revision

        etcdctl("put", f"{key_prefix}by-hand", "host: h\nport: 1\n")
        assert await config.get(f"{key_prefix}by-hand", Db) == Db(host="h", port=1)
        await config.put(f"{key_prefix}model-json", Db(host="j", port=2), format="json")
        assert json.loads(stored(etcdctl, f"{key_prefix}model-json")) == {"host": "j", "port": 2, "pool": 5}
        assert await config.get(f"{key_prefix}model-json", Db, format="json") == Db(host="j", port=2)


async def test_read_errors_name_the_key_the_revision_and_the_field(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    async with ConfigClient([etcd_endpoint]) as config:
        with pytest.raises(NotFoundError, match=f"config {key_prefix}absent does not exist"):
            await config.get(f"{key_prefix}absent")
        key = f"{key_prefix}db"
        etcdctl("put", key, '{"host": "h", "port": "many"}')
        revision = (await config.get_versioned(key)).revision
        with pytest.raises(InvalidConfigError) as caught:
            await config.get(key, Db)
        assert (caught.value.key, caught.value.revision) == (key, revision)
        assert str(caught.value) == (
            f"config {key} at revision {revision} is not valid: it does not fit Db: "
            "field port: Input should be a valid integer, unable to parse string as an integer."
        )
        etcdctl("put", key, '{"host": "h", "port": ')
        with pytest.raises(InvalidConfigError, match=r"invalid json at line 1, column 23: Expecting value\.$"):
            await config.get(key, Db)
        with pytest.raises(InvalidConfigError, match="invalid json"):
            await config.get(key, format="json")
        etcdctl("put", key, "just words")
        with pytest.raises(InvalidConfigError, match="not a json or yaml object"):
            await config.get(key, Db)


async def test_put_shares_kv_puts_validation_and_compare_and_swap(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    key = f"{key_prefix}cas"
    async with ConfigClient([etcd_endpoint], registry_prefix=f"{key_prefix}kk_service/") as config:
        with pytest.raises(InvalidValueError, match=r"invalid json at line 1.*Nothing was written"):
            await config.put(key, '{"port": ', format="json")
        with pytest.raises(ForbiddenKeyError, match="service registry's keys"):
            await config.put(f"{key_prefix}kk_service/registration/Http/x/a:1", "x", format="text")
        with pytest.raises(InvalidArgumentError, match="pass a pydantic model"):
            await config.put(key, 5)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="key must not be empty"):
            await config.put("", "x")
        assert stored(etcdctl, key) == ""

        created = await config.put(key, {"v": 1}, expected_revision=0)
        assert created.created
        with pytest.raises(RevisionConflictError, match=f"expected 0, found {created.revision}"):
            await config.put(key, {"v": 2}, expected_revision=0)
        etcdctl("put", key, "v: 3")
        with pytest.raises(RevisionConflictError):
            await config.put(key, {"v": 2}, expected_revision=created.revision)
        assert stored(etcdctl, key) == "v: 3"
        current = await config.get_versioned(key)
        await config.put(key, {"v": 4}, expected_revision=current.revision)
        assert await config.get(key) == {"v": 4}


async def test_a_closed_client_says_how_to_open_it() -> None:
    with pytest.raises(RuntimeError, match="async with ConfigClient"):
        await ConfigClient().get("a")


# watch -------------------------------------------------------------------------------------------


async def test_watch_delivers_a_kv_put_by_mcp_and_never_an_invalid_value(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"{key_prefix}db"
    etcdctl("put", key, '{"host": "a", "port": 1}')
    async with (
        ConfigClient([etcd_endpoint]) as config,
        config.watch(key, Db) as live,
        stdio_client(etcd_endpoint) as client,
    ):
        assert live.value == Db(host="a", port=1) and live.error is None
        updates = aiter(live)
        await call(client, "kv_put", key=key, value='{"host": "b", "port": 2}', format="json")
        with anyio.fail_after(HANG_GUARD):
            assert await anext(updates) == Db(host="b", port=2)
        assert live.value == Db(host="b", port=2)
        good_revision = live.revision

        caplog.set_level(logging.WARNING, "kk_etcd_mcp")
        etcdctl("put", key, '{"host": "c", "port": ')  # invalid json, behind the config center's back
        bad = await eventually(lambda: live.error, "the invalid value is refused")
        assert bad.revision > good_revision and "invalid json" in bad.reason
        assert live.value == Db(host="b", port=2) and live.revision == good_revision
        refused = [r.getMessage() for r in caplog.records if "Not delivered" in r.getMessage()]
        assert len(refused) == 1 and key in refused[0] and str(bad.revision) in refused[0], refused

        etcdctl("put", key, '{"host": "d", "port": 4}')
        with anyio.fail_after(HANG_GUARD):
            assert await anext(updates) == Db(host="d", port=4), "the invalid value was never delivered"
        assert live.error is None and live.revision > bad.revision


async def test_a_deleted_key_keeps_its_value_or_raises(etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl) -> None:
    key = f"{key_prefix}flag"
    etcdctl("put", key, "on")
    async with (
        ConfigClient([etcd_endpoint]) as config,
        config.watch(key) as kept,
        config.watch(key, on_delete="raise") as strict,
    ):
        updates = aiter(strict)
        etcdctl("del", key)
        with anyio.fail_after(HANG_GUARD), pytest.raises(NotFoundError, match=f"config {key} was deleted"):
            await anext(updates)
        await eventually(lambda: kept.deleted, "the deletion is seen")
        assert kept.value == "on"
        with pytest.raises(NotFoundError, match="was deleted at revision"):
            strict.value  # noqa: B018
        etcdctl("put", key, "off")
        with anyio.fail_after(HANG_GUARD):
            assert await anext(updates) == "off", "the loop goes on once the key is back"
        assert not strict.deleted and strict.value == "off"
        await eventually(lambda: kept.value == "off", "the keeping watch sees the new value")


async def test_callbacks_and_a_failing_callback(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"{key_prefix}c"
    async with ConfigClient([etcd_endpoint]) as config, config.watch(key) as live:
        with pytest.raises(NotFoundError, match="does not exist"):
            live.value  # noqa: B018
        seen: list[Any] = []

        @live.on_change
        def broken(value: Any) -> None:
            raise RuntimeError("a bug in the application")

        async def slow(value: Any) -> None:
            await anyio.sleep(0.01)
            seen.append(value)

        live.on_change(slow)
        etcdctl("put", key, "1")
        etcdctl("put", key, "2")
        await eventually(lambda: seen == ["1", "2"], "both values reach the async callback")
    assert any("on_change callback" in r.getMessage() for r in caplog.records)


async def test_restart_of_etcd_loses_nothing_and_repeats_nothing(own_etcd: EmbeddedEtcd, key_prefix: str) -> None:
    key = f"{key_prefix}n"
    async with (
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([own_etcd.client_url]) as writer,
        ConfigClient([proxy.url], request_timeout=2) as config,
        config.watch(key, format="json") as live,
    ):
        seen = collect(live)
        for n in range(1, 6):
            await writer.put(key, json.dumps(n))
        await eventually(lambda: seen[-1:] == [5], "the first values arrive")  # (.value raises before one)

        proxy.cut()  # the watcher is cut off while etcd dies, comes back and the key changes
        own_etcd.kill()
        await own_etcd.astart()
        for n in range(6, 11):
            await writer.put(key, json.dumps(n))
        proxy.restore()
        for n in range(11, 16):
            await writer.put(key, json.dumps(n))
        await eventually(lambda: seen[-1:] == [15], "the watch resumes after the restart", within=HANG_GUARD)
        assert seen == list(range(1, 16))


async def test_compaction_past_the_watch_reads_the_value_again(own_etcd: EmbeddedEtcd, key_prefix: str) -> None:
    key = f"{key_prefix}c"
    async with (
        tcp_proxy("127.0.0.1", own_etcd.client_port) as proxy,
        EtcdClient([own_etcd.client_url]) as writer,
        ConfigClient([proxy.url]) as config,
        config.watch(key) as live,
    ):
        seen = collect(live)
        await writer.put(key, "a")
        await eventually(lambda: seen == ["a"], "the first value arrives")
        proxy.cut()
        await writer.put(key, "b")
        last = await writer.put(key, "c")
        await writer.compact(last.revision)
        proxy.restore()
        await eventually(lambda: seen == ["a", "c"], "the current value is read again", within=HANG_GUARD)
        assert live.revision == last.revision
        await writer.put(key, "d")
        await eventually(lambda: seen == ["a", "c", "d"], "the watch goes on", within=HANG_GUARD)


async def test_watch_prefix_stays_equal_to_etcd(etcd_endpoint: str, key_prefix: str) -> None:
    rng = random.Random(18)
    names = [f"{key_prefix}k{i}" for i in range(20)]
    async with (
        EtcdClient([etcd_endpoint]) as writer,
        ConfigClient([etcd_endpoint]) as config,
        config.watch_prefix(key_prefix, format="json") as live,
    ):
        batches = aiter(live)
        for step in range(200):
            key = rng.choice(names)
            if rng.random() < 0.3:
                await writer.delete(key)
            else:
                await writer.put(key, json.dumps({"step": step}))
        last = await writer.put(f"{key_prefix}zz-last", "{}")

        async def in_etcd() -> dict[str, Any]:
            page = await writer.range(key_prefix, f"{key_prefix}\xff")
            return {kv.key.decode(): json.loads(kv.value) for kv in page.kvs}

        await eventually(lambda: live.revision >= last.revision, "the watch catches up", within=HANG_GUARD)
        assert dict(live.value) == await in_etcd()
        with anyio.fail_after(HANG_GUARD):
            assert await anext(batches)  # the loop gets mappings too
    assert live.error is None


async def test_watch_prefix_refuses_invalid_values_per_key(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    async with ConfigClient([etcd_endpoint]) as config, config.watch_prefix(key_prefix, Db) as live:
        etcdctl("put", f"{key_prefix}a", "host: a\nport: 1")
        await eventually(lambda: f"{key_prefix}a" in live.value, "a arrives")
        etcdctl("put", f"{key_prefix}a", "host: a\nport: x")
        etcdctl("put", f"{key_prefix}b", "not: [valid")
        await eventually(lambda: len(live.errors) == 2, "both are refused")
        assert live.value == {f"{key_prefix}a": Db(host="a", port=1)}
        assert live.error is not None and live.error.key == f"{key_prefix}b"
        etcdctl("del", f"{key_prefix}a")
        await eventually(lambda: live.value == {}, "a leaves the mapping")
        assert set(live.errors) == {f"{key_prefix}b"}


# starting without etcd ----------------------------------------------------------------------------


async def test_start_without_etcd_waits_then_fails_or_uses_the_cached_copy(tmp_path: Path) -> None:
    port = free_port()
    server = make_etcd(tmp_path / "data", port, free_port(), log_file=tmp_path / "etcd.log")
    cache = tmp_path / "app-db.json"
    async with ConfigClient([f"http://127.0.0.1:{port}"], request_timeout=1) as config:
        with pytest.raises(UnavailableError, match=r"about key app/db within 0\.5s"):
            async with config.watch("app/db", Db, timeout=0.5):
                pass
        with pytest.raises(UnavailableError, match="no usable cached copy"):
            async with config.watch("app/db", Db, timeout=0.5, cache_file=cache):
                pass

        async def put(port: int) -> bool:  # the client's channel may still be waiting to reconnect
            try:
                await config.put("app/db", Db(host="h", port=port))
            except UnavailableError:
                return False
            return True

        try:
            await server.astart()
            await eventually(lambda: put(1), "etcd takes the first value")
            async with config.watch("app/db", Db, cache_file=cache) as live:
                assert live.value == Db(host="h", port=1) and not live.from_cache
            assert cache.stat().st_mode & 0o077 == 0, "the copy may hold secrets: owner only"
        finally:
            await server.astop()

        async with config.watch("app/db", Db, timeout=0.5, cache_file=cache) as live:
            assert live.from_cache and live.value == Db(host="h", port=1)
            seen = collect(live)
            try:
                await server.astart()  # etcd comes back: the same revision is not delivered again
                await eventually(lambda: not live.from_cache, "etcd answers")
                await eventually(lambda: put(2), "etcd takes the second value")
                await eventually(lambda: seen == [Db(host="h", port=2)], "only the new value is delivered")
            finally:
                await server.astop()


async def test_bad_arguments_are_refused_before_anything_runs(etcd_endpoint: str) -> None:
    async with ConfigClient([etcd_endpoint]) as config:
        with pytest.raises(InvalidArgumentError, match="on_delete must be"):
            config.watch("a", on_delete="ignore")  # type: ignore[call-overload]
        with pytest.raises(InvalidArgumentError, match="model must be a pydantic model class"):
            await config.get("a", dict)  # type: ignore[call-overload]
        with pytest.raises(InvalidArgumentError, match="format must be"):
            await config.get("a", format="toml")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="timeout must be"):
            async with config.watch("a", timeout=-1):
                pass


async def test_an_error_in_the_body_comes_out_as_it_is(etcd_endpoint: str, key_prefix: str) -> None:
    async with ConfigClient([etcd_endpoint]) as config:
        with pytest.raises(ZeroDivisionError):
            async with config.watch(f"{key_prefix}a"):
                1 / 0  # noqa: B018
