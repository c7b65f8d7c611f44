"""The care-call programme of one chunk: triggers, case opening (selection on observables), the randomized
sub-study's arms, call attempts and whether they are answered (with and without the SMS policy), the
missed-call SMS, call durations, outcomes and reception; the ``triggers``, ``call_cases``,
``call_attempts`` and ``sms`` tables, and the case ids and agents numbered across chunks.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import programme
from .params import SimulationParams
from .play import PAUSE, SELF_EXCLUSION, Play
from .population import Population

OUTCOMES = ["limit_set", "pause", "self_exclusion", "helpline_referral",
            "callback_booked", "no_action", "declined"]
OUTCOME_P = np.array([0.10, 0.08, 0.05, 0.04, 0.05, 0.58, 0.10])
RECEPTIONS = ["positive", "neutral", "negative"]
RECEPTION_P = np.array([0.85, 0.11, 0.04])
# responsible-gambling events agreed on a call, by call outcome (limit_set, pause, self_exclusion)
_EVENTS_OF_OUTCOME = {0: [0], 1: [PAUSE], 2: [SELF_EXCLUSION]}
# chance that a fired trigger opens a case, before adjustment for loss size and age
_OPEN_P = {"high_loss": 0.55, "red_self_test": 0.75, "risk_model": 0.45, "pause_lift_request": 0.85}
ATTEMPT_OFFSETS = [0, 1, 3, 6]          # days after opening of the (up to four) attempts
AGENTS = [f"A{k:02d}" for k in range(1, 13)]


class CaseDesk:
    """Triggers and cases of one chunk. Per day, call :meth:`fire_triggers`, then (from the programme
    start) :meth:`open_cases`."""

    def __init__(self, p: SimulationParams, pop: Population) -> None:
        self.p, self.pop = p, pop
        self.thr = np.where(pop.young, p.loss_threshold_young, p.loss_threshold)
        self.last_case_day = np.full(pop.n, -10**9)
        self.last_trigger_day = np.full(pop.n, -10**9)
        self.trig_rows: list[tuple] = []
        self.case_rows: list[dict] = []

    def fire_triggers(self, t: int, rng: np.random.Generator, play: Play) -> tuple[np.ndarray, np.ndarray]:
        """Day ``t``'s triggers (at most one per customer): the mask of who fired and the trigger names."""
        p, n = self.p, self.pop.n
        open_, excess, loss28 = play.open_, play.excess, play.loss28
        hl = open_ & (loss28 > self.thr) & (t - self.last_trigger_day >= 60)
        st = open_ & (rng.random(n) < 0.00015 * (1 + np.minimum(excess, 6)))
        rm = open_ & (t >= p.risk_model_start_day) & (
            rng.random(n) < 0.0004 * np.clip(np.exp(self.pop.mu - np.log(150)) * self.pop.play_p * 4, 0, 8)) & (
            t - self.last_trigger_day >= 60)
        pl = open_ & (play.excluded_until >= t) & (rng.random(n) < 0.002)
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
            self.trig_rows.append((ii, t, name, values))
            fired_any |= mask
            fired_kind[ii] = name
        self.last_trigger_day[fired_any] = t
        return fired_any, fired_kind

    def open_cases(self, t: int, rng: np.random.Generator, fired_any: np.ndarray, fired_kind: np.ndarray,
                   play: Play) -> None:
        """Open cases for day ``t``'s triggers (selection depends on observables: loss size, age), play
        each case out and let its call or letter act on play."""
        p, pop, thr, loss28 = self.p, self.pop, self.thr, play.loss28
        cand = np.flatnonzero(fired_any & (t - self.last_case_day >= p.case_gap_days))
        if not cand.size:
            return
        q = np.array([_OPEN_P[k] for k in fired_kind[cand]])
        q = np.clip(q + 0.1 * np.tanh((loss28[cand] - thr[cand]) / thr[cand]) - 0.1 * pop.young[cand], 0.05, 0.95)
        chosen = cand[rng.random(cand.size) < q]
        for i in chosen:      # cases are rare (a few per thousand customer-days)
            # long-run intensity (days -365..-85, per 84 days): a stable trait, observable
            a0 = max(0, t - 365)
            span = max(1, (t - 85) - a0)
            log_spend = float(np.log1p(play.tl_actual[i, a0:t - 85].sum() * 84.0 / span))
            c = open_case(p, rng, int(i), t, fired_kind[i], pop.age0[i], log_spend, pop.pref[i])
            self.case_rows.append(c)
            self.last_case_day[i] = t
            if play.call_day[i] < 10**9 and programme.active(p):   # reached before: the truth of a second call
                c["_prev_mult"] = play.multiplier_on(i, c["opened_day"])
            if c["_answer_day"] is not None:
                play.after_call(i, c["_answer_day"], c["_rg_via_call"], c.get("_mult"))
            elif c["_letter_day"] is not None:
                play.after_letter(i, c["_letter_day"])

    def triggers_table(self, cid: np.ndarray, dates: np.ndarray) -> pd.DataFrame:
        """The ``triggers`` table."""
        rows = self.trig_rows
        if not rows:
            return pd.DataFrame(columns=["customer_id", "triggered_on", "trigger", "value"])
        return pd.DataFrame({
            "customer_id": cid[np.concatenate([r[0] for r in rows])],
            "triggered_on": dates[np.concatenate([np.full(r[0].size, r[1]) for r in rows])],
            "trigger": np.concatenate([np.full(r[0].size, r[2], dtype=object) for r in rows]),
            "value": np.concatenate([r[3] for r in rows]),
        })


