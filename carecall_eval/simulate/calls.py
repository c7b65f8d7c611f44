"""The care-call programme of one chunk: triggers, case opening (selection on observables), the randomized
sub-study's arms, call attempts and whether they are answered (with and without the SMS policy), the
missed-call SMS, call durations, outcomes and reception; the ``triggers``, ``call_cases``,
``call_attempts`` and ``sms`` tables, and the case ids and agents numbered across chunks.
"""
from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import pandas as pd

from . import programme
from .params import SimulationParams
from .play import PAUSE, SELF_EXCLUSION, Play, day_sum
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
#: Trigger names by code (the order triggers are checked in, at most one per customer and day).
TRIGGERS = ("high_loss", "red_self_test", "risk_model", "pause_lift_request")
_OPEN_P_OF = np.array([_OPEN_P[k] for k in TRIGGERS])
_OFFSETS = np.array(ATTEMPT_OFFSETS)
_ATTEMPT_NO = np.arange(len(ATTEMPT_OFFSETS))
_LOG_300 = np.log(300)


def choice_cdf(p) -> list[float]:
    """The cumulative probabilities :meth:`numpy.random.Generator.choice` searches for ``p`` (as floats)."""
    cdf = np.asarray(p, dtype=np.float64).cumsum()
    cdf /= cdf[-1]
    return cdf.tolist()


def draw_index(rng: np.random.Generator, cdf: list[float]) -> int:
    """``rng.choice(len(p), p=p)`` for ``cdf = choice_cdf(p)``: the same uniform drawn, the same index
    (``searchsorted(cdf, u, side="right")``), without the checks of ``choice`` on every call."""
    return bisect.bisect_right(cdf, rng.random())


_CHANNELS = ("phone", "letter", "email")
_CHANNEL_CDF = choice_cdf([0.92, 0.05, 0.03])
_OUTCOME_CDF = choice_cdf(OUTCOME_P)
_RECEPTION_CDF = choice_cdf(RECEPTION_P)


class CaseDesk:
    """Triggers and cases of one chunk. Per day, call :meth:`fire_triggers`, then (from the programme
    start) :meth:`open_cases`."""

    def __init__(self, p: SimulationParams, pop: Population) -> None:
        self.p, self.pop = p, pop
        self.thr = np.where(pop.young, p.loss_threshold_young, p.loss_threshold)
        self.last_case_day = np.full(pop.n, -10**9)
        self.last_trigger_day = np.full(pop.n, -10**9)
        self.trig_rows: list[tuple] = []
        self.risk_model_p = 0.0004 * np.clip(np.exp(pop.mu - np.log(150)) * pop.play_p * 4, 0, 8)
        self.case_rows: list[dict] = []

    def fire_triggers(self, t: int, rng: np.random.Generator, play: Play) -> tuple[np.ndarray, np.ndarray]:
        """Day ``t``'s triggers (at most one per customer): who fired (indices, ascending) and their trigger
        codes (into :data:`TRIGGERS`)."""
        p, n = self.p, self.pop.n
        open_, excess, loss28 = play.open_, play.excess, play.loss28
        # each trigger's rare condition first (a uniform below the chance's largest value, a high loss), then
        # the rest on those few: the same customers as the conditions on everyone
        hl = np.flatnonzero(loss28 > self.thr)
        hl = hl[open_[hl] & (self.last_trigger_day[hl] <= t - 60)]
        u = rng.random(n)
        st = np.flatnonzero(u < 0.00015 * (1 + 6))
        st = st[open_[st] & (u[st] < 0.00015 * (1 + np.minimum(excess[st], 6)))]
        u = rng.random(n)          # drawn every day, used from the risk model's start
        rm = None
        if t >= p.risk_model_start_day:
            rm = np.flatnonzero(u < 0.0004 * 8)
            rm = rm[open_[rm] & (u[rm] < self.risk_model_p[rm]) & (self.last_trigger_day[rm] <= t - 60)]
        u = rng.random(n)
        pl = np.flatnonzero(u < 0.002)
        pl = pl[open_[pl] & (play.excluded_until[pl] >= t)]
        code = None
        fired = []
        for k, (ii, val) in enumerate(((hl, loss28), (st, None), (rm, None), (pl, None))):
            if ii is None:
                continue
            if ii.size and code is not None:
                ii = ii[code[ii] < 0]
            if not ii.size:
                continue
            values = np.round(val[ii], 2) if val is not None else np.full(ii.size, np.nan)
            self.trig_rows.append((ii, t, TRIGGERS[k], values))
            if code is None:
                code = np.full(n, -1, dtype=np.int8)
            code[ii] = k
            fired.append(ii)
        if not fired:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8)
        who = np.sort(np.concatenate(fired)) if len(fired) > 1 else fired[0]
        self.last_trigger_day[who] = t
        assert code is not None                      # set when anything fired
        return who, code[who]

    def open_cases(self, t: int, rng: np.random.Generator, fired: np.ndarray, kinds: np.ndarray,
                   play: Play) -> None:
        """Open cases for day ``t``'s triggers (``fired`` and their codes ``kinds``, from :meth:`fire_triggers`;
        selection depends on observables: loss size, age), play each case out and let its call or letter act on
        play."""
        p, pop, thr, loss28 = self.p, self.pop, self.thr, play.loss28
        keep = t - self.last_case_day[fired] >= p.case_gap_days
        cand, kinds = fired[keep], kinds[keep]
        if not cand.size:
            return
        q = _OPEN_P_OF[kinds]
        q = np.clip(q + 0.1 * np.tanh((loss28[cand] - thr[cand]) / thr[cand]) - 0.1 * pop.young[cand], 0.05, 0.95)
        chosen = rng.random(cand.size) < q
        for i, kind in zip(cand[chosen], kinds[chosen]):      # cases are rare (a few per thousand customer-days)
            # long-run intensity (days -365..-85, per 84 days): a stable trait, observable
            a0 = max(0, t - 365)
            span = max(1, (t - 85) - a0)
            log_spend = float(np.log1p(day_sum(play.tl_actual, i, a0, t - 85) * 84.0 / span))
            c = open_case(p, rng, int(i), t, TRIGGERS[kind], pop.age0[i], log_spend, pop.pref[i])
            self.case_rows.append(c)
            self.last_case_day[i] = t
            if play.call_day[i] < 10**9 and _constants(p).programme:   # reached before: the truth of a second call
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


