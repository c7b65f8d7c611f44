"""Sentences of the programme analyses (:mod:`carecall_eval.outcomes.programme`), from summary rows and settings.

One function per analysis: :func:`timing_text`, :func:`speed_text`, :func:`heterogeneity_text`,
:func:`durability_text`, :func:`callers_text`, :func:`repeat_text`.  Levels and horizons come from the
package's formatters only.

>>> from carecall_eval.results import tidy
>>> s = tidy([{"metric": "durability.matched_change", "group": "difference", "estimate": -0.12, "ci_low": -0.2,
...            "ci_high": -0.04, "n": 900, "window": 28},
...           {"metric": "durability.matched_change", "group": "difference", "estimate": -0.02, "ci_low": -0.15,
...            "ci_high": 0.12, "n": 300, "window": 365}])
>>> print(durability_text(s, {"level": 0.9, "windows": [28, 365], "outcome_label": "theoretical loss"}))
... # doctest: +NORMALIZE_WHITESPACE
Effect of a reached call on theoretical loss, each window against its own matched comparison with complete
follow-up: 28 days -12.0% (90% CI -20.0% to -4.0%); 12 months -2.0% (90% CI -15.0% to +12.0%). The effect at
12 months cannot be told apart from no effect.
"""
from __future__ import annotations

import pandas as pd

from . import ci, excludes, horizon_phrase, is_missing, level_label, num, pct, pct1, pts, spct1

__all__ = ["timing_text", "speed_text", "heterogeneity_text", "durability_text", "callers_text", "repeat_text"]


def _rows(summary: pd.DataFrame, metric: str, group: str | None = None, **where) -> pd.DataFrame:
    s = summary[summary["metric"] == metric]
    if group is not None:
        s = s[s["group"] == group]
    for k, v in where.items():
        s = s[s[k] == v]
    return s


def _one(summary, metric, group=None, **where):
    s = _rows(summary, metric, group, **where)
    return s.iloc[0] if len(s) else None


def _ok(r) -> bool:
    return r is not None and not is_missing(r["estimate"])


def group_label(group: str) -> str:
    """``"main_product=sports"`` -> ``"main product: sports"`` (for people)."""
    dim, _, value = str(group).partition("=")
    return f"{dim.replace('_', ' ')}: {value.replace('_', ' ')}" if value else dim.replace("_", " ")


def _hours(x: float) -> str:
    if is_missing(x):
        return "n/a"
    return f"{x:.0f} minutes" if x < 1 else (f"{x:.1f} hours" if x < 48 else f"{x / 24:.1f} days")


def timing_text(summary: pd.DataFrame, settings: dict) -> str:
    """When customers answer (:func:`~carecall_eval.outcomes.programme.timing.answer_timing`)."""
    level = settings["level"]
    parts = []
    b, w, d = (_one(summary, m) for m in ("timing.best_slot", "timing.worst_slot", "timing.best_vs_worst"))
    if _ok(b) and _ok(w):
        parts.append(f"For the same attempts (the same customers, attempt numbers and months), calls on "
                     f"{b['weekday']} at {int(b['hour']):02d}h would be answered most often, {pct(b['estimate'])} "
                     f"({ci(b['ci_low'], b['ci_high'], level, fmt=pct)}), and on {w['weekday']} at "
                     f"{int(w['hour']):02d}h least often, {pct(w['estimate'])} "
                     f"({ci(w['ci_low'], w['ci_high'], level, fmt=pct)}); the gap is {pts(d['estimate'])} "
                     f"({ci(d['ci_low'], d['ci_high'], level, fmt=pts)}).")
        parts.append("The best slot is the highest of many estimates, so it is likely to be a little lower in "
                     "practice.")
    tests = []
    for m, what in (("timing.hour_test", "hour of day"), ("timing.weekday_test", "weekday")):
        r = _one(summary, m)
        if _ok(r):
            tests.append(f"the {what} {'clearly matters' if r['estimate'] < 1 - level else 'shows no clear effect'}"
                         f" (p = {r['estimate']:.3f})")
    if tests:
        parts.append("Taken together, " + " and ".join(tests) + ".")
    dl, ta, wi = (_one(summary, m) for m in ("timing.sms_delay_median_min", "timing.sms_to_answer_median_h",
                                              "timing.reached_within_window_after_sms"))
    if _ok(dl):
        s = f"The missed-call SMS went out a median of {num(dl['estimate'])} minutes after the missed attempt"
        if _ok(ta):
            s += (f"; customers who answered after it did so a median of {_hours(ta['estimate'])} later "
                  f"({ci(ta['ci_low'], ta['ci_high'], level, fmt=_hours)})")
        if _ok(wi):
            s += (f", and {pct(wi['estimate'])} of SMS cases were reached within "
                  f"{settings.get('sms_window_hours', 48):g} hours of it")
        parts.append(s + ".")
    elif dl is not None:
        parts.append("No missed-call SMS was sent, so its timing cannot be described.")
    return " ".join(parts)


