"""Programme truths: when customers answer, whom a call helps most, how long it lasts, how callers differ.

Knobs of :class:`~.params.SimulationParams` (every default reproduces the data of earlier versions byte
for byte, and leaves ``truth.json`` as it was):

* ``answer_hour_log_odds`` (24 values) and ``answer_weekday_log_odds`` (7, Monday first) replace the
  default evening (+0.20 at 17-19 h) and weekend (-0.25) terms of the answer model;
* ``call_effect_spend_slope`` and ``call_effect_delay_slope`` make the call's stake multiplier
  ``call_effect * exp(spend_slope * (log_spend - 9) + delay_slope * days + caller effect)``, where
  ``log_spend`` is the customer's long-run log theoretical loss per 84 days (the answer model's) and
  ``days`` the days from the trigger to the answered call (clipped to 0.2 .. 1.5);
* ``call_effect_half_life``: the log multiplier halves every so many days after the call;
* ``second_call_effect``: a customer answering a later case's call has their current multiplier
  multiplied by it (by default a later call only restores the case's own multiplier);
* ``caller_answer_sd``, ``caller_effect_sd``, ``caller_action_sd``: each of the twelve callers has an
  effect (centred over callers) on the log-odds of answering, on the log stake multiplier and on the
  log-odds that a call ends in a limit, pause or self-exclusion; then every attempt's caller is drawn
  when it is made (otherwise callers are drawn after the fact and have no effect).

With any of them set (or ``programme_truth=True``), ``truth.json`` records them under
``true_effects.programme`` and the realised effects under ``realised.programme``: by tertile of
pre-window theoretical loss, by day from trigger to reach, by caller (all at 84 days from the case's
opening, for each customer's first reached case, from the potential outcomes), and of a second call.
"""
from __future__ import annotations

from dataclasses import fields
from functools import lru_cache

import numpy as np

from .params import SimulationParams

#: The knobs of this module and their defaults (at which ``truth.json`` does not mention them).
KNOBS = ("answer_evening_log_odds", "answer_weekend_log_odds", "answer_hour_log_odds", "answer_weekday_log_odds",
         "call_effect_spend_slope", "call_effect_delay_slope", "call_effect_half_life", "second_call_effect",
         "caller_answer_sd", "caller_effect_sd", "caller_action_sd", "programme_truth")
DEFAULTS = {f.name: f.default for f in fields(SimulationParams) if f.name in KNOBS}
#: Window (days from the case's opening) of the realised programme effects.
WINDOW = 84
#: Centre of the long-run log spending in the call multiplier.
SPEND_CENTRE = 9.0
#: Outcomes that count as an action agreed on the call (indices into ``calls.OUTCOMES``).
ACTION_OUTCOMES = (0, 1, 2)
N_CALLERS = 12


def active(p: SimulationParams) -> bool:
    """Whether any programme knob is set (then the truths are recorded)."""
    return any(getattr(p, k) != v for k, v in DEFAULTS.items())


def callers_vary(p: SimulationParams) -> bool:
    return p.caller_answer_sd > 0 or p.caller_effect_sd > 0 or p.caller_action_sd > 0


def hour_log_odds(p: SimulationParams, hour: int) -> float:
    if p.answer_hour_log_odds is None:
        return p.answer_evening_log_odds * (17 <= hour <= 19)
    return float(p.answer_hour_log_odds[hour])


def weekday_log_odds(p: SimulationParams, weekday: int) -> float:
    if p.answer_weekday_log_odds is None:
        return p.answer_weekend_log_odds * (weekday >= 5)
    return float(p.answer_weekday_log_odds[weekday])


@lru_cache(maxsize=8)
def caller_effects(p: SimulationParams) -> dict[str, np.ndarray]:
    """Each caller's effects (centred over callers), from their own generator: the same in every chunk."""
    rng = np.random.default_rng([p.seed, 16])
    z = rng.standard_normal((3, N_CALLERS))
    z -= z.mean(axis=1, keepdims=True)
    return {"answer": p.caller_answer_sd * z[0], "effect": p.caller_effect_sd * z[1],
            "action": p.caller_action_sd * z[2]}


def draw_callers(p: SimulationParams, rng: np.random.Generator, n: int) -> np.ndarray | None:
    """The caller (index) of each of a case's ``n`` attempts, or None when callers do not vary."""
    if not callers_vary(p):
        return None
    return rng.integers(0, N_CALLERS, n)


def outcome_p(p: SimulationParams, base: np.ndarray, caller: int | None) -> np.ndarray:
    """Outcome probabilities of a call by ``caller``: the odds of an action shifted by their effect."""
    if caller is None or p.caller_action_sd == 0:
        return base
    act = np.zeros(len(base), bool)
    act[list(ACTION_OUTCOMES)] = True
    pa = base[act].sum()
    q = 1 / (1 + np.exp(-(np.log(pa / (1 - pa)) + caller_effects(p)["action"][caller])))
    return np.where(act, base * q / pa, base * (1 - q) / (1 - pa))


def call_multiplier(p: SimulationParams, log_spend: float, delay: int, caller: int | None) -> float | None:
    """The stake multiplier of an answered call; None when it is the plain ``call_effect``."""
    if p.call_effect_spend_slope == 0 and p.call_effect_delay_slope == 0 and (caller is None or
                                                                              p.caller_effect_sd == 0):
        return None
    u = 0.0 if caller is None else float(caller_effects(p)["effect"][caller])
    log_m = (np.log(p.call_effect) + p.call_effect_spend_slope * (log_spend - SPEND_CENTRE)
             + p.call_effect_delay_slope * delay + u)
    return float(np.clip(np.exp(log_m), 0.2, 1.5))


