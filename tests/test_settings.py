"""Settings: TOML file < environment < flags, config.example.toml, and the command's exit code 2.

No etcd is needed: every command run here stops before connecting.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from mcp_helpers import repo_root

from kk_etcd_mcp import __version__
from kk_etcd_mcp.cli import build_parser, settings_from_args
from kk_etcd_mcp.settings import FIELDS, Settings, SettingsError, load_settings

EXAMPLE = repo_root() / "config.example.toml"


@pytest.fixture(autouse=True)
def _no_kk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """settings_from_args reads os.environ: start every test without the caller's KK_ETCD_* variables."""
    for var in list(os.environ):
        if var.startswith("KK_ETCD_"):
            monkeypatch.delenv(var)


def _toml(tmp_path: Path, text: str, name: str = "kk.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _from_cli(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(list(argv)))


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, in an environment without the caller's KK_ETCD_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KK_ETCD_")}
    return subprocess.run(
        [sys.executable, "-m", "kk_etcd_mcp", *argv],
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


# Load order ---------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings(env={})
    assert s == Settings()
    assert s.endpoints == ["http://127.0.0.1:2379"]
    assert (s.transport, s.host, s.port) == ("stdio", "127.0.0.1", 2445)
    assert s.read_only is False and s.http_token is None and s.password is None


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'port = 1001\nhost = "localhost"\nlog_level = "DEBUG"\nread_only = true\n')
    from_file = load_settings(config_file=path, env={})
    assert (from_file.port, from_file.host, from_file.log_level) == (1001, "localhost", "DEBUG")
    assert from_file.read_only is True

    env = {"KK_ETCD_PORT": "1002", "KK_ETCD_HOST": "::1"}
    from_env = load_settings(config_file=path, env=env)
    # env wins where it speaks; the file's value stays where it is silent
    assert (from_env.port, from_env.host, from_env.log_level) == (1002, "::1", "DEBUG")

    final = load_settings(config_file=path, env=env, overrides={"port": 1003, "read_only": False})
    assert (final.port, final.host, final.read_only) == (1003, "::1", False)


def test_kk_etcd_config_env_picks_the_file(tmp_path: Path) -> None:
    chosen = _toml(tmp_path, "port = 1111\n", "chosen.toml")
    other = _toml(tmp_path, "port = 2222\n", "other.toml")
    assert load_settings(env={"KK_ETCD_CONFIG": str(chosen)}).port == 1111
    assert load_settings(config_file=other, env={"KK_ETCD_CONFIG": str(chosen)}).port == 2222  # explicit file wins


def test_cli_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not checked here, only that it exists")
    path = _toml(tmp_path, 'port = 1001\ntransport = "sse"\nallowed_prefixes = ["file/"]\nread_only = true\n')
    monkeypatch.setenv("KK_ETCD_CONFIG", str(path))
    s = _from_cli("serve")
    assert (s.port, s.transport, s.allowed_prefixes, s.read_only) == (1001, "sse", ["file/"], True)

    monkeypatch.setenv("KK_ETCD_PORT", "1002")
    monkeypatch.setenv("KK_ETCD_ALLOWED_PREFIXES", "env/,env2/")
    s = _from_cli("serve")
    assert (s.port, s.transport, s.allowed_prefixes) == (1002, "sse", ["env/", "env2/"])

    s = _from_cli(
        "serve",
        "--port",
        "1003",
        "--allowed-prefixes",
        "flag/, flag2/",
        "--no-read-only",
        "--etcd-endpoints",
        "http://10.0.0.1:2379,https://10.0.0.2:2379",
        "--ca-file",
        str(ca_file),
    )
    assert (s.port, s.transport, s.allowed_prefixes, s.read_only) == (1003, "sse", ["flag/", "flag2/"], False)
    assert s.endpoints == ["http://10.0.0.1:2379", "https://10.0.0.2:2379"]
    assert s.ca_file == ca_file


def test_config_flag_wins_over_kk_etcd_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KK_ETCD_CONFIG", str(_toml(tmp_path, "port = 1111\n", "env.toml")))
    flag_file = _toml(tmp_path, "port = 2222\n", "flag.toml")
    assert _from_cli("serve", "--config", str(flag_file)).port == 2222


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://a:1,http://b:2", ["http://a:1", "http://b:2"]),
        (" http://a:1 , http://b:2 ,", ["http://a:1", "http://b:2"]),
        ('["http://a:1", "http://b:2"]', ["http://a:1", "http://b:2"]),
        ("http://a:1", ["http://a:1"]),
    ],
)
def test_env_lists_comma_separated_or_json(text: str, expected: list[str]) -> None:
    assert load_settings(env={"KK_ETCD_ENDPOINTS": text}).endpoints == expected