def speed_text(summary: pd.DataFrame, settings: dict) -> str:
    """How fast cases are worked (:func:`~carecall_eval.outcomes.programme.speed.case_speed`)."""
    level, window = settings["level"], int(settings["window"])
    parts = []
    steps = [("speed.trigger_to_opening_median_days", "from the trigger to the case's opening"),
             ("speed.opening_to_first_attempt_median_days", "from opening to the first attempt"),
             ("speed.first_attempt_to_reach_median_days", "from the first attempt to reaching the customer"),
             ("speed.trigger_to_reach_median_days", "from the trigger to reaching the customer")]
    said = []
    for m, what in steps:
        r = _one(summary, m, "all")
        if _ok(r):
            said.append(f"{num(r['estimate'], 1)} days {what}")
    if said:
        parts.append("Median times over all phone cases: " + "; ".join(said) + ".")
    bands = _rows(summary, "speed.effect_by_days_to_contact")
    shown = [f"{r['group']} {spct1(r['estimate'])} ({ci(r['ci_low'], r['ci_high'], level, fmt=spct1)})"
             for _, r in bands.iterrows() if _ok(r)]
    if shown:
        parts.append(f"Matched effect on {settings.get('outcome_label', 'theoretical loss')} in the "
                     f"{horizon_phrase(window)} after opening, by days from the trigger to reaching the customer: "
                     + "; ".join(shown) + ".")
    sl = _one(summary, "speed.effect_per_day_of_delay")
    if _ok(sl):
        grows = "weaker" if sl["estimate"] > 0 else "stronger"
        sig = excludes(sl["ci_low"], sl["ci_high"])
        parts.append(f"Each extra day before contact changes the spending ratio by {spct1(sl['estimate'])} "
                     f"({ci(sl['ci_low'], sl['ci_high'], level, fmt=spct1)}): "
                     + (f"the effect is {grows} the later the call." if sig
                        else "no clear change with the time to contact."))
        parts.append("Fast and slow cases differ in who they are and in how many days of the window come before "
                     "the call; the bands compare each with its own matched customers, not with each other.")
    return " ".join(parts)


def heterogeneity_text(summary: pd.DataFrame, settings: dict) -> str:
    """Who benefits most (:func:`~carecall_eval.outcomes.programme.heterogeneity.effect_heterogeneity`)."""
    level, window = settings["level"], int(settings["window"])
    parts = []
    ov = _one(summary, "heterogeneity.overall_change", "all")
    if _ok(ov):
        parts.append(f"Overall, the matched effect on {settings.get('outcome_label', 'theoretical loss')} in the "
                     f"{horizon_phrase(window)} after opening is {spct1(ov['estimate'])} "
                     f"({ci(ov['ci_low'], ov['ci_high'], level, fmt=spct1)}).")
    sub = _rows(summary, "heterogeneity.change")
    ok = sub[sub["estimate"].notna()]
    if len(ok):
        lo, hi = ok.loc[ok["estimate"].idxmin()], ok.loc[ok["estimate"].idxmax()]
        parts.append(f"The largest reduction is among {group_label(lo['group'])} ({spct1(lo['estimate'])}, "
                     f"{ci(lo['ci_low'], lo['ci_high'], level, fmt=spct1)}), the smallest among "
                     f"{group_label(hi['group'])} ({spct1(hi['estimate'])}).")
    q = _rows(summary, "heterogeneity.q_test")
    differ = [group_label(r["group"]) for _, r in q.iterrows() if _ok(r) and r["estimate"] < 1 - level]
    same = [group_label(r["group"]) for _, r in q.iterrows() if _ok(r) and r["estimate"] >= 1 - level]
    if differ:
        parts.append("The effect differs between groups by " + ", ".join(differ) + " (Cochran's Q).")
    if same:
        parts.append("By " + ", ".join(same) + " the differences are within chance (Cochran's Q).")
    n_cmp = int(settings.get("n_comparisons", len(ok)))
    if n_cmp:
        exp = n_cmp * (1 - level)
        parts.append(f"Caution: {n_cmp} subgroup estimates were made; at {level_label(level)} intervals about "
                     f"{exp:.1f} of them would exclude the overall effect by chance alone, so a single striking "
                     "subgroup is a lead to check, not a finding.")
    return " ".join(parts)


