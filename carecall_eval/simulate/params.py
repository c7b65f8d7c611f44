"""Every knob of the simulator, with its default, in one frozen dataclass recorded whole in ``truth.json``."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


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
    # a randomized study of the top spenders on one day (off by default; see simulate/trial.py)
    trial: str | None = None               # None (off), or the allocation design: "matched-sets", "blocked", "simple"
    trial_day: int = 300                   # the day the eligible list is drawn and allocated (the index date)
    trial_ratio: str = "1:1:1"             # call : letter : control (two parts: call : control)
    trial_share: float = 0.10              # top share of eligible customers by net loss over the look-back
    trial_lookback: int = 180              # days of net loss the eligible list ranks and matches on
    trial_call_spread: int = 14            # first attempts spread over this many days after the index
    trial_seed: int | None = None          # allocation seed (default: seed); chunk k uses it + k - 1
    trial_block_size: int | None = None    # permuted block size of the "blocked" design (default: twice the ratio)
    # programme truths (see simulate/programme.py): the defaults reproduce earlier data byte for byte
    answer_evening_log_odds: float = 0.20  # answering at 17-19 h (log-odds)
    answer_weekend_log_odds: float = -0.25  # answering on Saturday and Sunday (log-odds)
    answer_hour_log_odds: tuple | None = None     # 24 offsets by hour of day (replace the evening term)
    answer_weekday_log_odds: tuple | None = None  # 7 offsets, Monday first (replace the weekend term)
    call_effect_spend_slope: float = 0.0   # log stake multiplier per unit of log long-run spending (centre 9)
    call_effect_delay_slope: float = 0.0   # log stake multiplier per day from trigger to answered call
    call_effect_half_life: float | None = None  # days; the call's effect on stakes fades (None: it lasts)
    second_call_effect: float | None = None     # stake multiplier a call adds for a customer reached before
    caller_answer_sd: float = 0.0          # sd of the callers' effects on the log-odds of answering
    caller_effect_sd: float = 0.0          # sd of the callers' effects on the log stake multiplier
    caller_action_sd: float = 0.0          # sd of the callers' effects on the log-odds of a call ending in an action
    programme_truth: bool = False          # record the programme truths even with every knob above at its default

    @property
    def start_date(self) -> dt.date:
        return dt.date.fromisoformat(self.start)

    @property
    def policy_day(self) -> int | None:
        if self.sms_policy_start is None:
            return None
        return (dt.date.fromisoformat(self.sms_policy_start) - self.start_date).days
