"""``kk-etcd-mcp config get|put|watch``: configuration for people and shell scripts, through ConfigClient.

stdout carries only values, so ``$(kk-etcd-mcp config get app/db)`` works; messages go to stderr.
``--format`` is how a value is printed: as stored (the default), or its data as json or yaml (a yaml
value printed as json, say). ``watch`` prints the current value, then each new valid one; with
``--format json`` one JSON document per line, which is what a script should read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal, TextIO

import anyio
import yaml

from ..config_center import ConfigClient, ValueFormat
from ..errors import InvalidArgumentError

OutputFormat = Literal["json", "yaml", "text"]
_EXTENSIONS: dict[str, ValueFormat] = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}


async def config_get(config: ConfigClient, key: str, fmt: OutputFormat | None, out: TextIO = sys.stdout) -> None:
    """Print the value of ``key``: as stored, or its data rendered as ``fmt``."""
    if fmt is None or fmt == "text":
        text = await config.get(key, format="text")
        out.write(text + ("\n" if out.isatty() and not text.endswith("\n") else ""))
    else:
        out.write(render(await config.get(key), fmt, one_line=False))
    out.flush()


async def config_put(
    config: ConfigClient,
    key: str,
    file: str,
    fmt: ValueFormat | None,
    expected_revision: int | None,
    err: TextIO = sys.stderr,
) -> None:
    """Write the contents of ``file`` (``-``: stdin) to ``key``, validated as ``fmt`` (by default the file's
    extension says: .json, .yaml/.yml, else text), as the ``kv_put`` tool would."""
    text = await _read(file)
    fmt = fmt or _EXTENSIONS.get(Path(file).suffix.lower(), "text")
    result = await config.put(key, text, fmt, expected_revision)
    err.write(f"kk-etcd-mcp: wrote {key} as {fmt} at revision {result.revision}\n")


async def config_watch(config: ConfigClient, key: str, fmt: OutputFormat | None, out: TextIO = sys.stdout) -> None:
    """Print the value of ``key`` and then each new valid one until cancelled (Ctrl-C)."""
    async with config.watch(key, format="text" if fmt in (None, "text") else None) as live:
        if not live.deleted and live.error is None:
            _print_value(live.value, fmt, out)
        async for value in live:
            _print_value(value, fmt, out)


def _print_value(value: Any, fmt: OutputFormat | None, out: TextIO) -> None:
    if fmt is None or fmt == "text":
        out.write(value if value.endswith("\n") else value + "\n")
    else:
        out.write(render(value, fmt, one_line=True))
    out.flush()


def render(data: Any, fmt: Literal["json", "yaml"], *, one_line: bool) -> str:
    """``data`` (parsed json/yaml, or a str for text) as ``fmt``; yaml documents end with ``---`` lines
    between them when watched."""
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=None if one_line else 2) + "\n"
    rendered = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return rendered + ("---\n" if one_line else "")


async def _read(file: str) -> str:
    try:
        if file == "-":
            return await anyio.to_thread.run_sync(sys.stdin.read)
        return await anyio.Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {file}: {exc.strerror}; nothing was written") from None
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"{file} is not UTF-8 text; nothing was written") from None
