"""Durations as kk_etcd_go writes them: Go strings ("5s", "500ms", "1m30s") or protojson ("0.500s")."""

from __future__ import annotations

import math
import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a Go/protojson duration string; ValueError when neither."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return _finite(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip()
    try:
        seconds = float(text)  # "5" or "2.5": seconds
    except ValueError:
        pass
    else:
        return _finite(seconds, value)
    pos, total = 0, 0.0
    while pos < len(text):
        match = _PART.match(text, pos)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (use seconds or a string like '5s', '500ms', '1m30s')")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError("empty duration")
    return _finite(total, value)


def _finite(seconds: float, value: object) -> float:
    # float() reads "nan" and "inf": they pass every comparison-based limit, then break format_duration.
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {value!r} (it must be a finite number of seconds)")
    return seconds


def format_duration(seconds: float) -> str:
    """protojson's form, which both kk_etcd_go (protojson.Unmarshal) and Go's time.ParseDuration read."""
    nanos = round(seconds * 1e9)
    whole, frac = divmod(nanos, 1_000_000_000)
    if frac == 0:
        return f"{whole}s"
    for digits, unit in ((3, 1_000_000), (6, 1_000)):
        if frac % unit == 0:
            return f"{whole}.{frac // unit:0{digits}d}s"
    return f"{whole}.{frac:09d}s"
