"""A real OpenID provider for the OAuth tests: oidc-provider (from npm) run by Node (``oidc/provider.mjs``).

One provider per test session (per xdist worker): it issues access tokens with client credentials
and a resource indicator (RFC 8707), one client per scope, as JWTs or (client ``opaque-writer``)
opaque tokens it answers introspection for. Its signing keys are made here, so a test can rotate
them (restart with a new key first) and sign a token of its own with the provider's real key when
it needs one the provider would never issue (expired, another issuer).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from node_tools import NodeModule

from kk_etcd_mcp.etcd.embedded import accepts_connections, free_port

SCRIPT = Path(__file__).parent / "oidc" / "provider.mjs"
SECRET = "client-secret-0123456789"
INTROSPECTOR = "kk-etcd-mcp"
# client ID -> the scopes it is granted (and the token format)
CLIENTS: dict[str, tuple[list[str], str]] = {
    "reader": (["etcd:read"], "jwt"),
    "writer": (["etcd:write"], "jwt"),
    "admin": (["etcd:admin"], "jwt"),
    "everything": (["etcd:read", "etcd:write", "etcd:admin"], "jwt"),
    "stranger": (["calendar:read"], "jwt"),
    "opaque-writer": (["etcd:write"], "opaque"),
}


def new_key() -> dict[str, Any]:
    """A private EC P-256 signing key as a JWK, with a fresh key ID."""
    private = ec.generate_private_key(ec.SECP256R1())
    jwk: dict[str, Any] = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private))
    return {**jwk, "kid": uuid4().hex[:12], "alg": "ES256", "use": "sig"}


@dataclass
class OidcProvider:
    node: NodeModule
    workdir: Path
    port: int = field(default_factory=free_port)
    keys: list[dict[str, Any]] = field(default_factory=lambda: [new_key()])
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = {
            "issuer": self.issuer,
            "port": self.port,
            "jwks": {"keys": self.keys},
            "clients": [
                {"client_id": c, "client_secret": SECRET, "scopes": scopes, "format": format_}
                for c, (scopes, format_) in CLIENTS.items()
            ]
            + [{"client_id": INTROSPECTOR, "client_secret": SECRET, "scopes": []}],
            "introspector": INTROSPECTOR,
        }
        config_path = self.workdir / "oidc-config.json"
        config_path.write_text(json.dumps(config))
        log = (self.workdir / "oidc.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.node.node), str(SCRIPT), str(self.node.entry), str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": str(self.node.node.parent), "NODE_ENV": "test", "HOME": str(self.workdir)},
        )
        deadline = time.monotonic() + 30
        while not accepts_connections("127.0.0.1", self.port, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"oidc-provider did not start: {(self.workdir / 'oidc.log').read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)  # a frozen provider cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def rotate(self, *, keep_old: bool = True) -> None:
        """A new signing key, published first (it signs from now on); the old ones kept or withdrawn."""
        self.keys = [new_key(), *(self.keys if keep_old else [])]
        self.stop()
        self.start()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The provider stopped in its tracks (SIGSTOP): connections are accepted, nothing is answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def token(self, client: str, resource: str, scope: str | None = None) -> str:
        """An access token the provider issues to ``client`` for ``resource`` (all its scopes unless ``scope``)."""
        scopes = scope if scope is not None else " ".join(CLIENTS[client][0])
        with httpx2.Client(trust_env=False, timeout=30) as http:
            answer = http.post(
                f"{self.issuer}/token",
                data={"grant_type": "client_credentials", "resource": resource, "scope": scopes},
                auth=(client, SECRET),
            )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """A JWT signed with the provider's current key, with these claims (for tokens it would not issue)."""
        key = self.keys[0]
        private = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(key))
        return jwt.encode(claims, private, algorithm="ES256", headers={"kid": key["kid"], "typ": "at+jwt", **header})

    def claims(self, resource: str, **overrides: Any) -> dict[str, Any]:
        """The claims of a valid token for ``resource``, changed by ``overrides`` (None removes a claim)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "crafted-client",
            "aud": resource,
            "iat": now,
            "exp": now + 300,
            "client_id": "crafted-client",
            "scope": "etcd:read",
            "jti": uuid4().hex,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}
