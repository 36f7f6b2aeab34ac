"""One Settings model, read from a TOML file, then the environment, then command-line flags.

Settings are flat: the TOML key ``allowed_prefixes`` is the environment variable
``KK_ETCD_ALLOWED_PREFIXES`` and the flag ``--allowed-prefixes``. Lists are comma-separated (or a
JSON array) in the environment and on the command line. Secrets (``password``, ``http_token``,
``http_tokens``, ``oauth_introspection_client_secret``) have no flag, since a command line is visible
to every user of the machine.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .etcd import parse_endpoint

if TYPE_CHECKING:
    from .etcd import EtcdClient

ENV_PREFIX = "KK_ETCD_"
CONFIG_ENV = "KK_ETCD_CONFIG"
SECRET_FIELDS = frozenset({"password", "http_token", "http_tokens", "oauth_introspection_client_secret"})

Transport = Literal["stdio", "sse", "streamable-http"]
Toolset = Literal["kv", "registry", "access", "cluster"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
ConfirmMode = Literal["elicit", "allow", "deny"]
HubMode = Literal["sharded", "leader"]
TOOLSETS: tuple[Toolset, ...] = ("kv", "registry", "access", "cluster")


class SettingsError(Exception):
    """A setting is unknown or has a bad value; the command exits with code 2."""


TokenScope = Literal["read", "write", "admin"]
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Names the server gives clients itself (see mcp_server/identity.py), and http_token's.
RESERVED_TOKEN_NAMES = frozenset({"stdio", "http", "unidentified"})
DEFAULT_TOKEN_NAME = "default"


class HttpToken(BaseModel):
    """One named bearer token of the HTTP transports; ``token_file`` is read (first line) when loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Shown in logs and the audit trail; letters, digits, '.', '_', '-'.")
    scope: TokenScope = Field(description="read: read-only tools; write: also kv and registry changes; admin: all.")
    token: SecretStr = Field(description="The secret (or give token_file).")
    token_file: Path | None = Field(default=None, description="File whose first line is the secret.")

    @model_validator(mode="before")
    @classmethod
    def _read_token_file(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            # Never echo it: a bare string here is likely the secret itself.
            raise ValueError(
                "each token is a table {name, scope, token_file (or token)}; in the environment give a JSON "
                'array, e.g. [{"name": "ci", "scope": "read", "token_file": "/run/secrets/ci"}]'
            )
        name = data.get("name")
        label = f"token {name!r}" if isinstance(name, str) else "a token"
        if data.get("token_file") is not None:
            if data.get("token") is not None:
                raise ValueError(f"{label}: set either token or token_file, not both")
            path = Path(data["token_file"])
            try:
                lines = path.read_text().splitlines()
            except OSError as exc:
                raise ValueError(f"{label}: cannot read token_file {path}: {exc.strerror}") from None
            data = {**data, "token": lines[0].strip() if lines else ""}
        elif data.get("token") is None:
            raise ValueError(f"{label}: give token_file (or token)")
        return data

    @field_validator("name")
    @classmethod
    def _name_valid(cls, value: str) -> str:
        if not _TOKEN_NAME.fullmatch(value):
            raise ValueError(f"token name {value!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if value in RESERVED_TOKEN_NAMES:
            raise ValueError(f"token name {value!r} is reserved; choose another")
        return value

    @field_validator("token")
    @classmethod
    def _token_valid(cls, value: SecretStr) -> SecretStr:
        _check_token_text(value.get_secret_value())
        return value


def _check_token_text(text: str) -> None:
    # An empty token (often an unset shell variable) or one with whitespace cannot be sent in an
    # Authorization header: the server would pass the non-loopback check yet admit nobody.
    if not text or any(c.isspace() for c in text):
        raise ValueError("must be a non-empty token without whitespace; leave it unset for no token")


class Settings(BaseModel):
    """Every setting of kk-etcd-mcp; the descriptions are the reference (see config.example.toml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # etcd connection
    endpoints: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:2379"],
        description="etcd client URLs (http:// or https://), comma-separated in the environment.",
    )
    username: str | None = Field(default=None, description="etcd user to connect as (when etcd auth is on).")
    password: SecretStr | None = Field(default=None, description="Password of that user. Environment/file only.")
    password_file: Path | None = Field(default=None, description="File holding the password (first line).")
    ca_file: Path | None = Field(
        default=None, description="CA certificate (PEM) for https:// endpoints (default: the system's trusted CAs)."
    )
    cert_file: Path | None = Field(default=None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(default=None, description="Client private key (PEM) for mutual TLS.")
    request_timeout: float = Field(
        default=5.0, gt=0, le=300, description="Seconds any single etcd call may take before it fails."
    )

    # MCP transport
    transport: Transport = Field(default="stdio", description="stdio, sse (at /sse) or streamable-http (at /mcp).")
    host: str = Field(default="127.0.0.1", description="Address the HTTP transports bind to.")
    port: int = Field(default=2445, ge=1, le=65535, description="Port the HTTP transports listen on.")
    http_token: SecretStr | None = Field(
        default=None, description="Bearer token with every scope (named 'default'). Off loopback a token is required."
    )
    http_tokens: list[HttpToken] = Field(
        default_factory=list,
        description="Named bearer tokens, each with a scope (read, write, admin). Environment/file only.",
    )
    http_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="Largest HTTP request body accepted; larger ones get 413 and nothing is done.",
    )
    http_rate_limit: float = Field(
        default=20.0, ge=0, description="MCP requests per second each HTTP client may send on average (0 = no limit)."
    )
    http_rate_burst: int = Field(
        default=40, ge=1, le=100_000, description="Requests an HTTP client may send at once above http_rate_limit."
    )
    http_header_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds a request's headers may take to arrive (from the connection or the previous response); "
        "then 408 and the connection is closed.",
    )
    http_body_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds a request body may take to arrive in full; then 408."
    )
    http_max_sessions_per_client: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Open MCP sessions (streamable HTTP sessions, SSE connections, listen streams) each HTTP client "
        "may hold at once; one more gets 429.",
    )
    http_sessions_per_minute: int = Field(
        default=60, ge=0, le=100_000, description="New MCP sessions each HTTP client may open a minute (0 = no limit)."
    )
    http_session_idle_timeout: float = Field(
        default=300.0,
        ge=1,
        le=86_400,
        description="Seconds a streamable HTTP session may go without a request or an open stream before it ends.",
    )
    http_auth_failures_per_minute: int = Field(
        default=30,
        ge=0,
        le=100_000,
        description="Requests with a wrong bearer token an address may send a minute; then 429 for it (0 = no limit).",
    )
    http_refusal_log_interval: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="At most one log line per kind of HTTP refusal (403, 429, ...) per this many seconds (0 = each).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Extra Host header values to accept (e.g. a proxy's name:port)."
    )
    allowed_origins: list[str] = Field(default_factory=list, description="Extra Origin header values to accept.")
    ui: bool = Field(
        default=True,
        description="Serve the web console at /ui/ on the HTTP transports (with sse, also streamable HTTP at /mcp, "
        "which the console speaks).",
    )
    apps: bool = Field(
        default=True,
        description="Offer the console's views as MCP Apps (interactive views beside a tool's result) to hosts that "
        "negotiate the io.modelcontextprotocol/ui extension; other clients see no difference.",
    )
    public_url: str | None = Field(
        default=None,
        description="The URL clients reach this server at (behind a proxy, the proxy's), e.g. "
        "https://etcd-mcp.example.com; default http://<host>:<port>. Its Host and Origin are accepted; with OAuth, "
        "it plus /mcp (or /sse) is the resource tokens are issued for.",
    )

    # OAuth 2.1 resource server (MCP authorization): tokens from the organisation's identity provider
    oauth_issuer: str | None = Field(
        default=None,
        description="Issuer URL of the authorization server whose access tokens HTTP accepts (beside http_tokens); "
        "unset: no OAuth.",
    )
    oauth_audience: str | None = Field(
        default=None,
        description="The audience (aud) tokens must be issued for; default the resource URL (public_url + /mcp or "
        "/sse), the RFC 8707 resource indicator clients ask for.",
    )
    oauth_jwks_url: str | None = Field(
        default=None, description="Where the issuer's signing keys (JWKS) are; default its metadata's jwks_uri."
    )
    oauth_introspection_url: str | None = Field(
        default=None,
        description="Token introspection endpoint (RFC 7662) for opaque (non-JWT) access tokens; unset: only JWTs.",
    )
    oauth_introspection_client_id: str | None = Field(
        default=None, description="Client ID this server authenticates with at oauth_introspection_url."
    )
    oauth_introspection_client_secret: SecretStr | None = Field(
        default=None, description="Its client secret. Environment/config file only (or the _file setting)."
    )
    oauth_introspection_client_secret_file: Path | None = Field(
        default=None, description="File holding that client secret (first line)."
    )
    oauth_scope_read: str = Field(default="etcd:read", description="Token scope that grants our scope read.")
    oauth_scope_write: str = Field(default="etcd:write", description="Token scope that grants write (and read).")
    oauth_scope_admin: str = Field(default="etcd:admin", description="Token scope that grants admin (everything).")
    oauth_client_claim: str = Field(
        default="sub",
        description="Token claim naming the client in logs and the audit trail (without it: the token's client_id).",
    )
    oauth_timeout: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Seconds a call to the authorization server (metadata, keys, introspection) may take.",
    )
    oauth_jwks_refetch_interval: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Fewest seconds between two fetches of the signing keys prompted by a token signed with an "
        "unknown key (key rotation).",
    )

    # What the tools may do
    read_only: bool = Field(default=False, description="Offer only read-only tools.")
    toolsets: list[Toolset] = Field(default_factory=lambda: list(TOOLSETS), description="Tool groups to offer.")
    allowed_prefixes: list[str] = Field(
        default_factory=lambda: [""], description='Key prefixes the kv tools may touch ("" = every key).'
    )
    denied_prefixes: list[str] = Field(default_factory=list, description="Key prefixes the kv tools never touch.")
    registry_prefix: str = Field(default="kk_service/", description="Root of the service registry's keys.")

    # Health-check hub
    hub: bool = Field(
        default=True,
        description="Run the health-check hub inside serve (it joins the hub group and checks its share).",
    )
    hub_mode: HubMode = Field(
        default="sharded",
        description=(
            "sharded: every hub checks its share of the instances; leader: only the elected hub checks, "
            "the others stand by."
        ),
    )
    hub_weight: float = Field(
        default=1.0, gt=0, le=1000, description="This hub's capacity in sharded mode: weight 2 checks twice the share."
    )
    hub_lease_ttl: int = Field(
        default=10,
        ge=2,
        le=300,
        description="Seconds before a dead hub's instances (sharded) or leadership (leader mode) pass to others.",
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Serve Prometheus metrics at /metrics on this port (default: off)."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address the metrics port listens on.")

    # Embedded etcd
    embedded_etcd: bool = Field(
        default=False,
        description="Use a local etcd at the (loopback) endpoint, shared by every server on the same data_dir.",
    )
    data_dir: Path | None = Field(
        default=None, description="Data directory of the embedded etcd (default: the user's data dir)."
    )
    peer_port: int = Field(default=2380, ge=1, le=65535, description="Peer port of the embedded etcd.")

    # Backups
    backup_dir: Path | None = Field(
        default=None,
        description="Directory cluster_snapshot writes into (default: the user's data dir, .../kk-etcd-mcp/backups).",
    )

    # Confirmations, audit trail, limits
    confirm_destructive: ConfirmMode = Field(
        default="elicit",
        description=(
            "Calls that remove data, access or availability, from a client that cannot ask its user (no elicitation): "
            "elicit = refuse, saying how to allow them; allow = run them; deny = refuse."
        ),
    )
    audit_file: Path | None = Field(
        default=None, description="JSON-lines file every mutating tool call is recorded in (default: stderr)."
    )
    audit_to_etcd: bool = Field(
        default=False,
        description="Also keep the audit trail in etcd under <registry_prefix>audit/ (audit_log reads it).",
    )
    audit_etcd_max_entries: int = Field(
        default=1000, ge=10, le=100_000, description="Most audit entries kept in etcd; the oldest are trimmed."
    )
    audit_values: bool = Field(
        default=False,
        description=(
            "Repeat the values calls write (kv values, import documents, service metadata) in audit entries, "
            "secret-looking fields masked; default: only their size and sha256. Passwords never appear."
        ),
    )
    max_value_bytes: int = Field(
        default=1_048_576, ge=1, le=64 * 1_048_576, description="Largest value kv_put and kv_import write, in bytes."
    )
    max_concurrent_calls: int = Field(
        default=32, ge=1, le=10_000, description="Tool calls run at once; one more is refused as busy."
    )

    log_level: LogLevel = Field(
        default="INFO", description="Level of kk-etcd-mcp's own log lines (logs always go to stderr)."
    )
    library_log_level: LogLevel | None = Field(
        default=None,
        description=(
            "Level of the libraries' log lines (mcp, uvicorn, grpc, ...); unset: log_level, but never below INFO, "
            "since at DEBUG they log whole MCP messages. Even at DEBUG, MCP message bodies are withheld."
        ),
    )

    @field_validator("endpoints")
    @classmethod
    def _endpoints_valid(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one etcd endpoint is needed")
        for url in value:
            parse_endpoint(url)
        return value

    @field_validator("log_level", "library_log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("allowed_prefixes")
    @classmethod
    def _some_key_allowed(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # An empty KK_ETCD_ALLOWED_PREFIXES (often an unset shell variable) is an empty list, which would
        # silently leave every kv tool refusing every key.
        if not value and "kv" in info.data.get("toolsets", TOOLSETS):
            raise ValueError(
                "is empty, so the kv tools could touch no key at all. To allow every key leave it unset "
                '(or give [""], e.g. KK_ETCD_ALLOWED_PREFIXES=\'[""]\'); to allow some, list them '
                "(KK_ETCD_ALLOWED_PREFIXES=app/,config/); to offer no kv tools, leave kv out of toolsets"
            )
        return value

    @field_validator("http_token")
    @classmethod
    def _http_token_valid(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_token_text(value.get_secret_value())
        return value

    @field_validator("public_url", "oauth_issuer", "oauth_jwks_url", "oauth_introspection_url")
    @classmethod
    def _url_valid(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r} must have no query or fragment")
        if parts.scheme == "http" and info.field_name != "public_url" and not is_loopback(parts.hostname):
            raise ValueError(f"{value!r} must be https:// (plain http:// only on loopback)")
        # The issuer is compared with the tokens' iss claim exactly, so it is kept exactly as given.
        return value if info.field_name == "oauth_issuer" else value.rstrip("/")

    @field_validator("oauth_scope_read", "oauth_scope_write", "oauth_scope_admin", "oauth_client_claim")
    @classmethod
    def _oauth_name_valid(cls, value: str) -> str:
        # RFC 6749 §3.3's scope characters: printable ASCII but space, '"' and '\'.
        if not value or any(not "!" <= c <= "~" or c in '"\\' for c in value):
            raise ValueError(f"{value!r} must be one non-empty word of printable ASCII, without spaces or quotes")
        return value

    @field_validator("ca_file", "cert_file", "key_file", "password_file", "oauth_introspection_client_secret_file")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} does not exist or is not a file")
        return value

    @field_validator("registry_prefix")
    @classmethod
    def _registry_prefix_valid(cls, value: str) -> str:
        if not value.endswith("/"):
            raise ValueError("must end with '/'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set either password or password_file, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.transport != "stdio" and not is_loopback(self.host) and not self.bearer_tokens() and not self.oauth:
            raise ValueError(
                f"refusing to serve on non-loopback host {self.host} without http_token or http_tokens (or "
                "oauth_issuer): set KK_ETCD_HTTP_TOKEN (or named tokens in http_tokens, or OAuth), or bind 127.0.0.1"
            )
        self._check_oauth()
        names = [token.name for token in self.bearer_tokens()]
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            hint = " (http_token is the token named 'default')" if DEFAULT_TOKEN_NAME in twice else ""
            raise ValueError(f"http_tokens: the name {twice[0]!r} is used twice{hint}")
        secrets = [token.token.get_secret_value() for token in self.bearer_tokens()]
        if len(set(secrets)) != len(secrets):
            raise ValueError("http_tokens: two tokens have the same secret; give each client its own")
        return self

    def _check_oauth(self) -> None:
        scopes = [self.oauth_scope_read, self.oauth_scope_write, self.oauth_scope_admin]
        if len(set(scopes)) != 3:
            raise ValueError("oauth_scope_read, oauth_scope_write and oauth_scope_admin must be three different scopes")
        if self.oauth_introspection_client_secret is not None and self.oauth_introspection_client_secret_file:
            raise ValueError(
                "set either oauth_introspection_client_secret or oauth_introspection_client_secret_file, not both"
            )
        has_secret = self.oauth_introspection_client_secret is not None or self.oauth_introspection_client_secret_file
        if self.oauth_introspection_url and not (self.oauth_introspection_client_id and has_secret):
            raise ValueError(
                "oauth_introspection_url needs the client this server introspects as: set "
                "oauth_introspection_client_id and KK_ETCD_OAUTH_INTROSPECTION_CLIENT_SECRET (or "
                "oauth_introspection_client_secret_file)"
            )
        if self.oauth and self.public_url is None and self.host in ("0.0.0.0", "::", "[::]"):
            raise ValueError(
                f"with oauth_issuer and host {self.host}, set public_url to the URL clients reach this server at "
                "(e.g. https://etcd-mcp.example.com): tokens are issued for it"
            )

    @property
    def oauth(self) -> bool:
        """Whether HTTP accepts OAuth access tokens (``oauth_issuer`` is set)."""
        return self.oauth_issuer is not None

    def base_url(self) -> str:
        """``public_url``, or the URL of the bound host and port."""
        if self.public_url is not None:
            return self.public_url
        host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def oauth_introspection_secret(self) -> str | None:
        """The introspection client secret, read from its file when that is how it was given."""
        if self.oauth_introspection_client_secret is not None:
            return self.oauth_introspection_client_secret.get_secret_value()
        if self.oauth_introspection_client_secret_file is not None:
            path = self.oauth_introspection_client_secret_file
            return _first_line(path, "oauth_introspection_client_secret_file").strip()
        return None

    def bearer_tokens(self) -> list[HttpToken]:
        """Every token HTTP accepts: ``http_tokens``, and ``http_token`` as the admin token "default"."""
        tokens = list(self.http_tokens)
        if self.http_token is not None:
            tokens.insert(0, HttpToken(name=DEFAULT_TOKEN_NAME, scope="admin", token=self.http_token))
        return tokens

    def etcd_password(self) -> str | None:
        """The password, read from password_file when that is how it was given."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return _first_line(self.password_file, "password_file")
        return None

    def etcd_client(self) -> EtcdClient:
        """An (unopened) etcd client for these settings."""
        from .etcd import EtcdClient

        return EtcdClient(
            self.endpoints,
            username=self.username,
            password=self.etcd_password(),
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            request_timeout=self.request_timeout,
        )


def _first_line(path: Path, setting: str) -> str:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SettingsError(f"setting {setting}: cannot read {path}: {exc.strerror}") from None
    return lines[0] if lines else ""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Loading ------------------------------------------------------------------------------------------

FIELDS = Settings.model_fields


def _is_list(name: str) -> bool:
    return "list" in str(FIELDS[name].annotation)


def _is_bool(name: str) -> bool:
    return FIELDS[name].annotation is bool


def parse_text_value(name: str, text: str) -> Any:
    """A setting given as text (environment or flag) to the shape the model expects."""
    if _is_list(name):
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                return json.loads(stripped)
            except json.JSONDecodeError as exc:
                raise SettingsError(f"setting {name}: invalid JSON list: {exc.msg}") from None
        return [item.strip() for item in stripped.split(",") if item.strip()] if stripped else []
    if _is_bool(name):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"setting {name}: {text!r} is not a boolean; use true or false")
    return text


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting {unknown[0]!r}; known settings: {', '.join(FIELDS)}")
    return data


def read_environment(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        name = var.removeprefix(ENV_PREFIX).lower()
        if name not in FIELDS:
            raise SettingsError(f"environment variable {var} is not a setting; known: {_env_names()}")
        values[name] = parse_text_value(name, text)
    return values


def _env_names() -> str:
    return ", ".join(ENV_PREFIX + name.upper() for name in FIELDS)


def load_settings(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge file < environment < overrides (already-parsed flag values) into one Settings."""
    env = os.environ if env is None else env
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    sources: dict[str, str] = {}
    merged: dict[str, Any] = {}
    layers = [
        (read_config_file(config_file) if config_file else {}, f"config file {config_file}"),
        (read_environment(env), "environment"),
        (dict(overrides or {}), "command line"),
    ]
    for layer, source in layers:
        for name, value in layer.items():
            merged[name] = value
            sources[name] = source
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, sources)) from None


def _describe(exc: ValidationError, sources: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        # Inside a list of tables (http_tokens) say which entry and field: http_tokens[1].scope
        name = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        if name:
            lines.append(f"setting {name} (from {sources.get(str(err['loc'][0]), 'defaults')}): {msg}")
        else:
            lines.append(f"settings: {msg}")
    return "; ".join(lines)
