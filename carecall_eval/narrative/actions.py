"""Sentences of the actions and reception results, from their summary rows and settings (level, days)."""
from __future__ import annotations

import pandas as pd

from . import ci, horizon_phrase, is_missing, pct, pts

__all__ = ["actions_text", "reception_text"]

#: How each default action reads in a sentence.
ACTION_WORDS = {"limit_set": "set or lowered a limit", "pause": "paused", "self_exclusion": "self-excluded"}


def _points(x: float) -> str:
    """Signed percentage points without the unit: 0.054 -> '+5.4'."""
    return "n/a" if is_missing(x) else f"{100 * x:+.1f}"


def _rows(summary: pd.DataFrame, prefix: str) -> pd.DataFrame:
    return summary[summary["metric"].astype(str).str.startswith(prefix)].set_index("group")


def actions_text(summary: pd.DataFrame, settings: dict) -> str:
    """Plain-language findings of :func:`carecall_eval.outcomes.actions.actions`.

    >>> from carecall_eval.results import tidy
    >>> s = tidy([{"metric": "actions.pause_14d", "group": g, "estimate": e, "ci_low": lo, "ci_high": hi}
    ...           for g, e, lo, hi in (("contact", 0.07, 0.05, 0.09), ("comparison", 0.0, 0.0, 0.02),
    ...                                ("difference", 0.07, 0.05, 0.09))])
    >>> actions_text(s, {"days": 14, "level": 0.9, "via_call": None, "weighting": "matching weights",
    ...                  "events": {"pause": ["pause"]}, "n_contact": 581, "n_comparison": 371})
    'Within 14 days of the index, of 581 contacted customers 7% paused (comparison 0%; difference +7.0 points, \
90% CI +5.0 to +9.0). The comparison group has 371 customers weighted to resemble the contacted ones.'
    """
    level, days = settings["level"], settings["days"]
    within = horizon_phrase(days)
    src = {None: "", True: " during a care call", False: " outside care calls"}[settings.get("via_call")]
    n1, n0 = settings["n_contact"], settings["n_comparison"]
    parts = []
    for name, words in ACTION_WORDS.items():
        if name not in settings["events"]:
            continue
        t = _rows(summary, f"actions.{name}_")
        if not {"contact", "comparison", "difference"} <= set(t.index):
            continue
        c, k, d = t.loc["contact"], t.loc["comparison"], t.loc["difference"]
        if is_missing(c["estimate"]) or is_missing(k["estimate"]):
            continue
        parts.append(f"{pct(c['estimate'])} {words} (comparison {pct(k['estimate'])}; difference "
                     f"{pts(d['estimate'])}, {ci(d['ci_low'], d['ci_high'], level, fmt=_points)})")
    if not parts:
        why = ""
        if not (n1 and n0):
            who = "contacted" if not n1 else "comparison"
            why = f" (not available: no {who} customer has {within} of follow-up before the data end)"
        return f"Actions within {within} of the index{src} for {n1:,} contacted and {n0:,} comparison customers{why}."
    return (f"Within {within} of the index{src}, of {n1:,} contacted customers " + "; ".join(parts)
            + f". The comparison group has {n0:,} customers"
            + (" weighted to resemble the contacted ones." if settings.get("weighting") != "unweighted" else
               " (not matched: differences may reflect who was contacted, not only the contact)."))


def reception_text(summary: pd.DataFrame, settings: dict) -> str:
    """Plain-language findings of :func:`carecall_eval.outcomes.actions.reception`."""
    level, n, n_rec = settings["level"], settings["n_answered"], settings["n_reception_recorded"]
    if not n_rec:
        return f"Of {n:,} answered calls, none had a recorded reception."
    s = summary.set_index("metric")

    def est(metric: str) -> float:
        return s.loc[metric, "estimate"] if metric in s.index else float("nan")

    pos = s.loc["reception.positive"]
    agreed = sorted(((est(f"call_outcome.{o}"), o) for o in ("limit_set", "pause", "self_exclusion",
                                                              "helpline_referral")
                     if f"call_outcome.{o}" in s.index), reverse=True)
    return (f"Of {n:,} answered calls, {pct(pos['estimate'])} were received positively "
            f"({ci(pos['ci_low'], pos['ci_high'], level, fmt=pct)}) and {pct(est('reception.negative'))} "
            f"negatively (reception recorded for {pct(n_rec / n)} of calls). "
            f"{pct(est('call_outcome.no_action'))} ended without an action and "
            f"{pct(est('call_outcome.declined'))} with the customer declining; the actions agreed were "
            + ", ".join(f"{o.replace('_', ' ')} ({pct(p)})" for p, o in agreed) + ".")
