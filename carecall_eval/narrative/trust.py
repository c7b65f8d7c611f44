"""Sentences of the trust checks: the plasmode self-check and the sensitivity to hidden differences.

Built from a result's summary rows and settings only; levels come from
:func:`~carecall_eval.narrative.level_label`, horizons from
:func:`~carecall_eval.narrative.horizon_phrase`.
"""
from __future__ import annotations

import math

import pandas as pd

from . import ci, horizon_phrase, is_missing, level_label, num, pct, pct1, pts, spct

__all__ = ["selfcheck_text", "verdicts_text", "sensitivity_text", "verdict_words", "LABELS"]

#: Plain names of the figures checked.
LABELS = {"spending.matched_change": "the matched estimate (primary)",
          "spending.naive_change": "the naive before/after figure",
          "spending.did_change": "the difference in differences",
          "reach.sms_effect": "the SMS effect on reach"}


def verdict_words(verdict: str) -> str:
    """A verdict as a manager reads it."""
    return {"passes": "recovers the planted effect",
            "biased": "is biased",
            "intervals too narrow": "has intervals that are too narrow",
            "too few replicates": "could not be judged (too few replicates)"}.get(verdict, "was not available")


def _get(summary: pd.DataFrame, metric: str, group: str):
    s = summary[(summary["metric"] == metric) & (summary["group"] == group)]
    return None if s.empty else s.iloc[0]


def _fmt(group: str):
    return pts if group == "reach.sms_effect" else spct


def selfcheck_text(summary: pd.DataFrame, settings: dict) -> str:
    """The self-check in plain words: what was planted, what each figure recovered, and the verdicts."""
    level = settings["level"]
    lv = level_label(level)
    fpr_expected = pct(1 - level)
    parts = []
    if "spending.matched_change" in settings.get("estimators", {}):
        window = int(settings["window"])
        parts.append(
            f"Self-check on the operator's own customers: a known change of {spct(settings['effect'])} in "
            f"spending over {horizon_phrase(window)} was planted on pseudo-contacts drawn from "
            f"{num(float(settings.get('n_pool') or 0))} customers who were never reached, "
            f"{num(settings['replicates'])} times, and the usual analysis was run each time.")
    for group in settings.get("estimators", {}):
        verdict = settings.get("verdicts", {}).get(group)
        eff = _get(summary, "selfcheck.mean_estimate", group)
        cov = _get(summary, "selfcheck.coverage", group)
        fpr = _get(summary, "selfcheck.false_positive_rate", group)
        label = LABELS.get(group, group)
        f = _fmt(group)
        if eff is None or is_missing(eff["estimate"]):
            note = eff.get("note") if eff is not None and isinstance(eff.get("note"), str) else ""
            reason = note.replace("not available: ", "")
            parts.append(f"For {label} the check is not available" + (f" ({reason})." if reason else "."))
            continue
        truth = eff["truth"] if "truth" in eff and not is_missing(eff.get("truth")) else eff["injected"]
        if group == "reach.sms_effect":
            s = (f"With a pseudo-policy date before the real SMS policy and a planted rise in reach of about "
                 f"{pts(truth)}, {label} averaged {pts(eff['estimate'])}")
        else:
            s = f"Against the planted {spct(truth)}, {label} averaged {f(eff['estimate'])}"
        if cov is not None and not is_missing(cov["estimate"]):
            s += f"; its {lv} intervals contained the planted value in {pct(cov['estimate'])} of replicates"
        if fpr is not None and not is_missing(fpr["estimate"]):
            s += (f"; with nothing planted it reported an effect in {pct(fpr['estimate'])} of replicates "
                  f"(about {fpr_expected} is expected by chance)")
        s += f". Verdict: it {verdict_words(verdict or '')}."
        if group == "spending.naive_change" and verdict == "biased":
            s += (" The naive figure counts the fall in spending that follows every peak, with or without a call "
                  "(regression to the mean).")
        if group == "reach.sms_effect":
            s += " (The replicates share the same cases, so their rates are a placebo check across dates.)"
        parts.append(s)
    return " ".join(parts)


