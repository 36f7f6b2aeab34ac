"""Whose call it is fails closed: a server whose transport named no client offers and runs nothing.

The stdio transport names its client itself (``STDIO``, every scope) and the HTTP middleware names each
request's; a server run any other way (here: mcp's in-process client, which no transport of ours wraps)
gets no scope, instead of falling back to the stdio admin.
"""

from pathlib import Path

from conftest import EtcdCtl
from mcp import Client
from mcp_types import TextContent

from kk_etcd_mcp.etcd import EtcdClient
from kk_etcd_mcp.mcp_server.app import build_server
from kk_etcd_mcp.mcp_server.identity import STDIO, acting_as
from kk_etcd_mcp.settings import Settings


def _text(content: list[object]) -> str:
    return " ".join(part.text for part in content if isinstance(part, TextContent))


async def test_a_server_whose_transport_named_no_client_refuses_every_tool(
    etcd_endpoint: str, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    key = f"{key_prefix}app/x"
    etcdctl("put", key, "kept")
    settings = Settings(endpoints=[etcd_endpoint], audit_file=tmp_path / "audit.jsonl")
    async with EtcdClient([etcd_endpoint]) as etcd:
        server = build_server(settings, etcd)

        async with Client(server) as client:  # no identity set: no scope
            assert (await client.list_tools()).tools == []
            refused = await client.call_tool("kv_get", {"key": key})
            assert refused.is_error
            assert "kv_get needs scope 'read', and this client (unidentified) has no scope" in _text(refused.content)
            deleted = await client.call_tool("kv_delete", {"key": key})
            assert deleted.is_error and "has no scope" in _text(deleted.content)
        assert etcdctl("get", key, "--print-value-only").stdout.strip() == "kept"

        with acting_as(STDIO):  # what the stdio transport does: the same server then serves its client
            async with Client(server) as client:
                assert "kv_delete" in {tool.name for tool in (await client.list_tools()).tools}
                read = await client.call_tool("kv_get", {"key": key})
                assert not read.is_error and read.structured_content is not None
                assert read.structured_content["value"] == "kept"
