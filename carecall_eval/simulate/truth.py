"""The truth the simulator knows: per chunk, sums over the potential outcomes (play with and without the
contact, reach with and without the SMS policy); combined over chunks into the content of ``truth.json``."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from .._version import __version__
from . import programme
from .params import SimulationParams
from .play import day_sum

_WINDOWS = (28, 84, 365)        # post windows (days from the case's opening) of the realised effect


def chunk_truth(p: SimulationParams, case_rows: list[dict], tl_actual: np.ndarray, tl_base: np.ndarray,
                closed_day: np.ndarray, registered_day: np.ndarray) -> dict:
    """Sums the truth needs, per chunk (combined across chunks by :func:`accumulate`)."""
    T = p.days
    out: dict = {"pre84": 0.0, "post84": 0.0, "post84_actual_w": {}, "post_base_w": {},
                 "reach_pre": [0, 0], "reach_post": [0, 0], "reach_post_without": 0,
                 "retained": [0, 0], "rct": {}}
    seen = set()
    for w in _WINDOWS:
        out["post84_actual_w"][w] = 0.0
        out["post_base_w"][w] = 0.0
    for c in case_rows:
        i, o = c["_i"], c["opened_day"]
        phone = c["channel"] == "phone" and c["arm"] != "control"
        if phone and c["arm"] is None and o < T:
            if c["_post_policy"]:
                out["reach_post"][0] += int(c["_reached_with"])
                out["reach_post"][1] += 1
                out["reach_post_without"] += int(c["_reached_without"])
            else:
                out["reach_pre"][0] += int(c["_reached_with"])
                out["reach_pre"][1] += 1
        reached = c["_answer_day"] is not None and c["_answer_day"] < T
        if c["arm"] is not None and o + 84 <= T and o - 84 >= 0:
            d = out["rct"].setdefault(c["arm"], {"actual": 0.0, "base": 0.0, "n": 0, "reached": 0})
            d["actual"] += float(day_sum(tl_actual, i, o, o + 84))
            d["base"] += float(day_sum(tl_base, i, o, o + 84))
            d["n"] += 1
            d["reached"] += int(reached)
        if not (reached and c["arm"] is None) or i in seen:
            continue
        seen.add(i)
        if o - 84 >= 0 and o + 84 <= T and registered_day[i] <= o - 84:
            out["pre84"] += float(day_sum(tl_actual, i, o - 84, o))
            out["post84"] += float(day_sum(tl_actual, i, o, o + 84))
        for w in _WINDOWS:
            if o + w <= T:
                out["post84_actual_w"][w] += float(day_sum(tl_actual, i, o, o + w))
                out["post_base_w"][w] += float(day_sum(tl_base, i, o, o + w))
        if o + 365 <= T:
            out["retained"][1] += 1
            out["retained"][0] += int(not (0 <= closed_day[i] < o + 365))
    return out


def accumulate(acc: dict, t: dict, attempts: pd.DataFrame) -> None:
    """Add one chunk's sums ``t`` and its answered calls (from ``attempts``) to ``acc``."""
    for k in ("pre84", "post84", "reach_post_without"):
        acc[k] = acc.get(k, 0) + t[k]
    for k in ("reach_pre", "reach_post", "retained"):
        a = acc.setdefault(k, [0, 0])
        a[0] += t[k][0]
        a[1] += t[k][1]
    for k in ("post84_actual_w", "post_base_w"):
        d = acc.setdefault(k, {})
        for w, v in t[k].items():
            d[w] = d.get(w, 0.0) + v
    if "trial" in t:
        from .trial import add_truth

        add_truth(acc.setdefault("trial", {}), t["trial"])
    if "programme" in t:
        programme.add_truth(acc.setdefault("programme", {}), t["programme"])
    for arm, d in t["rct"].items():
        a = acc.setdefault("rct", {}).setdefault(arm, {"actual": 0.0, "base": 0.0, "n": 0, "reached": 0})
        for k in a:
            a[k] += d[k]
    att = attempts[attempts["answered"]]
    acc.setdefault("durations", []).append(att["duration_s"].to_numpy())
    acc.setdefault("outcomes", []).append(att["outcome"].to_numpy())
    acc.setdefault("receptions", []).append(att["reception"].to_numpy())


