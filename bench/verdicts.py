"""The one line every bench prints per aim: ``verdict: aim | measured | baseline | ratio | PASS/MISS/INFO``.

The figures are from one run: ``baseline`` is measured in the same run as ``measured``, so the ratio
holds on a loaded machine where the absolute figures do not. ``.ci/run`` checks only that each bench
prints these lines (never a figure); bench/README.md collects them into its dated table.
"""

from __future__ import annotations

import math

PREFIX = "verdict: "


def ratio_text(measured: float, baseline: float) -> str:
    if math.isnan(measured) or math.isnan(baseline) or baseline <= 0:
        return "-"
    return f"{measured / baseline:.2f}x"


def verdict(aim: str, measured: str, baseline: str, ratio: str, passed: bool | None) -> None:
    """Print one aim's line; ``passed`` None means informational (no target, or the target does not apply)."""
    word = "INFO" if passed is None else "PASS" if passed else "MISS"
    print(f"{PREFIX}{aim} | {measured} | {baseline} | {ratio} | {word}", flush=True)