def answer_logit(p: SimulationParams, t: int, attempt_no: int, age: float, log_spend: float, pref: np.ndarray,
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
            + programme.weekday_log_odds(p, weekday)   # weekends worse (by default -0.25)
            + programme.hour_log_odds(p, hour))        # evenings better (by default +0.20 at 17-19 h)


def open_case(p: SimulationParams, rng: np.random.Generator, i: int, t: int, trigger: str, age0: float,
              log_spend: float, pref: np.ndarray, *, trial_arm: str | None = None, block: str | None = None,
              first_attempt: int | None = None) -> dict:
    """Open one case: channel, arm, attempts, SMS, outcome (both policy worlds).

    ``trial_arm`` opens a case of the randomized study (see :mod:`.trial`): the arm and ``block`` are
    given, the case opens on day ``t`` and its attempts start on ``first_attempt``; without it the
    draws are those of the programme (and of the simple randomized sub-study when no study is set).
    """
    policy_day = p.policy_day
    age = age0 + t / 365.25
    if trial_arm is not None:
        arm = trial_arm
        channel = "letter" if arm == "letter" else "phone"
        opened = t
    else:
        in_rct = p.trial is None and (p.rct_start_day <= t < p.rct_end_day) and trigger == "high_loss"
        arm = None
        if in_rct:
            arm = ["call", "letter", "control"][rng.integers(0, 3)]
            channel = "letter" if arm == "letter" else "phone"
        else:
            channel = rng.choice(["phone", "letter", "email"], p=[0.92, 0.05, 0.03])
        opened = t + int(rng.integers(0, 4))
    case: dict[str, Any] = {
        "_i": i, "_trigger_day": t, "opened_day": opened, "trigger": trigger, "channel": channel, "arm": arm,
        "attempts": [], "sms": [], "_answer_day": None, "_letter_day": None, "_reached_with": False,
        "_reached_without": False, "_post_policy": False, "_rg_via_call": []}
    if trial_arm is not None:
        case["block"] = block
    start = opened if first_attempt is None else first_attempt
    if channel == "letter":
        case["_letter_day"] = opened + 3
        return case
    if channel != "phone" or arm == "control":
        return case
    policy_on = policy_day is not None and opened >= policy_day
    case["_post_policy"] = policy_on
    offsets = ATTEMPT_OFFSETS
    n_att = len(offsets)
    us = rng.random(n_att)
    hours = rng.integers(9, 20, n_att)
    minutes = rng.integers(0, 60, n_att)
    # two worlds share the uniforms: with the policy (if in force) and without
    logits = np.array([answer_logit(p, start + offsets[k], k, age, log_spend, pref, int(hours[k]))
                       for k in range(n_att)])
    callers = programme.draw_callers(p, rng, n_att)     # None unless callers differ (then drawn here)
    if callers is not None:
        logits = logits + programme.caller_effects(p)["answer"][callers]
        case["_callers"] = callers
    boost = np.array([p.sms_log_odds if k >= p.sms_after_attempts else 0.0 for k in range(n_att)])
    ans_without = us < 1 / (1 + np.exp(-logits))
    ans_with = us < 1 / (1 + np.exp(-(logits + boost))) if policy_on else ans_without
    observed = (start + np.array(offsets)) < p.days          # attempts after the data end are not seen
    case["_reached_without"] = bool((ans_without & observed).any())
    case["_reached_with"] = bool((ans_with & observed).any())
    realised = ans_with
    for k in range(n_att):
        day = start + offsets[k]
        if day >= p.days:
            break
        ts = (day, int(hours[k]), int(minutes[k]))
        if realised[k]:
            dur = float(np.round(np.clip(rng.lognormal(np.log(300), 0.55), 40, 3600), 0))
            who = None if callers is None else int(callers[k])
            oc = int(rng.choice(len(OUTCOMES), p=programme.outcome_p(p, OUTCOME_P, who)))
            rc = int(rng.choice(3, p=RECEPTION_P)) if rng.random() < 0.95 else None
            case["attempts"].append((ts, True, dur, oc, rc))
            case["_answer_day"] = day
            case["_rg_via_call"] = _EVENTS_OF_OUTCOME.get(oc, [])
            case["_answer_caller"] = who
            case["_mult"] = programme.call_multiplier(p, log_spend, day - t, who)
            break
        case["attempts"].append((ts, False, None, None, None))
        if policy_on and k + 1 == p.sms_after_attempts:
            sent_minute = int(minutes[k]) + 5 if minutes[k] < 50 else 59
            case["sms"].append((day, int(hours[k]), sent_minute, "missed_call_followup"))
    if rng.random() < 0.03:
        case["sms"].append((opened, 8, 0, "other"))
    return case


