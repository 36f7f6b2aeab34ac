"""The console's views as MCP Apps (``services.html``, ``history.html``, ``review.html``, ``cluster.html``):
each one HTML document with its script and styles inlined, shipped in the wheel.

Built from ``console/`` at the repository root with the web console (``cd console && npm ci && npm run
build``); never edit them here. ``mcp_server/apps.py`` serves them as ``ui://`` resources.
"""

from pathlib import Path

DOCUMENTS = Path(__file__).resolve().parent
