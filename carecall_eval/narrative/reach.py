"""Sentences of the reach results (the SMS estimator and the answer rates), from summary rows and settings.

>>> from carecall_eval.results import tidy
>>> s = tidy([{"metric": "reach.overall", "group": "all", "estimate": 0.6, "ci_low": 0.55, "ci_high": 0.65,
...            "n": 400},
...           {"metric": "reach.quarter", "group": "2025Q1", "estimate": 0.5},
...           {"metric": "reach.quarter", "group": "2025Q2", "estimate": 0.7}])
>>> text(s, {"level": 0.9, "policy_start": None})
'60% of 400 phone cases were reached (90% CI 55% to 65%). By quarter it ranged from 50% to 70%. No effect of a \
missed-call SMS is estimated because no SMS policy date is set (sms_policy_start in operator.toml); reach is \
reported over time only.'
"""
from __future__ import annotations

import pandas as pd

from . import ci, is_missing, pct, pts

__all__ = ["text", "answer_rates_text"]


def _row(summary: pd.DataFrame, metric: str, group: str | None = None):
    rows = summary[summary["metric"] == metric]
    if group is not None:
        rows = rows[rows["group"] == group]
    return rows.iloc[0] if len(rows) else None


def _points(x: float) -> str:
    """An interval end in percentage points without the unit: 0.074 -> '+7.4'."""
    return "n/a" if is_missing(x) else f"{100 * x:+.1f}"


def _no_policy_reason(settings: dict) -> str:
    if settings.get("policy_start") is None:
        return "no SMS policy date is set (sms_policy_start in operator.toml)"
    return f"the policy date {settings['policy_start']} has cases on one side only"


def text(summary: pd.DataFrame, settings: dict) -> str:
    """Plain-language findings of :func:`carecall_eval.outcomes.reach.sms_effect`.

    With the SMS effect estimated: reach before and after the policy, the
    primary attempt-level estimate with its interval, the counterfactual reach,
    and the raw difference and the interrupted time series as secondary views.
    Without it: overall reach with its interval, the range over quarters, and
    why no effect is estimated.
    """
    level = settings["level"]
    eff = _row(summary, "reach.sms_effect", "difference")
    if eff is None:
        overall = _row(summary, "reach.overall", "all")
        out = (f"{pct(overall['estimate'])} of {int(overall['n']):,} phone cases were reached "
               f"({ci(overall['ci_low'], overall['ci_high'], level, fmt=pct)}).")
        q = summary[summary["metric"] == "reach.quarter"]["estimate"]
        if len(q) > 1:
            out += f" By quarter it ranged from {pct(q.min())} to {pct(q.max())}."
        return (out + f" No effect of a missed-call SMS is estimated because {_no_policy_reason(settings)}; "
                "reach is reported over time only.")
    before, after = _row(summary, "reach.before_sms"), _row(summary, "reach.after_sms")
    without = _row(summary, "reach.after_sms_without_policy")
    raw = _row(summary, "reach.sms_difference")
    its = _row(summary, "reach.its_level_change")
    s = int(settings["sms_after_attempts"])
    e = float(eff["estimate"])
    out = (f"Before the missed-call SMS (from {settings['policy_start']}), {pct(before['estimate'])} of "
           f"{int(before['n']):,} phone cases were reached; after it, {pct(after['estimate'])} of "
           f"{int(after['n']):,}. Comparing the attempts the SMS can change (attempt {s + 1} on) with the earlier "
           f"attempts of the same periods, and adjusting for who was called, the SMS "
           f"{'raised' if e >= 0 else 'lowered'} reach by {abs(100 * e):.1f} percentage points "
           f"({ci(eff['ci_low'], eff['ci_high'], level, fmt=_points)}) for the cases called after it: without it, "
           f"about {pct(without['estimate'])} would have been reached. The raw before/after difference "
           f"({pts(raw['estimate'])})")
    if its is not None:
        out += (f" and the interrupted time series ({pts(its['estimate'])} at the policy date) also move with the "
                "trend in answering and with changes in who is called, so they are shown only for comparison.")
    else:
        out += (" also moves with the trend in answering and with changes in who is called, so it is shown only "
                "for comparison.")
    return out


def answer_rates_text(summary: pd.DataFrame, settings: dict) -> str:
    """One sentence of answer rates by attempt number (all cases), with the first attempt's interval.

    >>> from carecall_eval.results import tidy
    >>> s = tidy([{"metric": "attempt.answer_rate", "group": "attempt_1", "estimate": 0.4, "ci_low": 0.37,
    ...            "ci_high": 0.43, "n": 1000, "attempt": 1, "period": "all"},
    ...           {"metric": "attempt.answer_rate", "group": "attempt_2", "estimate": 0.3, "ci_low": 0.26,
    ...            "ci_high": 0.34, "n": 600, "attempt": 2, "period": "all"}])
    >>> answer_rates_text(s, {"level": 0.9})
    'Answer rate by attempt: attempt 1 40% (n=1,000; 90% CI 37% to 43%), attempt 2 30% (n=600; 90% CI 26% to 34%).'
    """
    level = settings["level"]
    rows = summary[(summary["metric"] == "attempt.answer_rate") & (summary["period"] == "all")]
    parts = [f"attempt {int(r.attempt)} {pct(r.estimate)} (n={int(r.n):,}; {ci(r.ci_low, r.ci_high, level, fmt=pct)})"
             for r in rows.itertuples(index=False)]
    return "Answer rate by attempt: " + ", ".join(parts) + "."
