"""Sentences of the retention result, from its summary rows and settings (level, horizon, label)."""
from __future__ import annotations

import pandas as pd

from . import ci, horizon_phrase, hr, is_missing, pct

__all__ = ["text"]


def _row(summary: pd.DataFrame, prefix: str, group: str):
    rows = summary[summary["metric"].astype(str).str.startswith(prefix) & (summary["group"] == group)]
    return rows.iloc[0] if len(rows) else None


def _reason(row) -> str:
    note = row.get("note") if row is not None else None
    if isinstance(note, str) and note:
        return note.removeprefix("not available: ")
    return "no estimate"


def text(summary: pd.DataFrame, settings: dict) -> str:
    """Plain-language retention findings.

    >>> from carecall_eval.results import tidy
    >>> s = tidy([{"metric": "retention.account_180d", "group": "contact", "estimate": 0.97},
    ...           {"metric": "retention.account_180d", "group": "comparison", "estimate": 0.96},
    ...           {"metric": "retention.hazard_ratio", "group": "difference", "estimate": 0.8,
    ...            "ci_low": 0.5, "ci_high": 1.3, "events": 40}])
    >>> text(s, {"horizon": 180, "level": 0.9})
    '97% of reached customers were still customers after 180 days (comparison: 96%). Hazard ratio of leaving, \
reached vs comparison: 0.80 (90% CI 0.50 to 1.30); based on 40 customers who left.'
    """
    level, horizon = settings["level"], settings["horizon"]
    label = settings.get("label")
    who = f"customers {label}" if label else "reached customers"
    when = horizon_phrase(horizon)
    contact = _row(summary, "retention.account_", "contact")
    comparison = _row(summary, "retention.account_", "comparison")
    if contact is None or is_missing(contact["estimate"]):
        out = f"Retention of {who} after {when} is not available: {_reason(contact)}."
    else:
        out = f"{pct(contact['estimate'])} of {who} were still customers after {when}"
        if comparison is None or is_missing(comparison["estimate"]):
            out += f" (comparison: not available, {_reason(comparison)})."
        else:
            out += f" (comparison: {pct(comparison['estimate'])})."
    h = _row(summary, "retention.hazard_ratio", "difference")
    if h is not None and not is_missing(h["estimate"]):
        events = h.get("events")
        out += (f" Hazard ratio of leaving, reached vs comparison: {hr(h['estimate'])} "
                f"({ci(h['ci_low'], h['ci_high'], level, fmt=hr)})"
                + (f"; based on {int(events)} customers who left." if not is_missing(events) else "."))
    return out