def answer_logits(p: SimulationParams, days: np.ndarray, age: float, log_spend: float, pref: np.ndarray,
                  hours: np.ndarray) -> np.ndarray:
    """:func:`answer_logit` of a case's attempts (attempt ``k`` on ``days[k]`` at ``hours[k]``), the same terms
    added in the same order, so the same values."""
    k = _constants(p)
    weekday = (days + k.weekday0) % 7
    return ((-1.30 + 0.25 * (age - 40) / 10 - 0.15 * (log_spend - 9.0) - 0.8 * pref[2])
            - 0.30 * _ATTEMPT_NO[:days.size] + 0.15 * days / 365.0 + k.weekday_log_odds[weekday] + k.hour_log_odds[hours])


class _Constants:
    """What every case of a simulation needs from its parameters, worked out once (not per case)."""

    def __init__(self, p: SimulationParams) -> None:
        self.p = p
        self.policy_day = p.policy_day
        self.weekday0 = p.start_date.weekday()
        self.weekday_log_odds = np.array([programme.weekday_log_odds(p, d) for d in range(7)], dtype=np.float64)
        self.hour_log_odds = np.array([programme.hour_log_odds(p, h) for h in range(24)], dtype=np.float64)
        self.sms_boost = np.array([p.sms_log_odds if k >= p.sms_after_attempts else 0.0
                                   for k in range(len(ATTEMPT_OFFSETS))])
        self.programme = programme.active(p)


_last_constants: list = [None]


def _constants(p: SimulationParams) -> _Constants:
    """The :class:`_Constants` of ``p`` (kept for the last parameters seen: a lookup by identity, as hashing the
    parameters on every case would cost more than it saves)."""
    k = _last_constants[0]
    if k is None or k.p is not p:
        k = _last_constants[0] = _Constants(p)
    return k


