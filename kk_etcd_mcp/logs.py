"""Logging: kk-etcd-mcp's own loggers at ``log_level``, the libraries' at most at INFO unless asked.

Libraries log whole MCP messages at DEBUG: mcp's SSE transport ("Received JSON: ...", "Sending
message via SSE: ..."), sse_starlette ("chunk: ..."), mcp's session runner. Those messages carry
passwords given to ``user_add``, generated passwords, and every value read or written. So:

- ``log_level`` sets kk-etcd-mcp's own loggers (``kk_etcd_mcp.*``) only;
- every other logger (mcp, uvicorn, sse_starlette, grpc, aiohttp, etcd3aio, asyncio, ...) runs at
  ``library_log_level``, which by default follows ``log_level`` but never goes below INFO;
- whatever the levels, a filter on the one handler withholds MCP message bodies from library log
  lines (a line that carries one keeps only its lead-in) and the rejected input pydantic quotes in
  validation errors (``input_value=...``), in any logger's traceback.

Logs go to stderr only: in stdio mode stdout carries nothing but MCP messages.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import get_args

from .settings import LogLevel

OWN_LOGGER = "kk_etcd_mcp"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)  # lowest first

# What an MCP message looks like inside a library's log line: JSON ("jsonrpc": "2.0"), a pydantic
# model's repr (jsonrpc='2.0'), a SessionMessage wrapper.
_MCP_MESSAGE = re.compile(r"[\"']jsonrpc[\"']|jsonrpc=|SessionMessage\(")
_PYDANTIC_INPUT = re.compile(r"input_value=.*?, input_type=")
_LEAD_IN_CHARS = 80

log = logging.getLogger(__name__)


def library_level(log_level: LogLevel, library_log_level: LogLevel | None = None) -> LogLevel:
    """The level of every logger that is not kk-etcd-mcp's own: as set, else log_level but at least INFO."""
    if library_log_level is not None:
        return library_log_level
    return max(log_level, "INFO", key=LEVELS.index)


class WithholdMessageBodies(logging.Filter):
    """Withholds MCP message bodies from library log lines and quoted input from tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _is_own(record.name):
            text = record.getMessage()
            if _MCP_MESSAGE.search(text):
                record.msg, record.args = _withheld(text), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _scrub_traceback(record.exc_text)
        return True


def _is_own(name: str) -> bool:
    return name == OWN_LOGGER or name.startswith(OWN_LOGGER + ".")


def _withheld(text: str) -> str:
    lead_in, colon, _ = text.partition(":")
    where = f"{lead_in[:_LEAD_IN_CHARS]}: " if colon else ""
    return f"{where}[an MCP message of {len(text)} characters, withheld: it may hold secrets]"


def _scrub_traceback(text: str) -> str:
    text = _PYDANTIC_INPUT.sub("input_value=[withheld], input_type=", text)
    return "\n".join(
        "[a line quoting an MCP message, withheld]" if _MCP_MESSAGE.search(line) else line for line in text.splitlines()
    )


def configure_logging(log_level: LogLevel, library_log_level: LogLevel | None = None) -> None:
    """One stderr handler for every logger, with the filter above; levels as described there."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(WithholdMessageBodies())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    libraries = library_level(log_level, library_log_level)
    root.setLevel(libraries)
    logging.getLogger(OWN_LOGGER).setLevel(log_level)
    log.debug("logging kk_etcd_mcp at %s, libraries at %s", log_level, libraries)
