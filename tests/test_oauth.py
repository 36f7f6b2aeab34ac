"""The server as an OAuth 2.1 resource server, against a real OpenID provider (oidc-provider, from npm).

Tokens come from the provider with client credentials and a resource indicator (one client per
scope), and go through the real mcp client (streamable HTTP and SSE), mcp's own OAuth client (which
discovers everything from the 401), the official TypeScript SDK's client, and raw HTTP where the
status and challenge are what is judged. Tokens the provider would never issue (expired, another
issuer, unsigned, HMAC-signed with the public key) are signed here with the provider's real key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2
import jsonschema
import jwt
import mcp_types
import pytest
from conftest import EtcdCtl
from mcp import Client, MCPError
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp_helpers import HttpServer, call, call_error, http_client, http_server, sse_session
from node_tools import NodeModule, oidc_provider, typescript_client
from oidc_provider import INTROSPECTOR, SECRET, OidcProvider, new_key
from test_tokens_limits import raw_post

from kk_etcd_mcp.cli import build_parser
from kk_etcd_mcp.mcp_server.http import guarded, oauth_resource
from kk_etcd_mcp.settings import SettingsError, load_settings

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STATIC_TOKEN = "static-token-for-ops-0123456789"
WELL_KNOWN = "/.well-known/oauth-protected-resource"


@pytest.fixture(scope="session")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    node = oidc_provider()
    if isinstance(node, str):
        pytest.skip(node)
    provider = OidcProvider(node, tmp_path_factory.mktemp("oidc"))
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@dataclass
class OAuthServer:
    server: HttpServer
    log: Path
    audit: Path

    @property
    def url(self) -> str:
        return self.server.url

    def audit_entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()] if self.audit.exists() else []


def oauth_settings(oidc: OidcProvider, **settings: str) -> dict[str, str]:
    return {
        "oauth_issuer": oidc.issuer,
        "http_tokens": json.dumps([{"name": "ops", "scope": "admin", "token": STATIC_TOKEN}]),
        "hub": "false",
        "log_level": "DEBUG",
        **settings,
    }


@contextmanager
def start(
    etcd_endpoint: str, oidc: OidcProvider, tmp: Path, transport: str = "streamable-http", **settings: str
) -> Iterator[OAuthServer]:
    """A server accepting the provider's tokens (and the static admin token ``ops``); logs and audit in ``tmp``."""
    log, audit = tmp / f"server-{uuid4().hex[:6]}.log", tmp / f"audit-{uuid4().hex[:6]}.jsonl"
    with (
        log.open("wb") as stderr,
        http_server(
            etcd_endpoint, transport, stderr=stderr, audit_file=str(audit), **oauth_settings(oidc, **settings)
        ) as server,
    ):
        yield OAuthServer(server, log, audit)


@pytest.fixture(scope="module")
def served(etcd_endpoint: str, oidc: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthServer]:
    """One server for the tests that only present tokens: no limit on wrong ones (many are sent on purpose),
    and keys fetched again for every unknown one (the provider's keys rotate in a test of this session)."""
    settings = {"http_auth_failures_per_minute": "0", "http_rate_limit": "0", "oauth_jwks_refetch_interval": "0"}
    with start(etcd_endpoint, oidc, tmp_path_factory.mktemp("oauth"), **settings) as server:
        yield server