def case_tables(case_rows: list[dict], cid: np.ndarray, start: np.datetime64, T: int, *, with_block: bool = False
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The ``call_cases``, ``call_attempts`` and ``sms`` tables of a chunk (temporary case ids).

    ``with_block`` adds the optional ``block`` column (the randomized study's matched set or block).
    """
    case_cols = ["case_id", "customer_id", "opened_on", "trigger", "channel", "arm"] + (["block"] if with_block else [])
    if not case_rows:
        return (pd.DataFrame(columns=case_cols),
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
        cases.append((c["case_id"], cid[c["_i"]], start + c["opened_day"], c["trigger"], c["channel"], c["arm"])
                     + ((c.get("block"),) if with_block else ()))
        callers = c.get("_callers")
        for k, ((day, h, m), ans, dur, oc, rc) in enumerate(c["attempts"]):
            att.append((c["case_id"], pd.Timestamp(start + day) + pd.Timedelta(hours=h, minutes=m), ans, dur,
                        None if callers is None else AGENTS[callers[k]],
                        OUTCOMES[oc] if oc is not None else None,
                        RECEPTIONS[rc] if rc is not None else None))
        for day, h, m, kind in c["sms"]:
            if day < T:
                sms.append((c["case_id"], pd.Timestamp(start + day) + pd.Timedelta(hours=h, minutes=m), kind))
    cases_df = pd.DataFrame(cases, columns=case_cols)
    attempts = pd.DataFrame(att, columns=["case_id", "attempted_at", "answered", "duration_s", "agent_id",
                                          "outcome", "reception"])
    sms_df = pd.DataFrame(sms, columns=["case_id", "sent_at", "kind"])
    return cases_df, attempts, sms_df


def number_cases(cases: pd.DataFrame, attempts: pd.DataFrame, sms: pd.DataFrame, first: int,
                 agent_rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Give a chunk's cases their final ids ``K{first + 1:07d}``, ... and its attempts their agents
    (drawn from ``agent_rng``, shared by all chunks; an unanswered attempt has no agent one time in ten)."""
    cases = cases.copy()
    new_ids = np.array([f"K{first + k + 1:07d}" for k in range(len(cases))], dtype=object)
    id_map = dict(zip(cases["case_id"], new_ids))
    cases["case_id"] = new_ids
    attempts["case_id"] = attempts["case_id"].map(id_map)
    sms["case_id"] = sms["case_id"].map(id_map)
    if attempts["agent_id"].notna().any():     # callers drawn when the attempts were made (they differ)
        return cases, attempts, sms
    ans = attempts["answered"].to_numpy(bool)
    ag = np.array(AGENTS, dtype=object)[agent_rng.integers(0, len(AGENTS), len(attempts))]
    ag[~(ans | (agent_rng.random(len(attempts)) < 0.9))] = None
    attempts["agent_id"] = ag
    return cases, attempts, sms