def finish_truth(p: SimulationParams, acc: dict) -> dict:
    """The content of ``truth.json`` from the sums of every chunk."""
    dur = np.concatenate(acc["durations"]) if acc.get("durations") else np.array([])
    outc = pd.Series(np.concatenate(acc["outcomes"])) if acc.get("outcomes") else pd.Series([], dtype=object)
    rec = pd.Series(np.concatenate(acc["receptions"])) if acc.get("receptions") else pd.Series([], dtype=object)

    def ratio(a, b):
        return float(a / b) if b else None

    realised_att = {
        f"post_{w}d": (ratio(acc["post84_actual_w"][w], acc["post_base_w"][w]) - 1)
        if acc["post_base_w"].get(w) else None
        for w in acc.get("post84_actual_w", {})
    }
    rp, rq = acc.get("reach_pre", [0, 0]), acc.get("reach_post", [0, 0])
    reach_after = ratio(rq[0], rq[1])
    reach_after_without = ratio(acc.get("reach_post_without", 0), rq[1])
    rct = {}
    for arm, d in acc.get("rct", {}).items():
        rct[arm] = {"n": d["n"], "reached": d["reached"],
                    "realised_effect_post_84d": (ratio(d["actual"], d["base"]) - 1) if d["base"] else None}
    rec_valid = rec.dropna()
    truth: dict = {
        "package_version": __version__,
        # the randomized study's knobs only when it is on, so data without one keep their truth.json
        "params": programme.truth_params({k: v for k, v in asdict(p).items()
                                          if p.trial is not None or not k.startswith("trial")}),
        "true_effects": {
            "call_stake_multiplier": p.call_effect,
            "call_effect_on_stakes": p.call_effect - 1,
            "letter_effect_on_stakes": p.letter_effect - 1,
            "closure_hazard_ratio_call": p.closure_hr_call,
            "sms_log_odds_later_attempts": p.sms_log_odds,
            "note": ("An answered call multiplies stakes (and so theoretical loss) by call_stake_multiplier from "
                     "the day it is answered; realised_att_theoretical_loss gives the realised effect over post "
                     "windows counted from the case's opening day, for the first reached case of each customer "
                     "(a few pre-answer days dilute the 28-day window slightly; via-call pauses and "
                     "self-exclusions add to it)."),
        },
        "realised": {
            "realised_att_theoretical_loss": realised_att,
            "naive_change_reached_84d": ratio(acc.get("post84", 0), acc.get("pre84", 0)) - 1
            if acc.get("pre84") else None,
            "reach_before_sms": ratio(rp[0], rp[1]),
            "reach_after_sms": reach_after,
            "n_cases_before_sms": rp[1],
            "n_cases_after_sms": rq[1],
            "reach_after_sms_without_policy": reach_after_without,
            "sms_effect_on_reach": (reach_after - reach_after_without) if reach_after is not None else None,
            "call_length_mean_s": float(dur.mean()) if dur.size else None,
            "call_length_median_s": float(np.median(dur)) if dur.size else None,
            "n_answered_calls": int(dur.size),
            "outcome_shares": {k: float(v) for k, v in outc.value_counts(normalize=True).sort_index().items()},
            "reception_shares": {k: float(v) for k, v in rec_valid.value_counts(normalize=True).sort_index().items()},
            "retention_account_12m_reached": ratio(acc.get("retained", [0, 0])[0], acc.get("retained", [0, 0])[1]),
            "n_reached_with_12m_followup": acc.get("retained", [0, 0])[1],
            "rct": rct,
        },
    }
    if p.trial is not None:
        from .trial import finish

        truth["realised"]["trial"] = finish(p, acc.get("trial", {}))
    if programme.active(p):
        truth["true_effects"]["programme"] = programme.true_effects(p)
        truth["realised"]["programme"] = programme.finish(p, acc.get("programme", {}))
    return truth