def current_multiplier(p: SimulationParams, mult: np.ndarray, since: np.ndarray, t: int) -> np.ndarray:
    """The multiplier on day ``t`` of calls answered on ``since`` with initial multiplier ``mult``."""
    if p.call_effect_half_life is None:
        return mult
    age = np.maximum(t - since, 0)
    return np.exp(np.log(mult) * 0.5 ** (age / p.call_effect_half_life))


# ------------------------------------------------------------------------------------------------ truth
def chunk_truth(p: SimulationParams, case_rows: list[dict], tl_actual: np.ndarray, tl_base: np.ndarray,
                registered_day: np.ndarray) -> dict:
    """Per chunk: the first reached case of each customer (outside a study) with what the truths need."""
    from .play import day_sum  # play imports this module

    T, w = p.days, WINDOW
    first, second = [], {"n_cases": 0, "n_reached": 0, "actual": 0.0, "counterfactual": 0.0, "n_window": 0}
    seen: set = set()
    for c in case_rows:
        i, o = c["_i"], c["opened_day"]
        if c["arm"] is not None or c["channel"] != "phone" or o >= T:
            continue
        reached = c["_answer_day"] is not None and c["_answer_day"] < T
        if c.get("_prev_mult") is not None:          # a case of a customer reached before
            second["n_cases"] += 1
            if reached:
                second["n_reached"] += 1
                if o + w <= T:
                    second["n_window"] += 1
                    second["actual"] += float(day_sum(tl_actual, i, o, o + w))
                    second["counterfactual"] += float(c["_prev_mult"] * day_sum(tl_base, i, o, o + w))
        if not reached or i in seen:
            continue
        seen.add(i)
        if o - 84 < 0 or o + w > T or registered_day[i] > o - 84:
            continue
        first.append({"pre84": float(day_sum(tl_actual, i, o - 84, o)),
                      "actual": float(day_sum(tl_actual, i, o, o + w)),
                      "base": float(day_sum(tl_base, i, o, o + w)), "delay": int(c["_answer_day"] - c["_trigger_day"]),
                      "caller": c.get("_answer_caller")})
    return {"first": first, "second": second}


def add_truth(acc: dict, t: dict) -> None:
    acc.setdefault("first", []).extend(t["first"])
    s = acc.setdefault("second", dict.fromkeys(t["second"], 0))
    for k, v in t["second"].items():
        s[k] += v


def _ratio(a: float, b: float):
    return float(a / b - 1) if b else None


def finish(p: SimulationParams, acc: dict) -> dict:
    """``realised.programme`` of ``truth.json``."""
    import pandas as pd

    f = pd.DataFrame(acc.get("first", []), columns=["pre84", "actual", "base", "delay", "caller"])
    out: dict = {"window": WINDOW, "population": "each customer's first reached phone case outside a study, "
                 "with the 84-day pre window and the post window inside the data; effects from the case's opening"}
    if len(f):
        cuts = np.quantile(f["pre84"], [1 / 3, 2 / 3])
        t = np.searchsorted(cuts, f["pre84"].to_numpy(), side="right")
        out["by_spend_tertile"] = {
            "cuts": [float(x) for x in cuts],
            "effects": [_ratio(f.loc[t == k, "actual"].sum(), f.loc[t == k, "base"].sum()) for k in range(3)],
            "n": [int((t == k).sum()) for k in range(3)]}
        out["by_days_to_contact"] = {
            str(int(d)): {"n": int(len(g)), "actual": float(g["actual"].sum()), "base": float(g["base"].sum())}
            for d, g in f.groupby("delay")}
        eff = caller_effects(p)
        by = {}
        for k in range(N_CALLERS):
            g = f[f["caller"] == k]
            by[f"A{k + 1:02d}"] = {"answer_log_odds": float(eff["answer"][k]),
                                   "action_log_odds": float(eff["action"][k]),
                                   "stake_log_multiplier": float(eff["effect"][k]), "n_reached": int(len(g)),
                                   "realised_effect": _ratio(g["actual"].sum(), g["base"].sum()) if len(g) else None}
        out["by_caller"] = by if callers_vary(p) else None
    s = acc.get("second", {})
    out["second_call"] = {"n_cases": int(s.get("n_cases", 0)), "n_reached": int(s.get("n_reached", 0)),
                          "n_with_window": int(s.get("n_window", 0)),
                          "realised_effect": _ratio(s.get("actual", 0.0), s.get("counterfactual", 0.0)),
                          "note": "reached cases of customers reached before, against the same customers without "
                                  "the new call's stake effect (its pauses and self-exclusions count as part of it)"
                                  + ("; approximate when the effect fades" if p.call_effect_half_life else "")}
    return out


def true_effects(p: SimulationParams) -> dict:
    """``true_effects.programme`` of ``truth.json``: the knobs in the answer model's and the effect's terms."""
    return {
        "answer_hour_log_odds": [hour_log_odds(p, h) for h in range(24)],
        "answer_weekday_log_odds": [weekday_log_odds(p, d) for d in range(7)],
        "call_effect_spend_slope": p.call_effect_spend_slope, "call_effect_delay_slope": p.call_effect_delay_slope,
        "spend_centre": SPEND_CENTRE, "call_effect_half_life": p.call_effect_half_life,
        "second_call_stake_multiplier": p.second_call_effect,
        "caller_sd": {"answer_log_odds": p.caller_answer_sd, "stake_log_multiplier": p.caller_effect_sd,
                      "action_log_odds": p.caller_action_sd},
    }


def truth_params(params: dict) -> dict:
    """``truth.json``'s params without the programme knobs that are at their defaults."""
    return {k: v for k, v in params.items() if not (k in DEFAULTS and v == DEFAULTS[k])}