def durability_text(summary: pd.DataFrame, settings: dict) -> str:
    """Whether the effect lasts (:func:`~carecall_eval.outcomes.programme.durability.effect_durability`)."""
    level = settings["level"]
    label = settings.get("outcome_label", "theoretical loss")
    said, null = [], []
    for w in settings["windows"]:
        r = _one(summary, "durability.matched_change", "difference", window=int(w))
        if _ok(r):
            said.append(f"{horizon_phrase(int(w))} {spct1(r['estimate'])} "
                        f"({ci(r['ci_low'], r['ci_high'], level, fmt=spct1)})")
            if not excludes(r["ci_low"], r["ci_high"]):
                null.append(horizon_phrase(int(w)))
        elif r is not None:
            why = str(r.get("note", "")).replace("not available: ", "")
            said.append(f"{horizon_phrase(int(w))} not available ({why})")
    out = (f"Effect of a reached call on {label}, each window against its own matched comparison with complete "
           f"follow-up: " + "; ".join(said) + ".")
    if null:
        out += f" The effect at {', '.join(null)} cannot be told apart from no effect."
    common = _rows(summary, "durability.matched_change_common")
    if len(common) and common["estimate"].notna().any():
        w_long = int(settings["windows"][-1])
        out += (f" Restricted to the customers followed for the full {horizon_phrase(w_long)}, so that every window "
                "describes the same people: " + "; ".join(
                    f"{horizon_phrase(int(r['window']))} {spct1(r['estimate'])}" for _, r in common.iterrows()
                    if _ok(r)) + ".")
    return out


def callers_text(summary: pd.DataFrame, settings: dict) -> str:
    """How callers differ (:func:`~carecall_eval.outcomes.programme.callers.caller_profiles`)."""
    level = settings["level"]
    k = int(settings.get("n_callers", 0))
    parts = [f"{k} callers are compared on the same footing: each figure is adjusted for the cases they worked "
             "(attempt number, hour, weekday, month and case mix) and pulled towards the average in proportion to "
             "how few calls it rests on, so that a caller with a handful of calls is not ranked by chance."]
    for metric, what in (("callers.answer_sd", "the odds of an attempt being answered"),
                         ("callers.action_sd", "the odds that a call ends in a limit, pause or self-exclusion"),
                         ("callers.spending_sd", "the spending effect")):
        r = _one(summary, metric, "between_callers")
        if _ok(r):
            parts.append(f"The between-caller standard deviation of {what} is {r['estimate']:.2f} on the log scale "
                         f"({ci(r['ci_low'], r['ci_high'], level, fmt=lambda v: f'{v:.2f}')}).")
    ans = _rows(summary, "callers.answer_rate")
    ans = ans[ans["estimate"].notna()]
    if len(ans) > 1:
        hi, lo = ans.loc[ans["estimate"].idxmax()], ans.loc[ans["estimate"].idxmin()]
        sep = hi["ci_low"] > lo["ci_high"]
        parts.append(f"Standardised answer rates run from {pct(lo['estimate'])} to {pct(hi['estimate'])}"
                     + (" and the two ends are clearly apart." if sep else
                        f"; their {level_label(level)} intervals overlap."))
    parts.append("Callers work different cases and shifts; the adjustment removes what the data record, not "
                 "everything, so use these figures for coaching conversations, not for ranking staff.")
    return " ".join(parts)


def repeat_text(summary: pd.DataFrame, settings: dict) -> str:
    """Repeat contact (:func:`~carecall_eval.outcomes.programme.repeat.repeat_contact`)."""
    level, h = settings["level"], int(settings["horizon"])
    within = horizon_phrase(h)
    parts = []
    hid = settings["horizon_id"]
    allc = _one(summary, f"repeat.any_new_case_{hid}", "all_cases")
    if _ok(allc) and allc["estimate"] == 0:
        parts.append(f"None of the {int(allc['n']):,} customers with a phone case followed for {within} had another "
                     f"case within that time: new cases seem not to be opened within {within} of the last one.")
    elif _ok(allc):
        parts.append(f"{pct1(allc['estimate'])} of customers with a phone case had another case within {within} "
                     f"({ci(allc['ci_low'], allc['ci_high'], level, fmt=pct1)}; {int(allc['n']):,} customers "
                     "followed that long).")
    c, k, d = (_one(summary, f"repeat.new_case_{hid}", g) for g in ("contact", "comparison", "difference"))
    if _ok(c) and _ok(k) and not (_ok(allc) and allc["estimate"] == 0):
        parts.append(f"Among matched customers, {pct1(c['estimate'])} of those reached and {pct1(k['estimate'])} of "
                     f"those not reached had a new case within {within}"
                     + (f" (difference {pts(d['estimate'])}, {ci(d['ci_low'], d['ci_high'], level, fmt=pts)})."
                        if _ok(d) else "."))
    sc = _one(summary, "repeat.second_call_change", "difference")
    n2 = settings.get("second_cases", {})
    if _ok(sc):
        parts.append(f"For customers reached before, being reached again on the later case changed "
                     f"{settings.get('outcome_label', 'theoretical loss')} over "
                     f"{horizon_phrase(int(settings['window']))}"
                     f" by {spct1(sc['estimate'])} ({ci(sc['ci_low'], sc['ci_high'], level, fmt=spct1)}) against "
                     f"those not reached again ({n2.get('contact', 0):,} and {n2.get('comparison', 0):,} cases).")
    elif sc is not None:
        why = str(sc.get("note", "")).replace("not available: ", "")
        parts.append(f"What a second call adds cannot be estimated from these data: {why}.")
    return " ".join(parts)
