"""The MCP surface: thin tools over the core packages, the guards, the transports.

``build_server`` makes the MCP server over services the caller built; the application
(``kk_etcd_mcp.app``) builds those, runs the server on its transport and stops it.
"""

from .app import build_server

__all__ = ["build_server"]
