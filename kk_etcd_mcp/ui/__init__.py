"""The web console's built files (``index.html``, ``console.js``, ``console.css``), shipped in the wheel.

Built from ``console/`` at the repository root (``cd console && npm ci && npm run build``); never edit
them here. The HTTP transports serve them at ``/ui/`` (``mcp_server/http/console.py``).
"""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
