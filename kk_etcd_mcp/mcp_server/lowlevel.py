"""Where kk-etcd-mcp reaches past mcp's public MCPServer API, and why (mcp 2.3).

MCPServer registers no handler for ``resources/subscribe``, ``resources/unsubscribe`` or
``logging/setLevel``, and a resource template has one fixed mime type, while an etcd value's type is
known only once it is read. The lowlevel ``Server`` behind it has a public API for all of that
(``add_request_handler``, ``get_request_handler``, ``middleware``); only the way to it is private.

A handler gets a per-request ``ServerSession``; resource updates and log messages are sent later,
outside any request, on the client's connection, which that session keeps privately. The connection
is also what tells us a client went away (its ``exit_stack`` unwinds when it closes).

MCPServer also builds every tool itself (``add_tool`` takes a function); ``install_tool`` puts in one
of ours, whose ``run`` wraps mcp's own (validation, resolvers, body) in the call guard.

These accesses live here so an mcp upgrade has one place to look at. (``stdio.py`` reaches the
lowlevel server too, to run it on our own streams.)
"""

from typing import Any

from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool


def lowlevel_server(server: MCPServer) -> Server[Any]:
    lowlevel: Server[Any] = server._lowlevel_server
    return lowlevel


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    """The connection a request came in on: it outlives the request and can notify the client later."""
    connection: Connection = ctx.session._connection
    return connection


def tool_of(server: MCPServer, name: str) -> Tool | None:
    """The tool registered under ``name`` (ours are ``toolset.GuardedTool``), for a check made before the call."""
    return server._tool_manager.get_tool(name)


def install_tool(server: MCPServer, tool: Tool) -> None:
    """Add a ``Tool`` built by us: MCPServer.add_tool only takes a function and builds a plain Tool, while
    ours (``toolset.GuardedTool``) runs validation and resolvers inside the call guard."""
    server._tool_manager._tools[tool.name] = tool
