"""The MCP surface: thin tools over the core packages, the guards, the transports."""

from .app import build_server
from .runner import serve

__all__ = ["build_server", "serve"]
