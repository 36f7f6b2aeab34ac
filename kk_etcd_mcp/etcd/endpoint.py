"""An etcd endpoint URL, parsed. Kept apart from the channel setup (``connection.py``) so that the settings
can check endpoints without importing etcd3aio and grpc: ``kk-etcd-mcp --help`` stays quick."""

from __future__ import annotations

from urllib.parse import urlsplit

from .types import Endpoint

DEFAULT_PORT = 2379


def parse_endpoint(url: str) -> Endpoint:
    """``http://host:port``, ``https://host:port`` or ``host:port`` (plain) to an :class:`Endpoint`."""
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"etcd endpoint {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"etcd endpoint {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"etcd endpoint {url!r} must be scheme://host:port, without path or credentials")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"etcd endpoint {url!r} has an invalid port") from None
    host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
    return Endpoint(url=f"{parts.scheme}://{parts.netloc}", host=host, port=port, tls=parts.scheme == "https")
