"""Argument completion (``completion/complete``) for prompts and resource templates.

What completes:

- keys (``key`` of review_config_change, ``key`` of ``etcd://kv/{+key}``): existing keys starting with
  what was typed, only where the key policy lets the kv tools read (denied keys never appear, nor the
  registry's own keys). When at most 100 keys match, they come whole; when more match, the next path
  segment instead (``app/`` → ``app/db/``, ``app/web/``, ``app/version``), so a large tree is walked
  a level at a time.
- services (``name`` of diagnose_service/onboard_service, ``name`` of ``kk://services/{name}``): the
  names of registered services, from the registration keys.
- users and roles: any argument named ``user``/``username`` or ``role``, of a prompt or a template.
- choices declared in a prompt file (``type`` of onboard_service: http, grpc, tcp).

Completion is a typing aid: when etcd refuses (no permission, authentication, unavailable) the answer
is an empty list, never an error. A source whose toolset is off completes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from itertools import product

from mcp.server.mcpserver import MCPServer
from mcp_types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from ..access import AccessService
from ..config_center import KeyPolicy
from ..config_center.keys import Range, show
from ..errors import ForbiddenKeyError, KkEtcdError
from ..etcd import EtcdClient, prefix_end
from ..registry import RegistryKeys
from ..registry.keys import WIRE_TYPES
from .prompts import CompletionKind, PromptTemplate
from .resources import KV_TEMPLATE, SERVICE_TEMPLATE

log = logging.getLogger(__name__)

MAX_VALUES = 100  # the MCP limit per completion result
_PAGE = 200  # keys per range read while collecting segments or names
_MAX_READS = 10  # range reads per completion: a completion must stay quick on a huge key space

TEMPLATE_ARGUMENTS: dict[tuple[str, str], CompletionKind] = {
    (KV_TEMPLATE, "key"): "keys",
    (SERVICE_TEMPLATE, "name"): "services",
}
ARGUMENTS_BY_NAME: dict[str, CompletionKind] = {"user": "users", "username": "users", "role": "roles"}

EMPTY = Completion(values=[], total=0, has_more=False)


def _end(end: bytes | None) -> bytes:
    return b"\0" if end is None else end  # etcd's "to the last key"


def _segment(key: bytes, offset: int) -> bytes:
    """``key`` up to and including the first ``/`` at or after ``offset``; the whole key if none."""
    cut = key.find(b"/", offset)
    return key if cut < 0 else key[: cut + 1]


def _matching(candidates: Iterable[str], typed: str) -> Completion:
    values = sorted({c for c in candidates if c.startswith(typed)})
    return Completion(values=values[:MAX_VALUES], total=len(values), has_more=len(values) > MAX_VALUES)


class Completer:
    """Answers completion requests from the sources the server offers (None: that toolset is off)."""

    def __init__(
        self,
        etcd: EtcdClient,
        prompts: Sequence[PromptTemplate],
        *,
        key_policy: KeyPolicy | None = None,
        registry_keys: RegistryKeys | None = None,
        access: AccessService | None = None,
    ) -> None:
        self.etcd = etcd
        self.prompts = {p.name: p for p in prompts}
        self.key_policy = key_policy
        self.registry_keys = registry_keys
        self.access = access

    def source(
        self, ref: PromptReference | ResourceTemplateReference, argument: str
    ) -> CompletionKind | list[str] | None:
        """What completes ``argument`` of ``ref``: a kind, a fixed list of choices, or nothing."""
        if isinstance(ref, PromptReference):
            prompt = self.prompts.get(ref.name)
            spec = prompt.argument(argument) if prompt is not None else None
            if spec is None:
                return None
            if spec.choices is not None:
                return spec.choices
            if spec.complete is not None:
                return spec.complete
        elif (kind := TEMPLATE_ARGUMENTS.get((ref.uri, argument))) is not None:
            return kind
        return ARGUMENTS_BY_NAME.get(argument)

    async def complete(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None = None,
    ) -> Completion:
        source = self.source(ref, argument.name)
        if source is None:
            return EMPTY
        if isinstance(source, list):
            return _matching(source, argument.value)
        lookup = self._lookups().get(source)
        if lookup is None:
            return EMPTY
        try:
            return await lookup(argument.value)
        except KkEtcdError as exc:  # a typing aid must not fail: no completions instead
            log.debug("no %s completions for %r: %s", source, argument.value, exc)
            return EMPTY

    def _lookups(self) -> dict[CompletionKind, Callable[[str], Awaitable[Completion]]]:
        lookups: dict[CompletionKind, Callable[[str], Awaitable[Completion]]] = {}
        if self.key_policy is not None:
            lookups["keys"] = self.keys
        if self.registry_keys is not None:
            lookups["services"] = self.services
        if self.access is not None:
            lookups["users"] = self.users
            lookups["roles"] = self.roles
        return lookups

    # Keys ------------------------------------------------------------------------------------------

    async def keys(self, typed: str) -> Completion:
        assert self.key_policy is not None
        try:
            ranges = self.key_policy.readable(typed.encode(), include_internal=False)
        except ForbiddenKeyError:
            return EMPTY
        found: list[str] = []
        total = 0
        for lo, hi in ranges:
            room = MAX_VALUES - len(found)
            # limit+count: the first keys and how many there are in one read (count_only once full)
            page = await self.etcd.range(lo, _end(hi), limit=room if room else 1, keys_only=True, count_only=not room)
            total += page.count
            found.extend(show(kv.key) for kv in page.kvs[:room])
        if total <= MAX_VALUES:
            return Completion(values=found, total=total, has_more=False)
        segments, complete = await self._distinct_segments(ranges, len(typed.encode()))
        values = [show(s) for s in segments]
        return Completion(
            values=values[:MAX_VALUES],
            total=len(values) if complete else None,
            has_more=not complete or len(values) > MAX_VALUES,
        )

    async def _distinct_segments(self, ranges: Sequence[Range], offset: int) -> tuple[list[bytes], bool]:
        """The distinct next segments of the keys in ``ranges``, skipping over each folder once seen.

        Returns the segments (in key order, at most one past MAX_VALUES) and whether all were seen.
        """
        segments: list[bytes] = []
        reads = 0
        for lo, hi in ranges:
            start = lo
            while True:
                if len(segments) > MAX_VALUES or reads == _MAX_READS:
                    return segments, False
                page = await self.etcd.range(start, _end(hi), limit=_PAGE, keys_only=True)
                reads += 1
                for kv in page.kvs:
                    segment = _segment(kv.key, offset)
                    if not segments or segments[-1] != segment:  # a folder may also span two ranges
                        segments.append(segment)
                if not page.more or not page.kvs:
                    break
                last = segments[-1]
                start = prefix_end(last) if last.endswith(b"/") else page.kvs[-1].key + b"\0"
                if start == b"\0" or (hi is not None and start >= hi):
                    break
        return segments, True

    # Services, users, roles ------------------------------------------------------------------------

    async def services(self, typed: str) -> Completion:
        assert self.registry_keys is not None
        names: set[str] = set()
        complete = True
        keys = self.registry_keys
        for wire, root in product(WIRE_TYPES.values(), (keys.registrations, keys.extensions)):
            section = f"{root}{wire}/".encode()
            start = section + typed.encode()
            segments, seen_all = await self._distinct_segments([(start, prefix_end(start))], len(section))
            complete = complete and seen_all
            # a registration key is <section><name>/<addr>: only folders are names
            names.update(show(s[len(section) : -1]) for s in segments if s.endswith(b"/"))
        result = _matching(names, typed)
        if not complete:
            return Completion(values=result.values, total=None, has_more=True)
        return result

    async def users(self, typed: str) -> Completion:
        assert self.access is not None
        return _matching(await self.access.auth.user_list(), typed)

    async def roles(self, typed: str) -> Completion:
        assert self.access is not None
        return _matching(await self.access.auth.role_list(), typed)


def register_completions(server: MCPServer, completer: Completer) -> None:
    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # mcp leaves it untyped
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        return await completer.complete(ref, argument, context)