def test_env_list_other_settings() -> None:
    s = load_settings(
        env={
            "KK_ETCD_TOOLSETS": '["kv"]',
            "KK_ETCD_ALLOWED_PREFIXES": '["", "x/"]',
            "KK_ETCD_DENIED_PREFIXES": "",
            "KK_ETCD_ALLOWED_HOSTS": "proxy.example:443,proxy.example",
        }
    )
    assert s.toolsets == ["kv"]
    assert s.allowed_prefixes == ["", "x/"]  # JSON keeps the empty prefix a comma list cannot express
    assert s.denied_prefixes == []
    assert s.allowed_hosts == ["proxy.example:443", "proxy.example"]


def test_env_list_bad_json_names_the_setting() -> None:
    with pytest.raises(SettingsError, match="toolsets"):
        load_settings(env={"KK_ETCD_TOOLSETS": '["kv",'})
    with pytest.raises(SettingsError, match="toolsets"):
        load_settings(env={"KK_ETCD_TOOLSETS": "kv,nope"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("on", True), ("false", False), ("0", False), ("no", False)],
)
def test_env_bools(text: str, expected: bool) -> None:
    s = load_settings(env={"KK_ETCD_READ_ONLY": text, "KK_ETCD_EMBEDDED_ETCD": text})
    assert s.read_only is expected and s.embedded_etcd is expected


def test_env_bad_bool_names_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"read_only.*true or false"):
        load_settings(env={"KK_ETCD_READ_ONLY": "maybe"})


def test_cli_bool_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _from_cli("serve", "--read-only").read_only is True
    monkeypatch.setenv("KK_ETCD_READ_ONLY", "true")
    assert _from_cli("serve").read_only is True
    assert _from_cli("serve", "--no-read-only").read_only is False
    assert _from_cli("serve", "--embedded-etcd").embedded_etcd is True


