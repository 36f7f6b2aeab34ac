"""The Python SDK's configuration client: typed get/put, and values kept live while a service runs.

    async with ConfigClient(["http://127.0.0.1:2379"]) as config:
        db = await config.get("app/db", DbConfig)                  # parsed (json/yaml/text), validated
        await config.put("app/db", db.model_copy(update={"pool": 20}), format="yaml")
        async with config.watch("app/db", DbConfig) as live:       # live.value: the latest valid value
            async for db in live:                                   # each new valid value
                ...

Writes go through ``ConfigCenter.put``, the code behind the ``kv_put`` tool: the same validation, size
limit and compare-and-swap. Usable without the MCP server: it needs only etcd.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from ..errors import InvalidArgumentError, NotFoundError
from ..etcd import EtcdClient
from .formats import ValueFormat, utf8
from .keys import KeyPolicy, ReservedPrefix
from .limits import DEFAULT_MAX_VALUE_BYTES
from .live import Live, LiveConfig, LiveConfigMap, OnDelete, Parse, following
from .models import KvPutResult
from .service import ConfigCenter
from .typed import parse_config

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
L = TypeVar("L", bound=Live[Any])

ConfigValue = str | dict[str, Any] | list[Any] | BaseModel


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    """A value with the revision it was read at (``mod_revision``: pass it as ``expected_revision``)."""

    key: str
    value: T
    revision: int


class ConfigClient:
    """Configuration from etcd for a Python service. ``async with ConfigClient([...]) as config:``.

    Takes the connection options of ``ServiceRegistry``, or ``etcd=`` to share one open ``EtcdClient``
    with it. It never writes under ``registry_prefix`` (the service registry's keys).
    """

    def __init__(
        self,
        endpoints: Sequence[str] = ("http://127.0.0.1:2379",),
        *,
        etcd: EtcdClient | None = None,
        registry_prefix: str = "kk_service/",
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        request_timeout: float = 5.0,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        self._etcd = etcd or EtcdClient(
            endpoints,
            username=username,
            password=password,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            request_timeout=request_timeout,
        )
        self._owns_etcd = etcd is None
        registry = ReservedPrefix(
            registry_prefix,
            "the service registry's keys",
            instead="services register themselves with ServiceRegistry",
            readers="ServiceRegistry",
        )
        self._center = ConfigCenter(self._etcd, KeyPolicy([""], reserved=[registry]), max_value_bytes)
        self._stack = AsyncExitStack()
        self._open = False

    async def __aenter__(self) -> ConfigClient:
        async with AsyncExitStack() as stack:
            if self._owns_etcd:
                await stack.enter_async_context(self._etcd)
            self._stack = stack.pop_all()
        self._open = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        await self._stack.aclose()

    @property
    def etcd(self) -> EtcdClient:
        if not self._open:
            raise RuntimeError("ConfigClient is not open: use 'async with ConfigClient(...)'")
        return self._etcd

    # Reading and writing ---------------------------------------------------------------------------

    @overload
    async def get(self, key: str, model: None = None, *, format: ValueFormat | None = None) -> Any: ...
    @overload
    async def get(self, key: str, model: type[M], *, format: ValueFormat | None = None) -> M: ...
    async def get(self, key: str, model: type[BaseModel] | None = None, *, format: ValueFormat | None = None) -> Any:
        """The value of ``key``: a dict or list for json/yaml, a str for text (``format``: insist on one);
        with ``model``, validated into it. NotFoundError when the key does not exist; InvalidConfigError
        (naming the key, revision and field) when the value does not parse or fit."""
        return (await self.get_versioned(key, model, format=format)).value

    @overload
    async def get_versioned(
        self, key: str, model: None = None, *, format: ValueFormat | None = None
    ) -> Versioned[Any]: ...
    @overload
    async def get_versioned(self, key: str, model: type[M], *, format: ValueFormat | None = None) -> Versioned[M]: ...
    async def get_versioned(
        self, key: str, model: type[BaseModel] | None = None, *, format: ValueFormat | None = None
    ) -> Versioned[Any]:
        """As ``get``, with the revision the value was written at (for ``put(expected_revision=...)``)."""
        parse = self._parser(model, format)
        page = await self.etcd.range(self._key(key))
        if not page.kvs:
            raise NotFoundError(f"config {key} does not exist (etcd revision {page.revision})")
        kv = page.kvs[0]
        value = await parse(key, kv.mod_revision, kv.value)
        return Versioned(key, value, kv.mod_revision)

    async def put(
        self,
        key: str,
        value: ConfigValue,
        format: ValueFormat = "yaml",
        expected_revision: int | None = None,
    ) -> KvPutResult:
        """Write ``value`` (a pydantic model, a dict or list, or text) as ``format``, exactly as the
        ``kv_put`` tool would: a str is validated as ``format``; a model, dict or list is serialised.
        ``expected_revision``: compare-and-swap (0: only if the key does not exist), else
        RevisionConflictError and nothing is written."""
        self.etcd  # noqa: B018 - says how to open the client rather than failing inside etcd
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        elif not isinstance(value, str | dict | list):
            raise InvalidArgumentError(
                f"the value for {key} is a {type(value).__name__}; pass a pydantic model, a dict, a list or a str"
            )
        return await self._center.put(key, value, format, expected_revision)

    # Live values -----------------------------------------------------------------------------------

    @overload
    def watch(
        self,
        key: str,
        model: None = None,
        *,
        format: ValueFormat | None = None,
        on_delete: OnDelete = "keep",
        timeout: float | None = None,
        cache_file: Path | str | None = None,
    ) -> AbstractAsyncContextManager[LiveConfig[Any]]: ...
    @overload
    def watch(
        self,
        key: str,
        model: type[M],
        *,
        format: ValueFormat | None = None,
        on_delete: OnDelete = "keep",
        timeout: float | None = None,
        cache_file: Path | str | None = None,
    ) -> AbstractAsyncContextManager[LiveConfig[M]]: ...
    def watch(
        self,
        key: str,
        model: type[BaseModel] | None = None,
        *,
        format: ValueFormat | None = None,
        on_delete: OnDelete = "keep",
        timeout: float | None = None,
        cache_file: Path | str | None = None,
    ) -> AbstractAsyncContextManager[LiveConfig[Any]]:
        """``key`` kept current while the ``async with`` body runs (see ``LiveConfig``).

        Entering waits for etcd's first answer: without ``cache_file`` as long as ``timeout`` says (None:
        until etcd answers), then UnavailableError. With ``cache_file`` (a copy written after every change)
        it waits ``timeout`` (None: the client's request timeout) and then starts from that copy, which the
        watch replaces as soon as etcd answers (``from_cache`` says which it is).
        """
        self._key(key)
        if on_delete not in ("keep", "raise"):
            raise InvalidArgumentError(f"on_delete must be 'keep' or 'raise', not {on_delete!r}")
        live: LiveConfig[Any] = LiveConfig(key, self._parser(model, format), on_delete, _path(cache_file))
        return self._running(live, timeout)

    @overload
    def watch_prefix(
        self,
        prefix: str,
        model: None = None,
        *,
        format: ValueFormat | None = None,
        timeout: float | None = None,
        cache_file: Path | str | None = None,
    ) -> AbstractAsyncContextManager[LiveConfigMap[Any]]: ...
    @overload
    def watch_prefix(
        self,
        prefix: str,
        model: type[M],
        *,
        format: ValueFormat | None = None,
        timeout: float | None = None,
        cache_file: Path | str | None = None,
    ) -> AbstractAsyncContextManager[LiveConfigMap[M]]: ...
    def watch_prefix(
        self,
        prefix: str,
        model: type[BaseModel] | None = None,
        *,
        format: ValueFormat | None = None,
        timeout: float | None = None,
        cache_file: Path | str | None = None,
    ) -> AbstractAsyncContextManager[LiveConfigMap[Any]]:
        """Every key under ``prefix`` kept current, as a mapping key -> value (see ``LiveConfigMap``);
        ``timeout`` and ``cache_file`` as for ``watch``."""
        self._key(prefix)
        return self._running(LiveConfigMap(prefix, self._parser(model, format), _path(cache_file)), timeout)

    def _running(self, live: L, timeout: float | None) -> AbstractAsyncContextManager[L]:
        if timeout is not None and timeout < 0:
            raise InvalidArgumentError(f"timeout must be 0 or more seconds, not {timeout}")
        etcd = self.etcd
        return following(live, etcd, etcd.request_timeout if timeout is None and live.cache_file else timeout)

    # Helpers ---------------------------------------------------------------------------------------

    @staticmethod
    def _key(key: str) -> bytes:
        if not key:
            raise InvalidArgumentError("the key must not be empty")
        return utf8(key, "the key")

    def _parser(self, model: type[BaseModel] | None, fmt: ValueFormat | None) -> Parse[Any]:
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise InvalidArgumentError(f"model must be a pydantic model class, not {model!r}")
        if fmt not in (None, "json", "yaml", "text"):
            raise InvalidArgumentError(f"format must be json, yaml or text, not {fmt!r}")
        workers = self._center.workers  # big values parse off the event loop

        async def parse(key: str, revision: int, raw: bytes) -> Any:
            return await workers.run(len(raw), parse_config, key, revision, raw, fmt, model)

        return parse


def _path(cache_file: Path | str | None) -> Path | None:
    return Path(cache_file) if cache_file is not None else None