def verdicts_text(settings: dict) -> str:
    """The self-check's verdicts in one sentence, without figures (the table beside it has them)."""
    verdicts = settings.get("verdicts", {})
    bits = [f"{LABELS.get(g, g)} {verdict_words(v)}" for g, v in verdicts.items()]
    if not bits:
        return "The self-check could not judge any figure."
    s = "In short: " + "; ".join(bits) + "."
    if verdicts.get("spending.naive_change") == "biased":
        s += (" The naive figure counts the fall in spending that follows every peak, with or without a call "
              "(regression to the mean), which is why the report leads with the matched estimate.")
    return s[0].upper() + s[1:]


def _gamma_phrase(g: float) -> str:
    return f"{g:.2f}".rstrip("0").rstrip(".")


def sensitivity_text(summary: pd.DataFrame, settings: dict) -> str:
    """Rosenbaum's Γ, the tipping points and the robustness value in plain words."""
    level = settings["level"]
    parts = []
    g = summary[summary["metric"] == "sensitivity.rosenbaum_gamma"]
    if not g.empty:
        r = g.iloc[0]
        if is_missing(r["estimate"]):
            note = r.get("note") if isinstance(r.get("note"), str) else "not available"
            parts.append(f"Rosenbaum bounds: {note.replace('not available: ', '')}.")
        else:
            gs = _gamma_phrase(float(r["estimate"]))
            parts.append(
                f"Rosenbaum bounds: the matched comparison stays significant (a one-sided test at "
                f"{pct1(settings['alpha_one_sided'])}, matching the {level_label(level)} intervals) unless a "
                f"difference the data do not record made a customer more than {gs} times as likely to be reached "
                f"as the matched customers they are compared with"
                + (" (controls are reused across matched sets, so this is approximate)" if settings.get("replace")
                   else "") + ".")
    me = summary[summary["metric"] == "sensitivity.m_estimate"]
    if not me.empty and not is_missing(me.iloc[0]["estimate"]):
        r = me.iloc[0]
        unit = "days" if settings.get("outcome") == "active_days" else (settings.get("currency") or "currency")
        parts.append(f"The matched sets' robust estimate of the daily shift is {num(r['estimate'], 1)} {unit} "
                     f"({ci(r['ci_low'], r['ci_high'], level, fmt=lambda x: num(x, 1))}).")
    tip = summary[summary["metric"] == "sensitivity.tipping_spending_interval"]
    ppml = settings.get("ppml")
    if not tip.empty and ppml:
        contains = ppml["ci_low"] <= 0 <= ppml["ci_high"]
        if contains:
            parts.append(f"The primary estimate's {level_label(level)} interval already includes no change, so no "
                         "hidden trait is needed to explain it away.")
        else:
            shown = tip[tip["rr_reached"].isin([1.5, 2.0, 3.0])] if "rr_reached" in tip else tip.iloc[0:0]
            bits = []
            for _, r in shown.iterrows():
                a = _gamma_phrase(float(r["rr_reached"]))
                if is_missing(r["estimate"]):
                    bits.append(f"a trait {a} times as common among reached customers could not do it however "
                                "strongly it drove spending")
                else:
                    bits.append(f"a trait {a} times as common among reached customers would have to change spending "
                                f"{_gamma_phrase(float(r['estimate']))}-fold")
            if bits:
                parts.append("Tipping points: to carry the primary estimate's interval to no change, "
                             + "; ".join(bits) + ".")
    rv = summary[summary["metric"] == "sensitivity.robustness_value_interval"]
    if not rv.empty and not is_missing(rv.iloc[0]["estimate"]):
        v = float(rv.iloc[0]["estimate"])
        parts.append(("The matched difference in money is already compatible with zero at this level."
                      if v == 0 or math.isclose(v, 0.0) else
                      f"A hidden trait would have to explain {pct(v)} of what remains of both being reached and "
                      "spending to carry the matched difference in money to zero (robustness value)."))
    return " ".join(parts) or "Sensitivity analysis not available."
