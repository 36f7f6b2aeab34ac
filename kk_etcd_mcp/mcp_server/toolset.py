"""Registering tools with their annotations, honouring ``read_only``."""

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

from .errors import translate_errors


class ToolRegistrar:
    """Adds tools to an MCPServer; with ``read_only`` only read-only tools are offered at all."""

    def __init__(self, server: MCPServer, *, read_only: bool) -> None:
        self.server = server
        self.read_only = read_only
        self.names: list[str] = []

    def add(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        title: str,
        read_only: bool,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
    ) -> None:
        if self.read_only and not read_only:
            return
        annotations = ToolAnnotations(
            title=title,
            read_only_hint=read_only,
            destructive_hint=destructive if not read_only else False,
            idempotent_hint=idempotent or read_only,
            open_world_hint=open_world,  # etcd is a closed world; probing registered services is not
        )
        self.server.add_tool(translate_errors(fn), title=title, annotations=annotations, structured_output=True)
        self.names.append(fn.__name__)
