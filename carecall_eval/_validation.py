"""Argument checks with uniform messages, at the bottom of the import graph.

Every public function checks its arguments here, so a bad value always gets the
same kind of message: the argument's name, the value given and what is allowed
(statsmodels' ``tools/validation`` and scikit-learn's ``check_scalar`` are the
models).  The one z-quantile and the one level label live here too, so no module
computes ``1.96`` or prints ``95%`` on its own.

>>> check_level(0.9)
0.9
>>> level_label(0.975)
'97.5%'
>>> round(z_quantile(0.95), 6)
1.959964
>>> check_level(95)
Traceback (most recent call last):
...
ValueError: level must be a number strictly between 0 and 1 (for example 0.95 for 95% intervals), got 95; did you mean 0.95?
"""
from __future__ import annotations

import math
from numbers import Integral, Real

__all__ = ["check_level", "check_int", "check_horizon", "check_choice", "check_no_sample", "z_quantile",
           "level_label", "horizon_id", "horizon_phrase"]


def check_level(level, name: str = "level") -> float:
    """Return ``level`` as a float strictly between 0 and 1, or raise a ValueError naming it."""
    ok = isinstance(level, Real) and not isinstance(level, bool) and math.isfinite(float(level))
    if ok and 0 < float(level) < 1:
        return float(level)
    hint = ""
    if ok and 1 < float(level) < 100:
        hint = f"; did you mean {float(level) / 100:g}?"
    raise ValueError(f"{name} must be a number strictly between 0 and 1 (for example 0.95 for 95% intervals), "
                     f"got {level!r}{hint}")


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int within ``[low, high]``, or raise naming the argument."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        if isinstance(value, Real) and not isinstance(value, bool) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f"at least {low}" if high is None else (f"at most {high}" if low is None else f"{low} to {high}")
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


def check_horizon(name: str, days, low: int = 1, high: int = 3 * 365) -> int:
    """A follow-up horizon in whole days."""
    return check_int(name, days, low, high)


def check_choice(name: str, value, allowed) -> object:
    """Return ``value`` if it is one of ``allowed`` (exact match), else a ValueError listing them."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_no_sample(sample, who: str) -> None:
    """Data-only estimators take ``sample=None`` only: anything else is a TypeError saying so.

    >>> check_no_sample(None, "call_length")
    >>> check_no_sample("cohort", "call_length")
    Traceback (most recent call last):
    ...
    TypeError: call_length takes no sample: it reads the data tables directly; call call_length(data, level=...), got a str
    """
    if sample is not None:
        raise TypeError(f"{who} takes no sample: it reads the data tables directly; call {who}(data, level=...), "
                        f"got a {type(sample).__name__}")


def z_quantile(level: float) -> float:
    """The two-sided standard-normal quantile for a confidence level (1.959964 at 0.95)."""
    from scipy import stats

    return float(stats.norm.ppf(0.5 + check_level(level) / 2))


def level_label(level: float) -> str:
    """``0.95`` -> ``'95%'``, ``0.975`` -> ``'97.5%'``, ``0.9`` -> ``'90%'`` (no rounding that lies)."""
    pct = check_level(level) * 100
    return f"{pct:.10g}%" if abs(pct - round(pct, 1)) > 1e-9 else f"{round(pct, 1):g}%"


def horizon_id(days: int, default: int | None = None, default_id: str | None = None) -> str:
    """Suffix of a metric id for a horizon: the stable default id, else ``'<days>d'``.

    >>> horizon_id(365, 365, "12m"), horizon_id(180, 365, "12m")
    ('12m', '180d')
    """
    if default is not None and days == default and default_id:
        return default_id
    return f"{int(days)}d"


def horizon_phrase(days: int) -> str:
    """Plain words for a horizon: 365 -> '12 months', 84 -> '12 weeks', 28 -> '28 days', 730 -> '24 months'.

    >>> horizon_phrase(365), horizon_phrase(84), horizon_phrase(180), horizon_phrase(28)
    ('12 months', '12 weeks', '180 days', '28 days')
    """
    days = int(days)
    if days % 365 == 0:
        return f"{days // 365 * 12} months"
    if days % 7 == 0 and days >= 56:
        return f"{days // 7} weeks"
    return f"{days} days" if days != 1 else "1 day"
