"""Simulate an operator's data in the contract, with known true effects.

The simulator is built so that the naive figures are wrong in the way they are
wrong in real life (see ``shared/DOMAIN.md``):

* daily play is zero-inflated and heavy-tailed, spread over products with
  different paybacks;
* each customer's intensity swings slowly around their usual level (risky
  customers widely) with occasional binge days; triggers fire near the peaks, so spending falls afterwards with no call at all
  (regression to the mean);
* whether a case is opened and whether the customer answers depend on
  observable covariates (age, intensity, product mix), so reached and unreached
  customers differ at baseline;
* an answered call multiplies the amounts staked from the day it is answered
  (``call_effect``, default x0.85) and a letter does the same from three days
  after it is sent (``letter_effect``, default x0.95); a randomized sub-study
  assigns call / letter / control arms for a few months;
* up to four attempts per phone case; after ``sms_policy_start`` an SMS follows
  two unanswered attempts and raises the odds of answering later attempts;
  answer odds also follow a secular trend, weekly seasonality and a drifting
  case mix (a risk model begins to open cases half-way through);
* call durations, outcomes, reception, responsible-gambling events (including
  self-service actions by people never called), and account closures with a
  small true hazard ratio for answered calls.

Customers are simulated in chunks, and the day loop is vectorised over the
customers of a chunk; activity is written to Parquet chunk by chunk so that a
million customers fit in a few GB.  ``truth.json`` records every parameter and
the realised quantities tests check against, computed from the potential
outcomes the simulator knows (the same random draws with and without a call, or
with and without the SMS policy).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ._version import __version__

PRODUCTS = pd.DataFrame(
    {
        "product": ["lottery", "sports", "casino", "poker", "bingo"],
        "payback": [0.50, 0.92, 0.96, 0.97, 0.75],
    }
)
# Gamma shape of the per-day win multiplier (smaller = noisier results).
_WIN_SHAPE = np.array([0.5, 8.0, 20.0, 20.0, 3.0])

OUTCOMES = ["limit_set", "pause", "self_exclusion", "helpline_referral",
            "callback_booked", "no_action", "declined"]
OUTCOME_P = np.array([0.10, 0.08, 0.05, 0.04, 0.05, 0.58, 0.10])
RECEPTIONS = ["positive", "neutral", "negative"]
RECEPTION_P = np.array([0.85, 0.11, 0.04])


@dataclass(frozen=True)
class SimulationParams:
    """Every knob of the simulator; recorded whole in ``truth.json``."""

    customers: int = 4000
    seed: int = 1
    start: str = "2024-01-01"
    days: int = 731
    operator: str = "SimSpel"
    currency: str = "SEK"
    programme_start_day: int = 90          # cases are opened from this day on
    sms_policy_start: str | None = "2025-01-01"
    sms_after_attempts: int = 2
    # effects (true, causal)
    call_effect: float = 0.90              # multiplier on stakes after an answered call (pauses and
                                           # self-exclusions agreed on the call add to the total effect)
    letter_effect: float = 0.95            # multiplier on stakes 3 days after a letter
    closure_hr_call: float = 0.80          # hazard ratio of account closure after an answered call
    sms_log_odds: float = 1.0              # log-odds boost for attempts after the SMS
    # population
    risky_share: float = 0.35              # share of customers prone to loss episodes
    annual_closure_rate: float = 0.01
    level_sd_risky: float = 0.3            # sd of the slowly varying log-intensity (risky customers)
    level_sd_other: float = 0.3
    level_half_life: float = 20.0          # days
    binge_prob: float = 0.12               # share of play days that are binges
    binge_size: float = 15.0               # median stake multiplier on a binge day
    day_sd: float = 0.9                    # sd of day-to-day log stake noise
    # triggers and cases
    loss_threshold: float = 15000.0
    loss_threshold_young: float = 7500.0
    case_gap_days: int = 365               # no new case within this many days of the last
    rct_start_day: int = 100
    rct_end_day: int = 190
    risk_model_start_day: int = 365 + 182  # case-mix drift: a risk model begins
    chunk_size: int = 20000

    @property
    def start_date(self) -> dt.date:
        return dt.date.fromisoformat(self.start)

    @property
    def policy_day(self) -> int | None:
        if self.sms_policy_start is None:
            return None
        return (dt.date.fromisoformat(self.sms_policy_start) - self.start_date).days


# ----------------------------------------------------------------------------
# per-chunk simulation
# ----------------------------------------------------------------------------

@dataclass
class _Chunk:
    """Everything simulated for one chunk of customers."""

    customers: pd.DataFrame
    activity: pd.DataFrame
    deposits: pd.DataFrame
    triggers: pd.DataFrame
    cases: pd.DataFrame
    attempts: pd.DataFrame
    sms: pd.DataFrame
    rg_events: pd.DataFrame
    truth: dict = field(default_factory=dict)


def _simulate_chunk(p: SimulationParams, offset: int, n: int, rng: np.random.Generator) -> _Chunk:
    T = p.days
    start = np.datetime64(p.start_date, "D")
    n_prod = len(PRODUCTS)
    payback = PRODUCTS["payback"].to_numpy()

    # --- customers -------------------------------------------------------
    age0 = np.clip(18 + rng.gamma(2.2, 9.0, n), 18, 85)         # age at start, skewed young
    birth_year = (p.start_date.year - age0).astype(int)
    gender = rng.choice(np.array(["M", "F", "U"]), size=n, p=[0.70, 0.28, 0.02])
    reg_offset = np.where(rng.random(n) < 0.8,
                          -rng.integers(120, 6 * 365, n),          # registered before the data start
                          rng.integers(0, T - 120, n))             # new customers during the period
    registered_day = reg_offset.astype(int)
    risky = rng.random(n) < p.risky_share
    young = age0 < 30
    # product preference: young players lean to casino and sports
    alpha = np.tile(np.array([3.0, 1.5, 1.2, 0.3, 0.5]), (n, 1))
    alpha[young, 1] += 1.5
    alpha[young, 2] += 1.5
    alpha[risky, 2] += 1.0
    pref = rng.gamma(alpha)
    pref /= pref.sum(axis=1, keepdims=True)
    pref_cdf = np.cumsum(pref, axis=1)
    # intensity: log stake per play day and play probability
    mu = rng.normal(np.log(150), 0.7, n) + np.where(risky, 0.9, 0.0) + 0.4 * pref[:, 2]
    play_p = np.clip(rng.beta(1.2, 9.0, n) + np.where(risky, 0.08, 0.0), 0.005, 0.9)
    # a slowly mean-reverting log-intensity (Ornstein-Uhlenbeck, half-life ~45 days): risky customers
    # swing widely, so triggers fire near peaks and spending falls afterwards anyway
    sd_level = np.where(risky, p.level_sd_risky, p.level_sd_other)
    phi = np.exp(-np.log(2) / p.level_half_life)
    innov_sd = sd_level * np.sqrt(1 - phi ** 2)
    closure_h = p.annual_closure_rate / 365.0

    # season and trend on stakes (common to everyone)
    day_idx = np.arange(T)
    dates = start + day_idx
    weekday = ((day_idx + p.start_date.weekday()) % 7)
    stake_season = (1.0 + 0.15 * (weekday >= 5)) * (1.0 + 0.08 * np.sin(2 * np.pi * day_idx / 365.25)) * (
        1.0 + 0.05 * day_idx / 365.0)

    # --- state ---------------------------------------------------------
    level = rng.normal(0.0, sd_level)
    closed_day = np.full(n, -1)
    excluded_until = np.full(n, -1)        # self-service pause / self-exclusion
    call_excluded_until = np.full(n, -1)   # pause / self-exclusion agreed on a call
    effect_day = np.full(n, 10**9)        # day the stake multiplier starts
    effect_mult = np.ones(n)
    call_day = np.full(n, 10**9)          # answered-call day (for closure HR)
    last_case_day = np.full(n, -10**9)
    last_trigger_day = np.full(n, -10**9)
    loss_ring = np.zeros((28, n), dtype=np.float64)
    loss28 = np.zeros(n)
    tl_actual = np.zeros((n, T), dtype=np.float32)
    tl_base = np.zeros((n, T), dtype=np.float32)   # potential outcome without any contact

    act_rows: list[tuple] = []
    trig_rows: list[tuple] = []
    case_rows: list[dict] = []
    rg_rows: list[tuple] = []

    policy_day = p.policy_day
    for t in range(T):
        # intensity swings (and their excess over the usual level)
        level = phi * level + innov_sd * rng.standard_normal(n)
        excess = np.maximum(np.exp(level) - 1.0, 0.0)
        open_ = (registered_day <= t) & (closed_day < 0)
        # play as it would be without any contact (potential outcome) ...
        plays_base = open_ & (excluded_until < t) & (
            rng.random(n) < np.minimum(0.95, play_p * np.exp(0.6 * level)))
        # ... and as it is: a pause or self-exclusion agreed on a call stops play too
        plays = plays_base & (call_excluded_until < t)
        idx = np.flatnonzero(plays_base)
        if idx.size:
            k = idx.size
            binge = np.where(rng.random(k) < p.binge_prob, rng.lognormal(np.log(p.binge_size), 0.6, k), 1.0)
            stake = np.exp(mu[idx] + level[idx] + rng.normal(0, p.day_sd, k)) * binge * stake_season[t]
            stake = np.round(stake, 2)
            mult = np.where(effect_day[idx] <= t, effect_mult[idx], 1.0) * plays[idx]
            u = rng.random(k)
            p1 = (u[:, None] > pref_cdf[idx]).sum(axis=1).clip(0, n_prod - 1)
            two = rng.random(k) < 0.3
            p2 = rng.integers(0, n_prod, k)
            two &= p2 != p1
            share = np.where(two, rng.uniform(0.2, 0.6, k), 0.0)
            w_base1 = stake * (1 - share)
            w_base2 = stake * share
            w1 = np.round(w_base1 * mult, 2)
            w2 = np.round(w_base2 * mult, 2)
            g1 = rng.gamma(_WIN_SHAPE[p1], 1.0 / _WIN_SHAPE[p1])
            g2 = rng.gamma(_WIN_SHAPE[p2], 1.0 / _WIN_SHAPE[p2])
            won1 = np.round(w1 * payback[p1] * g1, 2)
            won2 = np.round(w2 * payback[p2] * g2, 2)
            tl_actual[idx, t] = w1 * (1 - payback[p1]) + w2 * (1 - payback[p2])
            tl_base[idx, t] = w_base1 * (1 - payback[p1]) + w_base2 * (1 - payback[p2])
            net = (w1 - won1) + (w2 - won2)
            keep = plays[idx]
            idx, p1, p2, w1, w2, won1, won2, two = (x[keep] for x in (idx, p1, p2, w1, w2, won1, won2, two))
            net = net[keep]
            act_rows.append((idx, t, p1, w1, won1))
            sel = np.flatnonzero(two)
            if sel.size:
                act_rows.append((idx[sel], t, p2[sel], w2[sel], won2[sel]))
            day_loss = np.zeros(n)
            day_loss[idx] = net
        else:
            day_loss = np.zeros(n)
        loss28 += day_loss - loss_ring[t % 28]
        loss_ring[t % 28] = day_loss

        # closures (small true hazard ratio after an answered call)
        h = np.where(call_day <= t, closure_h * p.closure_hr_call, closure_h)
        closing = open_ & (rng.random(n) < h)
        closed_day[closing] = t

        # self-service rg events (anyone), more likely in an episode
        rg_p = (0.0008 + 0.0006 * np.minimum(excess, 5)) * open_
        rg_hit = np.flatnonzero(rng.random(n) < rg_p)
        if rg_hit.size:
            ev = rng.choice(7, size=rg_hit.size, p=[0.35, 0.15, 0.10, 0.12, 0.04, 0.09, 0.15])
            rg_rows.append((rg_hit, t, ev, np.zeros(rg_hit.size, bool)))
            excl = rg_hit[ev == 4]
            excluded_until[excl] = t + 180
            paused = rg_hit[ev == 3]
            excluded_until[paused] = np.maximum(excluded_until[paused], t + 30)

        # triggers
        thr = np.where(young, p.loss_threshold_young, p.loss_threshold)
        hl = open_ & (loss28 > thr) & (t - last_trigger_day >= 60)
        st = open_ & (rng.random(n) < 0.00015 * (1 + np.minimum(excess, 6)))
        rm = open_ & (t >= p.risk_model_start_day) & (
            rng.random(n) < 0.0004 * np.clip(np.exp(mu - np.log(150)) * play_p * 4, 0, 8)) & (t - last_trigger_day >= 60)
        pl = open_ & (excluded_until >= t) & (rng.random(n) < 0.002)
        kinds = [(hl, "high_loss", loss28), (st, "red_self_test", None), (rm, "risk_model", None),
                 (pl, "pause_lift_request", None)]
        fired_any = np.zeros(n, bool)
        fired_kind = np.full(n, "", dtype=object)
        for mask, name, val in kinds:
            mask = mask & ~fired_any
            if not mask.any():
                continue
            ii = np.flatnonzero(mask)
            values = np.round(val[ii], 2) if val is not None else np.full(ii.size, np.nan)
            trig_rows.append((ii, t, name, values))
            fired_any |= mask
            fired_kind[ii] = name
        last_trigger_day[fired_any] = t

        # case opening: selection depends on observables (loss size, age)
        if t >= p.programme_start_day:
            cand = np.flatnonzero(fired_any & (t - last_case_day >= p.case_gap_days))
            if cand.size:
                base = {"high_loss": 0.55, "red_self_test": 0.75, "risk_model": 0.45, "pause_lift_request": 0.85}
                q = np.array([base[k] for k in fired_kind[cand]])
                q = np.clip(q + 0.1 * np.tanh((loss28[cand] - thr[cand]) / thr[cand]) - 0.1 * young[cand], 0.05, 0.95)
                chosen = cand[rng.random(cand.size) < q]
                for i in chosen:      # cases are rare (a few per thousand customer-days)
                    # long-run intensity (days -365..-85, per 84 days): a stable trait, observable
                    a0 = max(0, t - 365)
                    span = max(1, (t - 85) - a0)
                    log_spend = float(np.log1p(tl_actual[i, a0:t - 85].sum() * 84.0 / span))
                    case_rows.append(_open_case(p, rng, int(i), t, fired_kind[i], age0[i], log_spend, pref[i],
                                                policy_day))
                    last_case_day[i] = t
                    c = case_rows[-1]
                    if c["_answer_day"] is not None:
                        d = c["_answer_day"]
                        effect_day[i] = d
                        effect_mult[i] = p.call_effect
                        call_day[i] = d
                        for ev in c["_rg_via_call"]:
                            rg_rows.append((np.array([i]), d, np.array([ev]), np.array([True])))
                            if ev == 4:
                                call_excluded_until[i] = max(call_excluded_until[i], d + 180)
                            if ev == 3:
                                call_excluded_until[i] = max(call_excluded_until[i], d + 30)
                    elif c["_letter_day"] is not None:
                        effect_day[i] = c["_letter_day"]
                        effect_mult[i] = p.letter_effect

    # --- assemble tables -------------------------------------------------
    cid = np.char.add("C", np.char.zfill(np.arange(offset + 1, offset + n + 1).astype(str), 7)).astype(object)
    prod_names = PRODUCTS["product"].to_numpy()
    if act_rows:
        a_idx = np.concatenate([r[0] for r in act_rows])
        a_t = np.concatenate([np.full(r[0].size, r[1]) for r in act_rows])
        a_p = np.concatenate([r[2] for r in act_rows])
        a_w = np.concatenate([r[3] for r in act_rows])
        a_won = np.concatenate([r[4] for r in act_rows])
    else:
        a_idx = a_t = a_p = np.array([], int)
        a_w = a_won = np.array([], float)
    order = np.lexsort((a_p, a_t, a_idx))
    activity = pd.DataFrame({
        "customer_id": cid[a_idx[order]],
        "date": dates[a_t[order]],
        "product": prod_names[a_p[order]],
        "wagered": a_w[order],
        "won": a_won[order],
    })
    # deposits: per customer-day, on most play days
    day_tot = activity.groupby(["customer_id", "date"], sort=False)["wagered"].sum()
    dep_u = rng.random(day_tot.size)
    dep_keep = dep_u < 0.6
    deposits = pd.DataFrame({
        "customer_id": day_tot.index.get_level_values(0)[dep_keep],
        "date": day_tot.index.get_level_values(1)[dep_keep],
        "amount": np.round(day_tot.to_numpy()[dep_keep] * rng.uniform(0.2, 0.7, dep_keep.sum()), 0),
    })
    customers = pd.DataFrame({
        "customer_id": cid,
        "operator": p.operator,
        "birth_year": birth_year,
        "gender": gender,
        "registered_on": start + registered_day,
        "closed_on": np.where(closed_day >= 0, start + np.maximum(closed_day, 0), np.datetime64("NaT")),
    })
    if trig_rows:
        triggers = pd.DataFrame({
            "customer_id": cid[np.concatenate([r[0] for r in trig_rows])],
            "triggered_on": dates[np.concatenate([np.full(r[0].size, r[1]) for r in trig_rows])],
            "trigger": np.concatenate([np.full(r[0].size, r[2], dtype=object) for r in trig_rows]),
            "value": np.concatenate([r[3] for r in trig_rows]),
        })
    else:
        triggers = pd.DataFrame(columns=["customer_id", "triggered_on", "trigger", "value"])
    rg_names = np.array(["limit_set", "limit_lowered", "limit_raised", "pause", "self_exclusion",
                         "self_test_red", "self_test_other"], dtype=object)
    if rg_rows:
        rg_events = pd.DataFrame({
            "customer_id": cid[np.concatenate([r[0] for r in rg_rows])],
            "occurred_on": dates[np.concatenate([np.full(r[0].size, r[1]) for r in rg_rows])],
            "event": rg_names[np.concatenate([r[2] for r in rg_rows])],
            "via_call": np.concatenate([r[3] for r in rg_rows]),
        })
        rg_events = rg_events[rg_events["occurred_on"] < dates[-1] + 1]
    else:
        rg_events = pd.DataFrame(columns=["customer_id", "occurred_on", "event", "via_call"])

    cases, attempts, sms = _case_tables(case_rows, cid, start, T)
    truth = _chunk_truth(p, case_rows, tl_actual, tl_base, closed_day, registered_day)
    return _Chunk(customers, activity, deposits, triggers, cases, attempts, sms, rg_events, truth)


def _answer_logit(p: SimulationParams, t: int, attempt_no: int, age: float, log_spend: float, pref: np.ndarray,
                  hour: int) -> float:
    """Log-odds of answering one attempt (before any SMS boost).

    Selection into answering runs through what an analyst can observe: age,
    the long-run theoretical loss (days -365..-85 before the case, per 84
    days), and the product mix.
    """
    weekday = (t + p.start_date.weekday()) % 7
    return (-1.30
            + 0.25 * (age - 40) / 10            # older customers answer more
            - 0.15 * (log_spend - 9.0)           # heavy spenders answer less
            - 0.8 * pref[2]                      # casino players answer less
            - 0.30 * attempt_no                  # later attempts answered less
            + 0.15 * t / 365.0                   # secular trend
            - 0.25 * (weekday >= 5)              # weekends worse
            + 0.20 * (17 <= hour <= 19))         # evenings better


def _open_case(p, rng, i, t, trigger, age0, log_spend, pref, policy_day) -> dict:
    """Open one case: channel, arm, attempts, SMS, outcome (both policy worlds)."""
    age = age0 + t / 365.25
    in_rct = (p.rct_start_day <= t < p.rct_end_day) and trigger == "high_loss"
    arm = None
    if in_rct:
        arm = ["call", "letter", "control"][rng.integers(0, 3)]
        channel = "letter" if arm == "letter" else "phone"
    else:
        channel = rng.choice(["phone", "letter", "email"], p=[0.92, 0.05, 0.03])
    opened = t + int(rng.integers(0, 4))
    case = {"_i": i, "_trigger_day": t, "opened_day": opened, "trigger": trigger, "channel": channel,
            "arm": arm, "attempts": [], "sms": [], "_answer_day": None, "_letter_day": None,
            "_reached_with": False, "_reached_without": False, "_post_policy": False, "_rg_via_call": []}
    if channel == "letter":
        case["_letter_day"] = opened + 3
        return case
    if channel != "phone" or arm == "control":
        return case
    policy_on = policy_day is not None and opened >= policy_day
    case["_post_policy"] = policy_on
    offsets = [0, 1, 3, 6]
    n_att = 4
    us = rng.random(n_att)
    hours = rng.integers(9, 20, n_att)
    minutes = rng.integers(0, 60, n_att)
    # two worlds share the uniforms: with the policy (if in force) and without
    logits = np.array([_answer_logit(p, opened + offsets[k], k, age, log_spend, pref, int(hours[k]))
                       for k in range(n_att)])
    boost = np.array([p.sms_log_odds if k >= p.sms_after_attempts else 0.0 for k in range(n_att)])
    ans_without = us < 1 / (1 + np.exp(-logits))
    ans_with = us < 1 / (1 + np.exp(-(logits + boost))) if policy_on else ans_without
    observed = (opened + np.array(offsets)) < p.days          # attempts after the data end are not seen
    case["_reached_without"] = bool((ans_without & observed).any())
    case["_reached_with"] = bool((ans_with & observed).any())
    realised = ans_with
    for k in range(n_att):
        day = opened + offsets[k]
        if day >= p.days:
            break
        ts = (day, int(hours[k]), int(minutes[k]))
        if realised[k]:
            dur = float(np.round(np.clip(rng.lognormal(np.log(300), 0.55), 40, 3600), 0))
            oc = int(rng.choice(len(OUTCOMES), p=OUTCOME_P))
            rc = int(rng.choice(3, p=RECEPTION_P)) if rng.random() < 0.95 else None
            case["attempts"].append((ts, True, dur, oc, rc))
            case["_answer_day"] = day
            ev = {0: [0], 1: [3], 2: [4]}.get(oc, [])
            case["_rg_via_call"] = ev
            break
        case["attempts"].append((ts, False, None, None, None))
        if policy_on and k + 1 == p.sms_after_attempts:
            case["sms"].append((day, int(hours[k]), int(minutes[k]) + 5 if minutes[k] < 50 else 59, "missed_call_followup"))
    if rng.random() < 0.03:
        case["sms"].append((opened, 8, 0, "other"))
    return case


def _case_tables(case_rows, cid, start, T):
    if not case_rows:
        return (pd.DataFrame(columns=["case_id", "customer_id", "opened_on", "trigger", "channel", "arm"]),
                pd.DataFrame(columns=["case_id", "attempted_at", "answered", "duration_s", "agent_id", "outcome",
                                      "reception"]),
                pd.DataFrame(columns=["case_id", "sent_at", "kind"]))
    cases = []
    att = []
    sms = []
    for k, c in enumerate(case_rows):
        if c["opened_day"] >= T:
            continue
        c["case_id"] = f"tmp{k}"
        cases.append((c["case_id"], cid[c["_i"]], start + c["opened_day"], c["trigger"], c["channel"], c["arm"]))
        for (day, h, m), ans, dur, oc, rc in c["attempts"]:
            att.append((c["case_id"], pd.Timestamp(start + day) + pd.Timedelta(hours=h, minutes=m), ans, dur,
                        None,
                        OUTCOMES[oc] if oc is not None else None,
                        RECEPTIONS[rc] if rc is not None else None))
        for day, h, m, kind in c["sms"]:
            if day < T:
                sms.append((c["case_id"], pd.Timestamp(start + day) + pd.Timedelta(hours=h, minutes=m), kind))
    cases = pd.DataFrame(cases, columns=["case_id", "customer_id", "opened_on", "trigger", "channel", "arm"])
    attempts = pd.DataFrame(att, columns=["case_id", "attempted_at", "answered", "duration_s", "agent_id",
                                          "outcome", "reception"])
    sms = pd.DataFrame(sms, columns=["case_id", "sent_at", "kind"])
    return cases, attempts, sms


def _chunk_truth(p, case_rows, tl_actual, tl_base, closed_day, registered_day) -> dict:
    """Sums the truth needs, per chunk (combined across chunks later)."""
    T = p.days
    out = {"pre84": 0.0, "post84": 0.0, "post84_actual_w": {}, "post_base_w": {},
           "reach_pre": [0, 0], "reach_post": [0, 0], "reach_post_without": 0,
           "retained": [0, 0], "rct": {}}
    windows = {28: "0..27", 84: "0..83", 365: "0..364"}
    seen = set()
    for w in windows:
        out["post84_actual_w"][w] = 0.0
        out["post_base_w"][w] = 0.0
    for c in case_rows:
        i, o = c["_i"], c["opened_day"]
        phone = c["channel"] == "phone" and c["arm"] != "control"
        if phone and c["arm"] is None and o < T:
            if c["_post_policy"]:
                out["reach_post"][0] += int(c["_reached_with"]); out["reach_post"][1] += 1
                out["reach_post_without"] += int(c["_reached_without"])
            else:
                out["reach_pre"][0] += int(c["_reached_with"]); out["reach_pre"][1] += 1
        reached = c["_answer_day"] is not None and c["_answer_day"] < T
        if c["arm"] is not None and o + 84 <= T and o - 84 >= 0:
            d = out["rct"].setdefault(c["arm"], {"actual": 0.0, "base": 0.0, "n": 0, "reached": 0})
            d["actual"] += float(tl_actual[i, o:o + 84].sum()); d["base"] += float(tl_base[i, o:o + 84].sum())
            d["n"] += 1; d["reached"] += int(reached)
        if not (reached and c["arm"] is None) or i in seen:
            continue
        seen.add(i)
        if o - 84 >= 0 and o + 84 <= T and registered_day[i] <= o - 84:
            out["pre84"] += float(tl_actual[i, o - 84:o].sum())
            out["post84"] += float(tl_actual[i, o:o + 84].sum())
        for w in windows:
            if o + w <= T:
                out["post84_actual_w"][w] += float(tl_actual[i, o:o + w].sum())
                out["post_base_w"][w] += float(tl_base[i, o:o + w].sum())
        if o + 365 <= T:
            out["retained"][1] += 1
            out["retained"][0] += int(not (0 <= closed_day[i] < o + 365))
    return out


# ----------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------

def _atomic_dir(out: Path):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    return tmp


def simulate(out: str | os.PathLike, *, customers: int = 4000, seed: int = 1, progress: bool = False,
             **params) -> dict:
    """Simulate an operator's data set in the contract and write it to ``out``.

    Parameters
    ----------
    out : path
        Directory to write (created; replaced atomically if it exists).
    customers : int
        Number of customers.
    seed : int
        Seed for :func:`numpy.random.default_rng`; the same seed and parameters
        give byte-identical files.
    progress : bool
        Print one line per chunk.
    **params
        Any field of :class:`SimulationParams`.

    Returns
    -------
    dict
        The content of ``truth.json``.
    """
    p = SimulationParams(customers=customers, seed=seed, **params)
    if p.customers < 1:
        raise ValueError(f"customers must be >= 1, got {p.customers}")
    out = Path(out)
    tmp = _atomic_dir(out)
    t0 = time.perf_counter()
    try:
        truth = _run(p, tmp, progress, t0)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return truth


def _parquet_write(writer, df: pd.DataFrame, schema: pa.Schema, path: Path):
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(path, schema, compression="zstd")
    writer.write_table(table)
    return writer


_SCHEMAS = {
    "customers": pa.schema([("customer_id", pa.string()), ("operator", pa.string()), ("birth_year", pa.int32()),
                            ("gender", pa.string()), ("registered_on", pa.date32()), ("closed_on", pa.date32())]),
    "activity": pa.schema([("customer_id", pa.string()), ("date", pa.date32()), ("product", pa.string()),
                           ("wagered", pa.float64()), ("won", pa.float64())]),
    "deposits": pa.schema([("customer_id", pa.string()), ("date", pa.date32()), ("amount", pa.float64())]),
    "triggers": pa.schema([("customer_id", pa.string()), ("triggered_on", pa.date32()), ("trigger", pa.string()),
                           ("value", pa.float64())]),
    "call_cases": pa.schema([("case_id", pa.string()), ("customer_id", pa.string()), ("opened_on", pa.date32()),
                             ("trigger", pa.string()), ("channel", pa.string()), ("arm", pa.string())]),
    "call_attempts": pa.schema([("case_id", pa.string()), ("attempted_at", pa.timestamp("s")),
                                ("answered", pa.bool_()), ("duration_s", pa.float64()), ("agent_id", pa.string()),
                                ("outcome", pa.string()), ("reception", pa.string())]),
    "sms": pa.schema([("case_id", pa.string()), ("sent_at", pa.timestamp("s")), ("kind", pa.string())]),
    "rg_events": pa.schema([("customer_id", pa.string()), ("occurred_on", pa.date32()), ("event", pa.string()),
                            ("via_call", pa.bool_())]),
}


def _run(p: SimulationParams, out: Path, progress: bool, t0: float) -> dict:
    rng_master = np.random.default_rng(p.seed)
    n_chunks = -(-p.customers // p.chunk_size)
    seeds = rng_master.integers(0, 2**63 - 1, size=n_chunks)
    agent_rng = np.random.default_rng([p.seed, 7])
    agents = [f"A{k:02d}" for k in range(1, 13)]
    writers: dict[str, pq.ParquetWriter | None] = {k: None for k in _SCHEMAS}
    acc: dict = {}
    n_case = 0
    try:
        for c in range(n_chunks):
            off = c * p.chunk_size
            n = min(p.chunk_size, p.customers - off)
            ch = _simulate_chunk(p, off, n, np.random.default_rng(seeds[c]))
            # stable case ids and agents across chunks
            ch.cases = ch.cases.copy()
            new_ids = np.array([f"K{n_case + k + 1:07d}" for k in range(len(ch.cases))], dtype=object)
            id_map = dict(zip(ch.cases["case_id"], new_ids))
            ch.cases["case_id"] = new_ids
            ch.attempts["case_id"] = ch.attempts["case_id"].map(id_map)
            ch.sms["case_id"] = ch.sms["case_id"].map(id_map)
            ans = ch.attempts["answered"].to_numpy(bool)
            ag = np.array(agents, dtype=object)[agent_rng.integers(0, len(agents), len(ch.attempts))]
            ch.attempts["agent_id"] = np.where(ans | (agent_rng.random(len(ch.attempts)) < 0.9), ag, None)
            n_case += len(ch.cases)
            for name in _SCHEMAS:
                df = getattr(ch, name if name not in ("call_cases", "call_attempts") else
                             {"call_cases": "cases", "call_attempts": "attempts"}[name])
                writers[name] = _parquet_write(writers[name], df, _SCHEMAS[name], out / f"{name}.parquet")
            _accumulate(acc, ch.truth, ch)
            if progress:
                print(f"  chunk {c + 1}/{n_chunks}: {off + n:,} customers, "
                      f"{time.perf_counter() - t0:,.1f} s", flush=True)
    finally:
        for w in writers.values():
            if w is not None:
                w.close()
    pq.write_table(pa.Table.from_pandas(PRODUCTS, preserve_index=False), out / "products.parquet",
                   compression="zstd")
    toml = [f'operator = "{p.operator}"', f'currency = "{p.currency}"']
    if p.sms_policy_start:
        toml.append(f"sms_policy_start = {p.sms_policy_start}")
    toml.append("small_cell_threshold = 10")
    (out / "operator.toml").write_text("\n".join(toml) + "\n")
    truth = _finish_truth(p, acc)
    (out / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return truth


def _accumulate(acc: dict, t: dict, ch: _Chunk) -> None:
    for k in ("pre84", "post84", "reach_post_without"):
        acc[k] = acc.get(k, 0) + t[k]
    for k in ("reach_pre", "reach_post", "retained"):
        a = acc.setdefault(k, [0, 0]); a[0] += t[k][0]; a[1] += t[k][1]
    for k in ("post84_actual_w", "post_base_w"):
        d = acc.setdefault(k, {})
        for w, v in t[k].items():
            d[w] = d.get(w, 0.0) + v
    for arm, d in t["rct"].items():
        a = acc.setdefault("rct", {}).setdefault(arm, {"actual": 0.0, "base": 0.0, "n": 0, "reached": 0})
        for k in a:
            a[k] += d[k]
    att = ch.attempts[ch.attempts["answered"]]
    acc.setdefault("durations", []).append(att["duration_s"].to_numpy())
    acc.setdefault("outcomes", []).append(att["outcome"].to_numpy())
    acc.setdefault("receptions", []).append(att["reception"].to_numpy())


def _finish_truth(p: SimulationParams, acc: dict) -> dict:
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
    truth = {
        "package_version": __version__,
        "params": {k: v for k, v in asdict(p).items()},
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
    return truth


def main_simulate(out, customers, seed, progress=True, **kw):  # thin CLI helper
    t0 = time.perf_counter()
    truth = simulate(out, customers=customers, seed=seed, progress=progress, **kw)
    return truth, time.perf_counter() - t0
