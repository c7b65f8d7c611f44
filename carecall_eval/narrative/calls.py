"""Sentences of the call-length result, from its summary rows and settings (level).

>>> from carecall_eval.results import tidy
>>> s = tidy([{"metric": "call_length.mean_s", "group": "all", "estimate": 344.0, "n": 777},
...           {"metric": "call_length.median_s", "group": "all", "estimate": 296.0, "ci_low": 286.0,
...            "ci_high": 309.0, "n": 777},
...           {"metric": "call_length.p90_s", "group": "all", "estimate": 603.0, "n": 777},
...           {"metric": "call_length.trend_s_per_year", "group": "all", "estimate": 12.0, "ci_low": 3.0,
...            "ci_high": 21.0, "n": 777}])
>>> text(s, {"level": 0.9})
'777 answered calls lasted 5 min 44 s on average; half were shorter than 4 min 56 s (90% CI 4 min 46 s to \
5 min 09 s), and one in ten lasted longer than 10 min 03 s. Calls grew longer over the period, by about 12 s a year.'
"""
from __future__ import annotations

import pandas as pd

from . import ci, excludes, is_missing

__all__ = ["text", "mmss"]


def mmss(seconds: float) -> str:
    """A duration in minutes and seconds: 296 -> '4 min 56 s'."""
    if is_missing(seconds):
        return "n/a"
    s = int(round(float(seconds)))
    return f"{s // 60} min {s % 60:02d} s"


def text(summary: pd.DataFrame, settings: dict) -> str:
    """Plain-language findings of :func:`carecall_eval.outcomes.calls.call_length` (overall rows)."""
    level = settings["level"]
    overall = summary[summary["group"] == "all"].set_index("metric")
    mean, med, p90 = (overall.loc[m] for m in ("call_length.mean_s", "call_length.median_s", "call_length.p90_s"))
    out = (f"{int(mean['n']):,} answered calls lasted {mmss(mean['estimate'])} on average; half were shorter than "
           f"{mmss(med['estimate'])} ({ci(med['ci_low'], med['ci_high'], level, fmt=mmss)}), and one in ten lasted "
           f"longer than {mmss(p90['estimate'])}.")
    if "call_length.trend_s_per_year" in overall.index:
        tr = overall.loc["call_length.trend_s_per_year"]
        if excludes(tr["ci_low"], tr["ci_high"]):
            out += (f" Calls grew {'longer' if tr['estimate'] > 0 else 'shorter'} over the period, by about "
                    f"{abs(tr['estimate']):.0f} s a year.")
        else:
            out += " There is no clear trend in call length over the period."
    return out
