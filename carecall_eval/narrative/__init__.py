"""The narrative layer: every sentence a person reads is built here, from a result and its level.

Estimators compute numbers; the functions in this package turn a summary (and
the result's ``settings``) into plain words.  The interval phrase, the level
label and the horizon words come from one place (:func:`ci`, :func:`level_label`,
:func:`horizon_phrase`), so no text can state a level or a horizon that was not
used (CausalPy's ``reporting`` module is the model).

>>> ci(-0.07, 0.54, 0.9)
'90% CI -7% to +54%'
>>> ci(0.401, 0.612, 0.95, fmt=pct1)
'95% CI 40.1% to 61.2%'
>>> ci(float("nan"), 1.0, 0.95)
'interval not available'
"""
from __future__ import annotations

import math
from typing import Callable

from .._validation import horizon_phrase, level_label

__all__ = ["ci", "pct", "pct1", "spct", "spct1", "pts", "hr", "num", "level_label", "horizon_phrase",
           "excludes", "is_missing"]


def is_missing(x) -> bool:
    try:
        return x is None or not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def pct(x: float) -> str:
    """0.123 -> '12%' (no sign)."""
    return "n/a" if is_missing(x) else f"{x * 100:.0f}%"


def pct1(x: float) -> str:
    """0.1234 -> '12.3%'."""
    return "n/a" if is_missing(x) else f"{x * 100:.1f}%"


def spct(x: float) -> str:
    """Signed percent: -0.07 -> '-7%', 0.54 -> '+54%'."""
    return "n/a" if is_missing(x) else f"{x * 100:+.0f}%"


def spct1(x: float) -> str:
    """Signed percent with one decimal: -0.071 -> '-7.1%'."""
    return "n/a" if is_missing(x) else f"{x * 100:+.1f}%"


def pts(x: float) -> str:
    """Signed percentage points: 0.124 -> '+12.4 points'."""
    return "n/a" if is_missing(x) else f"{x * 100:+.1f} points"


def hr(x: float) -> str:
    """A ratio with two decimals."""
    return "n/a" if is_missing(x) else f"{x:.2f}"


def num(x: float, digits: int = 0) -> str:
    return "n/a" if is_missing(x) else f"{x:,.{digits}f}"


def ci(lo: float, hi: float, level: float, fmt: Callable[[float], str] = spct) -> str:
    """The one interval phrase: ``'<level> CI <lo> to <hi>'`` (or that it is not available)."""
    if is_missing(lo) or is_missing(hi):
        return "interval not available"
    return f"{level_label(level)} CI {fmt(lo)} to {fmt(hi)}"


def excludes(lo: float, hi: float, null: float = 0.0) -> bool:
    """True when the interval lies wholly on one side of ``null``."""
    return not (is_missing(lo) or is_missing(hi)) and (hi < null or lo > null)