def challenge(response: httpx2.Response) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer k="v", ...`` header."""
    scheme, _, params = response.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Bearer"
    parsed = {}
    for part in params.split('", '):
        name, _, value = part.partition("=")
        parsed[name.strip()] = value.strip().strip('"')
    return parsed


def tool_names(tools: list[mcp_types.Tool]) -> set[str]:
    return {tool.name for tool in tools}


READ_TOOLS = {"kv_get", "kv_list", "service_list", "user_list", "cluster_status"}
WRITE_TOOLS = {"kv_put", "kv_delete", "service_register"}
ADMIN_TOOLS = {"user_add", "role_add", "auth_enable", "cluster_snapshot"}


# Each scope, through the mcp client ---------------------------------------------------------------


async def test_a_token_per_scope_works_and_is_limited_to_its_scope(
    served: OAuthServer, oidc: OidcProvider, key_prefix: str, etcdctl: EtcdCtl
) -> None:
    url = served.url
    etcdctl("put", f"{key_prefix}app", "v1")
    async with http_client(url, oidc.token("reader", url)) as client:
        names = tool_names((await client.list_tools()).tools)
        assert names >= READ_TOOLS and not names & (WRITE_TOOLS | ADMIN_TOOLS)
        assert (await call(client, "kv_get", key=f"{key_prefix}app"))["value"] == "v1"
        # Above its scope: 403 insufficient_scope, which the client reads as the call's error.
        with pytest.raises(MCPError) as refused:
            await client.call_tool("kv_put", {"key": f"{key_prefix}app", "value": "hacked"})
        text = str(refused.value)
        assert "kv_put needs scope 'write'" in text and "reader" in text and "etcd:write" in text
        assert (await call(client, "kv_get", key=f"{key_prefix}app"))["value"] == "v1"  # the session goes on

    async with http_client(url, oidc.token("writer", url)) as client:
        names = tool_names((await client.list_tools()).tools)
        assert names >= READ_TOOLS | WRITE_TOOLS and not names & ADMIN_TOOLS
        put = await call(client, "kv_put", key=f"{key_prefix}app", value="by-writer")
        with pytest.raises(MCPError, match="etcd:admin"):
            await client.call_tool("role_add", {"name": f"r{uuid4().hex[:8]}", "dry_run": True})

    async with http_client(url, oidc.token("admin", url)) as client:
        assert tool_names((await client.list_tools()).tools) >= READ_TOOLS | WRITE_TOOLS | ADMIN_TOOLS
        planned = await call(client, "role_add", name=f"r{uuid4().hex[:8]}", dry_run=True)
        assert planned["dry_run"] is True

    assert etcdctl("get", "--print-value-only", f"{key_prefix}app").stdout.strip() == "by-writer"
    # The audit trail's client is the token's subject; refusals are recorded as the tool records them.
    entries = served.audit_entries()
    [written] = [e for e in entries if e["tool"] == "kv_put" and e.get("revision") == put["revision"]]
    assert written["client"] == "writer" and written["outcome"] == "ok"
    assert any(e["tool"] == "kv_put" and e["client"] == "reader" and e["outcome"] == "refused" for e in entries)
    assert any(e["tool"] == "role_add" and e["client"] == "writer" and e["outcome"] == "refused" for e in entries)
    assert any(e["tool"] == "role_add" and e["client"] == "admin" and e["outcome"] == "dry_run" for e in entries)


async def test_insufficient_scope_names_the_scope_needed(served: OAuthServer, oidc: OidcProvider) -> None:
    url = served.url
    # A valid token with none of our scopes: 403 for any request, asking for the least one.
    stranger = raw_post(url, oidc.token("stranger", url))
    assert stranger.status_code == 403
    params = challenge(stranger)
    assert params["error"] == "insufficient_scope" and params["scope"] == "etcd:read"
    assert params["resource_metadata"] == served.server.url.replace("/mcp", f"{WELL_KNOWN}/mcp")

    # A tool call above the token's scope, raw: 403 with the scope it needs, the body a JSON-RPC error.
    reader = oidc.token("reader", url)
    opened = raw_post(url, reader)
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
    call_put = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "kv_put", "arguments": {}}}
    refused = raw_post(url, reader, call_put, **session)
    assert refused.status_code == 403
    params = challenge(refused)
    assert params["error"] == "insufficient_scope" and params["scope"] == "etcd:write"
    assert "kv_put needs scope 'write'" in params["error_description"]
    body = refused.json()
    assert body["id"] == 7 and "kv_put needs scope 'write'" in body["error"]["message"]
    # Within scope the same session answers as usual.
    call_get = {"jsonrpc": "2.0", "id": 8, "method": "tools/list"}
    assert raw_post(url, reader, call_get, **session).status_code == 200


async def test_a_session_belongs_to_the_client_that_opened_it(served: OAuthServer, oidc: OidcProvider) -> None:
    url = served.url
    opened = raw_post(url, oidc.token("admin", url))
    session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert raw_post(url, oidc.token("reader", url), listing, **session).status_code == 404
    assert raw_post(url, STATIC_TOKEN, listing, **session).status_code == 404
    # A new token of the same client (a refresh) keeps the session.
    assert raw_post(url, oidc.token("admin", url), listing, **session).status_code == 200


# Refused tokens: 401 and the challenge --------------------------------------------------------------


def _forged_hmac(oidc: OidcProvider, claims: dict[str, Any]) -> str:
    """HS256 with the provider's public key as the secret: the classic algorithm-confusion attack."""
    public = {k: v for k, v in oidc.keys[0].items() if k != "d"}
    header = {"alg": "HS256", "kid": public["kid"], "typ": "at+jwt"}

    def part(data: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part(claims)}"
    signature = hmac.new(json.dumps(public).encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _unsigned(claims: dict[str, Any], kid: str) -> str:
    return jwt.encode(claims, None, algorithm="none", headers={"kid": kid})


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "etcd:admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_refused_tokens_get_401_with_the_challenge(served: OAuthServer, oidc: OidcProvider) -> None:
    url = served.url
    now = int(time.time())
    metadata_url = url.replace("/mcp", f"{WELL_KNOWN}/mcp")

    # No token: 401, the challenge naming the metadata, no error code (RFC 6750 §3.1).
    missing = raw_post(url, None)
    assert missing.status_code == 401
    assert challenge(missing) == {"resource_metadata": metadata_url}
    assert oidc.issuer in missing.json()["message"]

    kid = oidc.keys[0]["kid"]
    refused = {
        "expired": (oidc.sign(oidc.claims(url, exp=now - 3600, iat=now - 4000)), "expired"),
        "not yet valid": (oidc.sign(oidc.claims(url, nbf=now + 3600)), "not valid yet"),
        "another audience": (oidc.token("reader", "http://127.0.0.1:1/mcp"), "issued for"),
        "another issuer": (oidc.sign(oidc.claims(url, iss="https://evil.example")), "issued by"),
        "no audience": (oidc.sign(oidc.claims(url, aud=None)), "no aud claim"),
        "no expiry": (oidc.sign(oidc.claims(url, exp=None)), "no exp claim"),
        "unsigned": (_unsigned(oidc.claims(url), kid), "unsigned"),
        "hmac with the public key": (_forged_hmac(oidc, oidc.claims(url)), "HS256"),
        "tampered": (_tampered(oidc.token("reader", url)), "signature does not verify"),
        "unknown key": (oidc.sign(oidc.claims(url), kid="no-such-key"), "does not publish"),
        "an id token type": (oidc.sign(oidc.claims(url), typ="logout+jwt"), "type"),
        "sender-constrained": (oidc.sign(oidc.claims(url, cnf={"jkt": "x"})), "bound to a key"),
        "opaque, no introspection": ("0paque-token-without-dots", "not a JWT"),
        "a wrong static token": (STATIC_TOKEN + "x", "not a JWT"),
        "not even a JWT": ("a.b.c", "not a JWT"),
    }
    for case, (token, reason) in refused.items():
        response = raw_post(url, token)
        assert response.status_code == 401, (case, response.text)
        params = challenge(response)
        assert params["error"] == "invalid_token", case
        assert params["resource_metadata"] == metadata_url, case
        assert reason in params["error_description"], (case, params)
        assert response.json() == {"error": "invalid_token", "message": response.json()["message"]}
        assert reason in response.json()["message"], case
        assert token not in response.text, case

    # A clock a little off is tolerated; the static token works beside OAuth.
    assert raw_post(url, oidc.sign(oidc.claims(url, exp=now - 5))).status_code == 200
    assert raw_post(url, STATIC_TOKEN).status_code == 200

    log = served.log.read_text(errors="replace")
    assert "invalid access token" in log
    for token, _ in refused.values():
        assert token not in log


async def test_the_metadata_document_follows_rfc_9728(served: OAuthServer, oidc: OidcProvider) -> None:
    base = served.url.removesuffix("/mcp")
    with httpx2.Client(trust_env=False, timeout=30) as http:
        documents = [http.get(f"{base}{WELL_KNOWN}/mcp"), http.get(f"{base}{WELL_KNOWN}")]
        preflight = http.options(
            f"{base}{WELL_KNOWN}/mcp",
            headers={"Origin": "http://localhost:6274", "Access-Control-Request-Method": "GET"},
        )
    for response in documents:
        assert response.status_code == 200  # without a token
        assert response.headers["content-type"].startswith("application/json")
        document = response.json()
        jsonschema.validate(document, RFC_9728_SCHEMA)
        # §3.3: the resource is the URL the well-known path was built from, i.e. the MCP endpoint.
        assert document["resource"] == served.url
        assert document["authorization_servers"] == [oidc.issuer]
        assert document["scopes_supported"] == ["etcd:read", "etcd:write", "etcd:admin"]
        assert document["bearer_methods_supported"] == ["header"]
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"


# RFC 9728 §2: the metadata parameters and their types; extensions are allowed (RFC 9728 §2, last paragraph).
_URL = {"type": "string", "pattern": "^https?://"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
RFC_9728_SCHEMA = {
    "type": "object",
    "required": ["resource"],
    "properties": {
        "resource": _URL,
        "authorization_servers": {"type": "array", "items": _URL, "minItems": 1},
        "jwks_uri": _URL,
        "scopes_supported": _STRINGS,
        "bearer_methods_supported": {"type": "array", "items": {"enum": ["header", "body", "query"]}},
        "resource_signing_alg_values_supported": {"type": "array", "items": {"not": {"const": "none"}}},
        "resource_name": {"type": "string"},
        "resource_documentation": _URL,
        "resource_policy_uri": _URL,
        "resource_tos_uri": _URL,
        "tls_client_certificate_bound_access_tokens": {"type": "boolean"},
        "authorization_details_types_supported": _STRINGS,
        "dpop_signing_alg_values_supported": _STRINGS,
        "dpop_bound_access_tokens_required": {"type": "boolean"},
    },
}


# Keys, the provider's availability, introspection ---------------------------------------------------


async def test_key_rotation_at_the_provider_is_picked_up(
    etcd_endpoint: str, oidc: OidcProvider, tmp_path: Path
) -> None:
    with start(etcd_endpoint, oidc, tmp_path, oauth_jwks_refetch_interval="0") as served:
        before = oidc.token("reader", served.url)
        assert raw_post(served.url, before).status_code == 200
        oidc.rotate()  # a new key signs from now on; the old one is still published
        after = oidc.token("reader", served.url)
        assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
        assert raw_post(served.url, after).status_code == 200  # the unknown key made the server fetch the keys again
        assert raw_post(served.url, before).status_code == 200
        assert served.log.read_text().count("fetched 2 signing keys") == 1


async def test_the_provider_down_neither_stops_known_keys_nor_hangs_requests(
    etcd_endpoint: str, oidc: OidcProvider, tmp_path: Path
) -> None:
    introspection = {
        "oauth_introspection_url": f"{oidc.issuer}/token/introspection",
        "oauth_introspection_client_id": INTROSPECTOR,
        "oauth_introspection_client_secret": SECRET,
    }
    settings = {"oauth_timeout": "1", "oauth_jwks_refetch_interval": "0", **introspection}
    with start(etcd_endpoint, oidc, tmp_path, **settings) as served:
        url = served.url
        known = oidc.token("reader", url)
        opaque = oidc.token("opaque-writer", url)
        assert raw_post(url, known).status_code == 200  # its key is fetched and kept
        unknown_key = new_key()
        stranger = jwt.encode(
            oidc.claims(url),
            jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(unknown_key)),
            algorithm="ES256",
            headers={"kid": unknown_key["kid"]},
        )
        with oidc.frozen():  # accepts connections, answers nothing
            assert raw_post(url, known).status_code == 200
            for token in (stranger, opaque):  # a key to fetch, a token to introspect: bounded by oauth_timeout
                response = raw_post(url, token)
                assert response.status_code == 503, response.text
                assert "within 1 s" in response.json()["message"]
                assert response.headers["Retry-After"]
                assert "WWW-Authenticate" not in response.headers
        oidc.stop()  # down: connections refused
        try:
            assert raw_post(url, known).status_code == 200
            assert raw_post(url, opaque).status_code == 503
        finally:
            oidc.start()
        assert raw_post(url, opaque).status_code == 401  # back, and it forgot its opaque tokens on restart
    log = served.log.read_text()
    assert SECRET not in log and opaque not in log and known not in log


async def test_opaque_tokens_through_introspection(
    etcd_endpoint: str, oidc: OidcProvider, key_prefix: str, etcdctl: EtcdCtl, tmp_path: Path
) -> None:
    with start(
        etcd_endpoint,
        oidc,
        tmp_path,
        oauth_introspection_url=f"{oidc.issuer}/token/introspection",
        oauth_introspection_client_id=INTROSPECTOR,
        oauth_introspection_client_secret=SECRET,
    ) as served:
        url = served.url
        opaque = oidc.token("opaque-writer", url)
        assert opaque.count(".") == 0
        async with http_client(url, opaque) as client:
            names = tool_names((await client.list_tools()).tools)
            assert names >= WRITE_TOOLS and not names & ADMIN_TOOLS
            put = await call(client, "kv_put", key=f"{key_prefix}o", value="opaque")
        async with http_client(url, oidc.token("reader", url)) as client:  # JWTs are still checked locally
            assert (await call(client, "kv_get", key=f"{key_prefix}o"))["value"] == "opaque"
        for token, reason in (
            (oidc.token("opaque-writer", "http://127.0.0.1:1/mcp"), "issued for"),
            ("made-up-opaque-token", "not active"),
        ):
            response = raw_post(url, token)
            assert response.status_code == 401 and reason in challenge(response)["error_description"]
    # A client-credentials token names no subject: its client ID names the client.
    [written] = [e for e in served.audit_entries() if e["tool"] == "kv_put" and e.get("revision") == put["revision"]]
    assert written["client"] == "opaque-writer"
    log = served.log.read_text()
    assert SECRET not in log and opaque not in log


async def test_oauth_failures_count_towards_the_per_address_limit(
    etcd_endpoint: str, oidc: OidcProvider, tmp_path: Path
) -> None:
    settings = {"http_auth_failures_per_minute": "2", "http_refusal_log_interval": "60"}
    with start(etcd_endpoint, oidc, tmp_path, **settings) as served:
        url = served.url
        now = int(time.time())
        expired = [oidc.sign(oidc.claims(url, exp=now - 3600, jti=str(n))) for n in range(6)]
        statuses = [raw_post(url, token).status_code for token in expired]
        assert statuses == [401, 401, 429, 429, 429, 429]
        assert raw_post(url, oidc.token("admin", url)).status_code == 429  # before any token is looked at
    log = served.log.read_text()
    assert log.count("invalid access token") == 1, log  # one line per kind within the interval
    assert log.count("too many bad tokens") == 1, log
    assert not any(token in log for token in expired)


async def test_made_up_key_ids_do_not_make_the_server_hammer_the_provider(
    etcd_endpoint: str, oidc: OidcProvider, tmp_path: Path
) -> None:
    """And ``public_url`` is the resource (and an accepted Host), as behind a proxy."""
    public = "http://etcd-mcp.example.test:8443"
    settings = {"public_url": public, "oauth_jwks_refetch_interval": "3600", "http_auth_failures_per_minute": "0"}
    with start(etcd_endpoint, oidc, tmp_path, **settings) as served:
        resource = f"{public}/mcp"
        proxied = {"Host": "etcd-mcp.example.test:8443"}
        assert raw_post(served.url, oidc.token("reader", resource), **proxied).status_code == 200
        assert raw_post(served.url, oidc.token("reader", served.url), **proxied).status_code == 401  # not for us
        assert raw_post(served.url, oidc.token("reader", resource), Host="evil.example").status_code in (403, 421)
        for n in range(10):
            made_up = oidc.sign(oidc.claims(resource), kid=f"made-up-{n}")
            response = raw_post(served.url, made_up, **proxied)
            assert response.status_code == 401 and "does not publish" in response.json()["message"]
        with httpx2.Client(trust_env=False, timeout=30) as http:
            document = http.get(served.url.replace("/mcp", f"{WELL_KNOWN}/mcp")).json()
        assert document["resource"] == resource
    assert served.log.read_text().count("signing keys of") == 1  # one fetch, however many unknown key IDs


# Outside clients that discover everything from the 401 --------------------------------------------------


class _MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def test_mcp_client_discovers_the_provider_and_gets_its_own_token(
    served: OAuthServer, oidc: OidcProvider, key_prefix: str
) -> None:
    """mcp's OAuth client: 401 -> the metadata named in the challenge -> the provider's metadata -> a token
    for this resource with client credentials -> the request again."""
    auth = ClientCredentialsOAuthProvider(
        server_url=served.url,
        storage=_MemoryStorage(),
        client_id="everything",
        client_secret=SECRET,
        issuer=oidc.issuer,
    )
    async with (
        httpx2.AsyncClient(auth=auth, timeout=30, trust_env=False) as http,
        Client(streamable_http_client(served.url, http_client=http)) as client,
    ):
        assert tool_names((await client.list_tools()).tools) >= ADMIN_TOOLS
        await call(client, "kv_put", key=f"{key_prefix}discovered", value="1")
    granted = auth.context.current_tokens
    assert granted is not None and set((granted.scope or "").split()) == {"etcd:read", "etcd:write", "etcd:admin"}
    claims = jwt.decode(granted.access_token, options={"verify_signature": False})
    assert claims["aud"] == served.url  # the resource indicator it asked for


TS_CLIENT = """
const [entry, url, issuer, clientId, secret] = process.argv.slice(2);
const { Client, StreamableHTTPClientTransport, ClientCredentialsProvider } = await import(entry);
const authProvider = new ClientCredentialsProvider({ clientId, clientSecret: secret, expectedIssuer: issuer });
const client = new Client({ name: 'ts-oauth-test', version: '0' });
await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider }));
const tools = (await client.listTools()).tools.map((tool) => tool.name);
const listed = await client.callTool({ name: 'kv_list', arguments: { prefix: 'no-such-prefix/' } });
console.log(JSON.stringify({ tools, isError: listed.isError ?? false }));
await client.close();
"""


@pytest.fixture(scope="session")
def ts_client() -> NodeModule:
    found = typescript_client()
    if isinstance(found, str):
        pytest.skip(found)
    return found


def test_typescript_sdk_client_discovers_the_provider(
    served: OAuthServer, oidc: OidcProvider, ts_client: NodeModule, tmp_path: Path
) -> None:
    script = tmp_path / "client.mjs"
    script.write_text(TS_CLIENT)
    done = subprocess.run(
        [str(ts_client.node), str(script), ts_client.entry.as_uri(), served.url, oidc.issuer, "reader", SECRET],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": str(ts_client.node.parent), "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["tools"]) >= READ_TOOLS and not set(result["tools"]) & WRITE_TOOLS
    assert result["isError"] is False


# SSE ------------------------------------------------------------------------------------------------


async def test_sse_with_oauth(etcd_endpoint: str, oidc: OidcProvider, key_prefix: str, tmp_path: Path) -> None:
    with start(etcd_endpoint, oidc, tmp_path, "sse") as served:
        url = served.url
        with httpx2.Client(trust_env=False, timeout=30) as http:
            missing = http.get(url)
        assert missing.status_code == 401
        assert challenge(missing)["resource_metadata"] == url.replace("/sse", f"{WELL_KNOWN}/sse")
        async with sse_session(url, oidc.token("reader", url)) as client:
            names = tool_names((await client.list_tools()).tools)
            assert names >= READ_TOOLS and not names & WRITE_TOOLS
            # Over SSE an error status would end the client's connection: the tool's own refusal instead.
            text = await call_error(client, "kv_put", key=f"{key_prefix}s", value="x")
            assert "needs scope 'write'" in text
            await call(client, "kv_list", prefix=key_prefix)


# Settings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"oauth_issuer": "http://idp.example.com"}, "must be https://"),
        ({"oauth_issuer": "https://idp.example.com?x=1"}, "no query or fragment"),
        ({"oauth_issuer": "idp.example.com"}, "is not an http:// or https:// URL"),
        ({"oauth_issuer": "https://idp.example.com", "host": "0.0.0.0", "transport": "sse"}, "set public_url"),
        ({"oauth_scope_write": "etcd:read"}, "three different scopes"),
        ({"oauth_scope_admin": "etcd admin"}, "one non-empty word"),
        ({"oauth_introspection_url": "https://idp.example.com/introspect"}, "oauth_introspection_client_id"),
    ],
)
def test_bad_oauth_settings_are_one_clear_sentence(settings: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        load_settings(env={f"KK_ETCD_{k.upper()}": v for k, v in settings.items()})


def test_oauth_alone_allows_a_non_loopback_bind() -> None:
    settings = load_settings(
        env={
            "KK_ETCD_TRANSPORT": "streamable-http",
            "KK_ETCD_HOST": "0.0.0.0",
            "KK_ETCD_OAUTH_ISSUER": "https://idp.example.com/realms/ops",
            "KK_ETCD_PUBLIC_URL": "https://etcd-mcp.example.com/",
        }
    )
    assert settings.oauth and settings.base_url() == "https://etcd-mcp.example.com"
    assert settings.oauth_issuer == "https://idp.example.com/realms/ops"  # kept exactly: compared with iss


def test_the_http_guards_never_take_oauth_tokens_without_the_scope_step() -> None:
    settings = load_settings(
        env={"KK_ETCD_TRANSPORT": "streamable-http", "KK_ETCD_OAUTH_ISSUER": "https://idp.example.com/realms/ops"}
    )

    async def endpoints(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("never reached")

    with pytest.raises(ValueError, match="needs scope_check"):
        guarded(endpoints, settings, oauth=oauth_resource(settings))


def test_the_introspection_secret_has_no_flag_and_is_never_shown(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--oauth-introspection-client-secret", "x"])
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file \nsecond line\n")
    env = {
        "KK_ETCD_OAUTH_ISSUER": "https://idp.example.com",
        "KK_ETCD_OAUTH_INTROSPECTION_URL": "https://idp.example.com/introspect",
        "KK_ETCD_OAUTH_INTROSPECTION_CLIENT_ID": "kk-etcd-mcp",
        "KK_ETCD_OAUTH_INTROSPECTION_CLIENT_SECRET_FILE": str(secret_file),
    }
    settings = load_settings(env=env)
    assert settings.oauth_introspection_secret() == "from-a-file"
    assert "from-a-file" not in repr(settings) and "from-a-file" not in str(settings.model_dump())
    with pytest.raises(SettingsError, match="not both") as refused:
        load_settings(env=env | {"KK_ETCD_OAUTH_INTROSPECTION_CLIENT_SECRET": "s3cret-value"})
    assert "s3cret-value" not in str(refused.value)