def test_secrets_have_no_flags() -> None:
    # Not even by abbreviation: argparse would otherwise read `--password x` as `--password-file x`.
    parser = build_parser()
    for flag in ("--password", "--http-token", "--pass", "--http-tok"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", flag, "x"])


# config.example.toml ------------------------------------------------------------------------------


def test_example_config_yields_exactly_the_defaults() -> None:
    with EXAMPLE.open("rb") as fh:
        tomllib.load(fh)  # valid TOML
    assert load_settings(config_file=EXAMPLE, env={}) == Settings()


def test_example_config_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    missing_keys = [n for n in FIELDS if not re.search(rf"^(# )?{n} = ", text, re.MULTILINE)]
    assert not missing_keys, f"config.example.toml lacks a key line for {missing_keys}"
    missing_env = [n for n in FIELDS if f"KK_ETCD_{n.upper()}" not in text]
    assert not missing_env, f"config.example.toml does not name the env var of {missing_env}"
    # Every setting has a comment above its key line that states its default.
    lines = text.splitlines()
    for name in FIELDS:
        index = next(i for i, line in enumerate(lines) if re.match(rf"(# )?{name} = ", line))
        block = []
        for line in reversed(lines[:index]):
            if not line.startswith("#"):
                break
            block.append(line)
        assert any("default:" in line for line in block), f"{name}: no '# ... default: ...' comment above it"
        uncommented = not lines[index].startswith("#")
        assert uncommented == (FIELDS[name].get_default(call_default_factory=True) is not None), (
            f"{name}: keys whose default is unset must be commented out, the others written"
        )


def test_example_config_has_no_real_secrets() -> None:
    text = EXAMPLE.read_text()
    assert re.search(r"^password_file|^# password_file = ", text, re.MULTILINE)
    for secret in ("password", "http_token"):
        line = next(ln for ln in text.splitlines() if re.match(rf"#? ?{secret} = ", ln))
        assert line.startswith("#"), f"{secret} must not be set in the example"
        assert f"KK_ETCD_{secret.upper()}" in line or "environment" in line


# The real command: exit code 2 with a message naming the key ------------------------------------


def test_version_and_help() -> None:
    version = _run("--version")
    assert version.returncode == 0 and __version__ in version.stdout
    for command in ("serve", "etcd"):
        helped = _run(command, "--help")
        assert helped.returncode == 0, helped.stderr
        assert "usage: kk-etcd-mcp" in helped.stdout
    assert "--allowed-prefixes" in _run("serve", "--help").stdout


def test_unknown_toml_key_exits_2_listing_allowed(tmp_path: Path) -> None:
    path = _toml(tmp_path, "prot = 1\n")
    result = _run("serve", "--config", str(path))
    assert result.returncode == 2
    assert "prot" in result.stderr
    for name in ("port", "allowed_prefixes", "http_token", "endpoints"):
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_toml_key_via_kk_etcd_config_exits_2(tmp_path: Path) -> None:
    result = _run("serve", env={"KK_ETCD_CONFIG": str(_toml(tmp_path, "[etcd]\nendpoints = []\n"))})
    assert result.returncode == 2 and "'etcd'" in result.stderr


def test_missing_or_invalid_config_file_exits_2(tmp_path: Path) -> None:
    missing = _run("serve", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml" in missing.stderr
    broken = _run("serve", "--config", str(_toml(tmp_path, "port = \n")))
    assert broken.returncode == 2 and "TOML" in broken.stderr


@pytest.mark.parametrize(
    ("argv", "env", "key", "allowed"),
    [
        ([], {"KK_ETCD_PORT": "abc"}, "port", "integer"),
        ([], {"KK_ETCD_PORT": "70000"}, "port", "65535"),
        ([], {"KK_ETCD_TRANSPORT": "foo"}, "transport", "streamable-http"),
        (["--transport", "foo"], {}, "transport", "streamable-http"),
        ([], {"KK_ETCD_ENDPOINTS": "ftp://x"}, "endpoints", "http://"),
        (["--etcd-endpoints", "ftp://x"], {}, "endpoints", "http://"),
        ([], {"KK_ETCD_TOOLSETS": "kv,bogus"}, "toolsets", "cluster"),
        ([], {"KK_ETCD_REQUEST_TIMEOUT": "0"}, "request_timeout", "greater than 0"),
        ([], {"KK_ETCD_REGISTRY_PREFIX": "kk_service"}, "registry_prefix", "/"),
        ([], {"KK_ETCD_LOG_LEVEL": "LOUD"}, "log_level", "DEBUG"),
        ([], {"KK_ETCD_ALLOWED_PREFIXES": ""}, "allowed_prefixes", "could touch no key at all"),
        (["--allowed-prefixes", ""], {}, "allowed_prefixes", """KK_ETCD_ALLOWED_PREFIXES='[""]'"""),
        ([], {"KK_ETCD_READ_ONLY": "maybe"}, "read_only", "true or false"),
    ],
)
def test_bad_value_exits_2_naming_the_key(argv: list[str], env: dict[str, str], key: str, allowed: str) -> None:
    result = _run("serve", *argv, env=env)
    assert result.returncode == 2, result.stderr
    assert f"setting {key}" in result.stderr
    assert allowed in result.stderr
    assert "Traceback" not in result.stderr


def test_log_level_in_any_case() -> None:
    assert load_settings(env={"KK_ETCD_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    assert load_settings(overrides={"log_level": " Warning "}).log_level == "WARNING"


def test_no_allowed_prefix_is_refused_only_where_kv_tools_are_offered() -> None:
    with pytest.raises(SettingsError, match=r"setting allowed_prefixes .*is empty"):
        load_settings(env={"KK_ETCD_ALLOWED_PREFIXES": "[]"})
    settings = load_settings(env={"KK_ETCD_ALLOWED_PREFIXES": "", "KK_ETCD_TOOLSETS": "registry"})
    assert settings.allowed_prefixes == []


def test_bad_toml_value_exits_2_naming_the_key_and_source(tmp_path: Path) -> None:
    result = _run("serve", "--config", str(_toml(tmp_path, 'port = "abc"\n')))
    assert result.returncode == 2
    assert "setting port" in result.stderr and "kk.toml" in result.stderr


def test_unknown_env_var_exits_2() -> None:
    result = _run("serve", env={"KK_ETCD_FOO": "1"})
    assert result.returncode == 2
    assert "KK_ETCD_FOO" in result.stderr and "KK_ETCD_PORT" in result.stderr


def test_non_loopback_http_without_token_exits_2() -> None:
    result = _run("serve", "--transport", "streamable-http", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "http_token" in result.stderr and "KK_ETCD_HTTP_TOKEN" in result.stderr
    assert "0.0.0.0" in result.stderr
    sse = _run("serve", env={"KK_ETCD_TRANSPORT": "sse", "KK_ETCD_HOST": "192.0.2.10"})
    assert sse.returncode == 2 and "http_token" in sse.stderr


def test_non_loopback_needs_token_but_loopback_does_not() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert load_settings(env={"KK_ETCD_TRANSPORT": "streamable-http", "KK_ETCD_HOST": host}).host == host
    s = load_settings(
        env={"KK_ETCD_TRANSPORT": "streamable-http", "KK_ETCD_HOST": "0.0.0.0", "KK_ETCD_HTTP_TOKEN": "t0k"}
    )
    assert s.http_token is not None and s.http_token.get_secret_value() == "t0k"
    # stdio binds nothing: a stray host setting does not need a token
    assert load_settings(env={"KK_ETCD_HOST": "0.0.0.0"}).transport == "stdio"


@pytest.mark.parametrize("token", ["", "two words", " padded", "tab\there"])
def test_blank_or_spaced_http_token_exits_2(token: str) -> None:
    # Such a token cannot travel in an Authorization header: it would lock everyone out, or (empty,
    # e.g. from an unset shell variable) pass the non-loopback check while meaning "no token".
    result = _run("serve", "--transport", "streamable-http", "--host", "0.0.0.0", env={"KK_ETCD_HTTP_TOKEN": token})
    assert result.returncode == 2
    assert "setting http_token" in result.stderr
    if token.strip():
        assert token not in result.stderr and token.split()[-1] not in result.stderr


def test_password_and_password_file_exit_2(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n")
    result = _run("serve", env={"KK_ETCD_PASSWORD": "pw-value-123", "KK_ETCD_PASSWORD_FILE": str(pw_file)})
    assert result.returncode == 2
    assert "password" in result.stderr and "password_file" in result.stderr
    assert "pw-value-123" not in result.stderr


def test_unreadable_password_file_exits_2(tmp_path: Path) -> None:
    result = _run("serve", "--password-file", str(tmp_path / "missing-pw"))
    assert result.returncode == 2
    assert "password_file" in result.stderr and "missing-pw" in result.stderr
    assert "Traceback" not in result.stderr


def test_other_consistency_errors(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="cert_file and key_file"):
        load_settings(env={"KK_ETCD_CERT_FILE": str(cert)})


@pytest.mark.parametrize("name", ["ca_file", "cert_file", "key_file", "password_file"])
def test_missing_files_are_refused_at_load(tmp_path: Path, name: str) -> None:
    with pytest.raises(SettingsError, match=f"setting {name} .*does not exist"):
        load_settings(env={f"KK_ETCD_{name.upper()}": str(tmp_path / "missing")})


# Secrets ------------------------------------------------------------------------------------------


def test_etcd_password_reads_password_file(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("s3cr3t-from-file\nsecond line ignored\n")
    assert load_settings(env={"KK_ETCD_PASSWORD_FILE": str(pw_file)}).etcd_password() == "s3cr3t-from-file"
    assert load_settings(env={"KK_ETCD_PASSWORD": "direct-pw"}).etcd_password() == "direct-pw"
    assert load_settings(env={}).etcd_password() is None
    empty = tmp_path / "empty"
    empty.write_text("")
    assert load_settings(env={"KK_ETCD_PASSWORD_FILE": str(empty)}).etcd_password() == ""


def test_unreadable_password_file_is_a_settings_error(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("x")
    s = load_settings(env={"KK_ETCD_PASSWORD_FILE": str(pw_file)})
    pw_file.unlink()  # gone after the settings were loaded
    with pytest.raises(SettingsError, match="password_file"):
        s.etcd_password()


def test_secrets_never_in_repr_or_str(tmp_path: Path) -> None:
    s = load_settings(
        env={
            "KK_ETCD_USERNAME": "alice",
            "KK_ETCD_PASSWORD": "pw-Zq8-unique",
            "KK_ETCD_HTTP_TOKEN": "tok-Xy7-unique",
        }
    )
    assert s.etcd_password() == "pw-Zq8-unique"
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump())):
        assert "pw-Zq8-unique" not in text
        assert "tok-Xy7-unique" not in text
    assert "alice" in repr(s)


def test_secret_in_a_bad_setting_message_is_not_echoed() -> None:
    # A consistency error while a secret is set must not print the secret.
    with pytest.raises(SettingsError) as info:
        load_settings(env={"KK_ETCD_PASSWORD": "pw-Zq8-unique", "KK_ETCD_PASSWORD_FILE": "/x"})
    assert "pw-Zq8-unique" not in str(info.value)
