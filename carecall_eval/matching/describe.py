"""The words of a matching result: its one-line label (the ``method`` column of its summary) and its
plain-language text, built from its settings, counts and balance table (never from the matching code).

>>> label({"method": "nearest", "distance": "logit", "ratio": 5, "replace": True, "caliper": 0.2,
...        "std_caliper": True, "caliper_distance_units": 0.1234, "exact": ["trigger"], "mahalanobis": []})
'nearest-neighbour 5:1 with replacement on the logit of the propensity score, caliper 0.2 SD (0.1234), exact on trigger'
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from .defaults import SMD_THRESHOLD

__all__ = ["label", "text", "imbalanced_terms"]

_DISTANCES = {"ps": "propensity score", "logit": "logit of the propensity score"}


def label(settings: Mapping) -> str:
    """How the sample was made, in a few words (e.g. ``"nearest-neighbour 1:1 without replacement on the
    propensity score"``)."""
    p = settings
    if p["method"] == "nearest":
        dist = _DISTANCES.get(p["distance"] or "")
        s = f"nearest-neighbour {p['ratio']}:1 {'with' if p['replace'] else 'without'} replacement on the {dist}"
        if p["caliper"] is not None:
            s += (f", caliper {p['caliper']:g} SD ({p['caliper_distance_units']:.4g})" if p["std_caliper"]
                  else f", caliper {p['caliper']:g}")
        if p["exact"]:
            s += f", exact on {', '.join(p['exact'])}"
        if p["mahalanobis"]:
            s += f", Mahalanobis on {', '.join(p['mahalanobis'])}"
        return s
    if p["method"] == "cem":
        return "coarsened exact matching"
    return "inverse-probability (ATT odds) weighting" + (f", trimmed at q{p['trim']:g}" if p["trim"] else "")


def imbalanced_terms(balance: pd.DataFrame, threshold: float = SMD_THRESHOLD) -> pd.Series:
    """SMD after matching of the covariate terms (not the distance) with |SMD| >= ``threshold``,
    largest |SMD| first."""
    b = balance.drop(index="distance", errors="ignore")["smd_after"]
    bad = b[b.abs() >= threshold]
    return bad.reindex(bad.abs().sort_values(ascending=False, kind="stable").index)


def text(settings: Mapping, counts: pd.DataFrame, ess: pd.DataFrame, balance: pd.DataFrame,
         reused_controls: int) -> str:
    """Plain-language account: who was matched, who was dropped and why, which covariates remain imbalanced.

    Parameters
    ----------
    settings, counts, ess, balance
        As in :class:`~carecall_eval.matching.result.MatchResult` (``balance`` is its balance table).
    reused_controls
        Number of distinct controls with a positive weight (read when matching with replacement).
    """
    c = counts
    nt, nc = int(c.loc["all", "treated"]), int(c.loc["all", "control"])
    mt, mc = int(c.loc["matched", "treated"]), int(c.loc["matched", "control"])
    p = settings
    parts = []
    if p["method"] == "ipw":
        cap = f" (control weights capped at {p['trim_cap']:.3g}, their {p['trim']:g} quantile)" if p["trim"] else ""
        parts.append(
            f"Inverse-probability weighting for the ATT reweights {mc:,} control units to resemble "
            f"{mt:,} treated units{cap}; the controls' effective sample size is "
            f"{ess.loc['matched', 'control']:,.1f} of {mc:,}."
        )
    else:
        what = ("Coarsened exact matching" if p["method"] == "cem"
                else f"Matching ({label(p)})")
        parts.append(
            f"{what} kept {mt:,} of {nt:,} treated units ({100 * mt / nt:.1f}%) and {mc:,} of "
            f"{nc:,} control units."
        )
        lost = nt - mt
        if lost:
            why = []
            if int(c.loc["discarded", "treated"]):
                why.append(f"{int(c.loc['discarded', 'treated']):,} outside the common support")
            if int(c.loc["unmatched", "treated"]):
                if p["method"] == "cem":
                    reason = "in strata with no control unit"
                elif p["caliper"] is not None:
                    reason = "with no control within the caliper" + (" in their exact stratum" if p["exact"] else "")
                elif p["exact"]:
                    reason = "with no control left in their exact stratum"
                else:
                    reason = "with no control left to match"
                why.append(f"{int(c.loc['unmatched', 'treated']):,} {reason}")
            parts.append(
                f"{lost:,} treated units were dropped ({'; '.join(why)}), so estimates describe "
                "the matched treated units, not all of them."
            )
        if p["method"] == "nearest" and p["replace"]:
            parts.append(f"With replacement, {reused_controls:,} distinct controls were used; "
                         f"their effective sample size is {ess.loc['matched', 'control']:,.1f}.")
    bad = imbalanced_terms(balance)
    b = balance.drop(index="distance", errors="ignore")
    n_terms = len(b)
    before_bad = int((b["smd_before"].abs() >= SMD_THRESHOLD).sum())
    if len(bad) == 0:
        worst = b["smd_after"].abs().idxmax() if b["smd_after"].notna().any() else None
        tail = f" (largest: {worst}, {b.loc[worst, 'smd_after']:+.3f})" if worst is not None else ""
        parts.append(
            f"Balance: {before_bad} of {n_terms} covariate terms had |SMD| >= {SMD_THRESHOLD} before; "
            f"after, all have |SMD| < {SMD_THRESHOLD}{tail}."
        )
    else:
        listed = ", ".join(f"{k} ({v:+.2f})" for k, v in bad.items())
        parts.append(
            f"Balance: {before_bad} of {n_terms} covariate terms had |SMD| >= {SMD_THRESHOLD} before; "
            f"after, {len(bad)} {'remains' if len(bad) == 1 else 'remain'} imbalanced: {listed}. "
            "Adjust for them in the outcome model or tighten the matching."
        )
    return " ".join(parts)
