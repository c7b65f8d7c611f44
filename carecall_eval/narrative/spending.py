"""Sentences of the spending result (:func:`carecall_eval.outcomes.spending.spending_effect`).

Built from the result's summary rows at its headline window and outcome, its
``settings`` (level, window, outcome label, design) and the decomposition plot
data, so the level and the window in the words are the ones the numbers used.

>>> import pandas as pd
>>> rows = pd.DataFrame([
...     {"metric": "spending.naive_change", "group": "contact", "estimate": -0.30, "ci_low": -0.4,
...      "ci_high": -0.2, "window": 28, "outcome": "tl"},
...     {"metric": "spending.matched_change", "group": "difference", "estimate": -0.10, "ci_low": -0.18,
...      "ci_high": -0.01, "window": 28, "outcome": "tl"}])
>>> settings = {"level": 0.9, "window": 28, "outcome": "tl", "outcome_label": "theoretical loss",
...             "design": {"contact": "reached", "comparison": "unreached", "pre_window": 84}}
>>> print(text(rows, settings))    # doctest: +NORMALIZE_WHITESPACE
Among reached customers, theoretical loss fell 30% (90% CI -40% to -20%) in the 28 days after the index
compared with the 12 weeks before (the naive figure). The matched estimate of what the call itself did is
-10.0% (90% CI -18.0% to -1.0%).
"""
from __future__ import annotations

import pandas as pd

from . import ci, excludes, horizon_phrase, is_missing, pct, spct, spct1

__all__ = ["text"]

#: Who the contacts are, by the design's ``contact`` rule.
WHO = {"reached": "reached customers", "selected": "customers selected for a call"}
#: Who the comparison is, by the design's ``comparison`` rule.
OTHERS = {"unreached": "who were not reached", "not_selected": "who were not selected"}


def _row(summary: pd.DataFrame, metric: str, group: str, window: int, outcome: str):
    s = summary[(summary["metric"] == metric) & (summary["group"] == group)]
    if "window" in s.columns:
        s = s[s["window"] == window]
    if "outcome" in s.columns:
        s = s[s["outcome"] == outcome]
    return s.iloc[0] if len(s) else None


def _available(r) -> bool:
    return r is not None and not is_missing(r["estimate"])


def text(summary: pd.DataFrame, settings: dict, decomposition: pd.DataFrame | None = None) -> str:
    """Plain-language findings of a spending result.

    Parameters
    ----------
    summary : pandas.DataFrame
        The result's tidy rows (``window`` and ``outcome`` columns pick the headline rows).
    settings : dict
        ``level``, ``window``, ``outcome``, ``outcome_label`` and ``design``
        (``contact``, ``comparison``, ``pre_window``).
    decomposition : pandas.DataFrame, optional
        The ``decomposition`` plot data (steps and values per 100 of pre-window spending).
    """
    level, window, outcome = settings["level"], int(settings["window"]), settings["outcome"]
    design = settings.get("design") or {}
    label = settings.get("outcome_label", outcome)
    pre = int(design.get("pre_window", 84))
    after, before = horizon_phrase(window), horizon_phrase(pre)
    who = WHO.get(str(design.get("contact")), "contacts")
    parts = []

    nv = _row(summary, "spending.naive_change", "contact", window, outcome)
    if _available(nv):
        direction = "fell" if nv["estimate"] < 0 else "rose"
        parts.append(f"Among {who}, {label} {direction} {pct(abs(nv['estimate']))} "
                     f"({ci(nv['ci_low'], nv['ci_high'], level)}) in the {after} after the index compared with "
                     f"the {before} before (the naive figure).")
    if decomposition is not None and len(decomposition) > 1 and not is_missing(decomposition.iloc[1]["value"]):
        anyway = float(decomposition.iloc[1]["value"])
        others = OTHERS.get(str(design.get("comparison")), "in the comparison group")
        # a fall without the call is regression to the mean (customers are selected at a peak of their play)
        why = " (regression to the mean: customers are selected at a peak)" if anyway < 0 else ""
        parts.append(f"Comparable customers {others} changed by {anyway:+.0f} points per 100 anyway{why}.")
    m = _row(summary, "spending.matched_change", "difference", window, outcome)
    if _available(m):
        sig = excludes(m["ci_low"], m["ci_high"])
        parts.append(f"The matched estimate of what the call itself did is {spct1(m['estimate'])} "
                     f"({ci(m['ci_low'], m['ci_high'], level, fmt=spct1)})"
                     + ("." if sig else ", which cannot be told apart from no effect."))
    else:
        parts.append(f"The matched estimate of what the call itself did is not available in the {after} after "
                     "the index.")
    did = _row(summary, "spending.did_change", "difference", window, outcome)
    if _available(did):
        parts.append(f"The difference-in-differences figure ({spct1(did['estimate'])}) is shown for reference "
                     "only: it carries any gap in raw pre-window spending between the matched groups straight "
                     "into the estimate, and with heavy-tailed spending such gaps are large even when the groups "
                     "balance on the log scale; on simulated operators with a known effect it was about 50% less "
                     "precise than the matched estimate.")
    pl = _row(summary, "spending.placebo_change", "difference", window, outcome)
    if _available(pl):
        ok = not excludes(pl["ci_low"], pl["ci_high"])
        parts.append(f"Placebo check (pseudo-index {before} earlier): {spct1(pl['estimate'])} "
                     f"({ci(pl['ci_low'], pl['ci_high'], level, fmt=spct)})"
                     + (" - no spurious effect." if ok else " - WARNING: an effect where none can exist; treat "
                                                            "the estimate with caution."))
    return " ".join(parts)