def open_case(p: SimulationParams, rng: np.random.Generator, i: int, t: int, trigger: str, age0: float,
              log_spend: float, pref: np.ndarray, *, trial_arm: str | None = None, block: str | None = None,
              first_attempt: int | None = None) -> dict:
    """Open one case: channel, arm, attempts, SMS, outcome (both policy worlds).

    ``trial_arm`` opens a case of the randomized study (see :mod:`.trial`): the arm and ``block`` are
    given, the case opens on day ``t`` and its attempts start on ``first_attempt``; without it the
    draws are those of the programme (and of the simple randomized sub-study when no study is set).
    """
    policy_day = _constants(p).policy_day
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
            channel = _CHANNELS[draw_index(rng, _CHANNEL_CDF)]     # rng.choice(_CHANNELS, p=[...]), cheaper
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
    days = start + _OFFSETS
    logits = answer_logits(p, days, age, log_spend, pref, hours)
    callers = programme.draw_callers(p, rng, n_att)     # None unless callers differ (then drawn here)
    if callers is not None:
        logits = logits + programme.caller_effects(p)["answer"][callers]
        case["_callers"] = callers
    ans_without = us < 1 / (1 + np.exp(-logits))
    ans_with = us < 1 / (1 + np.exp(-(logits + _constants(p).sms_boost))) if policy_on else ans_without
    observed = days < p.days          # attempts after the data end are not seen
    case["_reached_without"] = bool((ans_without & observed).any())
    case["_reached_with"] = bool((ans_with & observed).any())
    realised = ans_with.tolist()
    hours, minutes = hours.tolist(), minutes.tolist()
    for k in range(n_att):
        day = start + offsets[k]
        if day >= p.days:
            break
        ts = (day, hours[k], minutes[k])
        if realised[k]:
            # np.round(np.clip(lognormal, 40, 3600), 0), on a Python float
            dur = float(round(min(max(rng.lognormal(_LOG_300, 0.55), 40.0), 3600.0)))
            who = None if callers is None else int(callers[k])
            oc_p = programme.outcome_p(p, OUTCOME_P, who)
            oc = draw_index(rng, _OUTCOME_CDF if oc_p is OUTCOME_P else choice_cdf(oc_p))
            rc = draw_index(rng, _RECEPTION_CDF) if rng.random() < 0.95 else None
            case["attempts"].append((ts, True, dur, oc, rc))
            case["_answer_day"] = day
            case["_rg_via_call"] = _EVENTS_OF_OUTCOME.get(oc, [])
            case["_answer_caller"] = who
            case["_mult"] = programme.call_multiplier(p, log_spend, day - t, who)
            break
        case["attempts"].append((ts, False, None, None, None))
        if policy_on and k + 1 == p.sms_after_attempts:
            sent_minute = minutes[k] + 5 if minutes[k] < 50 else 59
            case["sms"].append((day, hours[k], sent_minute, "missed_call_followup"))
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
    att, att_at = [], []            # attempts and their (day, hour, minute)
    sms, sms_at = [], []
    for k, c in enumerate(case_rows):
        if c["opened_day"] >= T:
            continue
        c["case_id"] = f"tmp{k}"
        cases.append((c["case_id"], cid[c["_i"]], start + c["opened_day"], c["trigger"], c["channel"], c["arm"])
                     + ((c.get("block"),) if with_block else ()))
        callers = c.get("_callers")
        for k, (when, ans, dur, oc, rc) in enumerate(c["attempts"]):
            att.append((c["case_id"], ans, dur, None if callers is None else AGENTS[callers[k]],
                        OUTCOMES[oc] if oc is not None else None,
                        RECEPTIONS[rc] if rc is not None else None))
            att_at.append(when)
        for day, h, m, kind in c["sms"]:
            if day < T:
                sms.append((c["case_id"], kind))
                sms_at.append((day, h, m))
    cases_df = pd.DataFrame(cases, columns=case_cols)
    attempts = pd.DataFrame(att, columns=["case_id", "answered", "duration_s", "agent_id", "outcome", "reception"])
    attempts.insert(1, "attempted_at", _timestamps(start, att_at))
    sms_df = pd.DataFrame(sms, columns=["case_id", "kind"])
    sms_df.insert(1, "sent_at", _timestamps(start, sms_at))
    return cases_df, attempts, sms_df


def _timestamps(start: np.datetime64, when: list[tuple]) -> np.ndarray:
    """``start`` plus (day, hour, minute) of each row, as nanosecond datetimes."""
    w = np.array(when, dtype=np.int64).reshape(-1, 3)
    return (start.astype("datetime64[s]") + (w[:, 0] * 86400 + w[:, 1] * 3600 + w[:, 2] * 60)).astype("datetime64[ns]")


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
