"""What a probe returns, and the 4 KB cap on its output.

The cap counts UTF-8 bytes, not characters: the output is stored in etcd and shown to models, and
bytes are what those pay for. It applies to every output a probe builds from what the target sent
(HTTP body, gRPC error details) and is cut at a character boundary, never inside one.
"""

from __future__ import annotations

import codecs
import ssl
from dataclasses import dataclass

from ...h2grpc.unary import connect_reason
from ..model import Status

OUTPUT_LIMIT = 4096  # bytes; Consul's limit for check output


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Status
    output: str
    latency: float  # seconds, from the start of the probe to its verdict


def cap_output(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, at a character boundary."""
    if len(text) * 4 <= limit:  # cheap exit: no character is longer than 4 bytes
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return decode_head(raw[:limit])


def decode_head(data: bytes) -> str:
    """The first bytes of a body as text: invalid UTF-8 replaced, a character cut at the end dropped."""
    # An incremental decoder keeps a trailing partial sequence back instead of replacing it.
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)


def os_error_reason(exc: OSError) -> str:
    """'connection refused' and 'connection reset by peer' as such; otherwise the system's words."""
    return one_line(connect_reason(exc))


def error_reason(exc: BaseException, limit: int = 512) -> str:
    """The gist of an exception: an SSL error's verify message, an OSError's strerror, else str()."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        text = str(getattr(exc, "verify_message", None) or exc.reason)
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return one_line(text, limit)


def one_line(text: str, limit: int = 512) -> str:
    """Whitespace runs (newlines too) as single spaces, capped: error outputs end up in tables."""
    return cap_output(" ".join(text.split()), limit)
