"""One chunk of customers simulated over the whole period: the day loop, vectorised over the chunk's
customers, and the chunk's tables and truth sums."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from . import programme, trial
from .calls import CaseDesk, case_tables
from .params import SimulationParams
from .play import Play, activity_table, deposits_table
from .population import customer_ids, customers_table, draw_population
from .truth import chunk_truth


@dataclass
class Chunk:
    """Everything simulated for one chunk of customers (case ids still temporary, agents not drawn).

    From a worker, the tables of ``run._ARROW`` are the paths of the Arrow files they were spooled to."""

    customers: pd.DataFrame
    activity: pa.Table
    deposits: pa.Table
    triggers: pd.DataFrame
    cases: pd.DataFrame
    attempts: pd.DataFrame
    sms: pd.DataFrame
    rg_events: pd.DataFrame
    truth: dict = field(default_factory=dict)
    trial: dict | None = None          # the randomized study's eligible list and Allocation (if any)


def simulate_chunk(p: SimulationParams, offset: int, n: int, rng: np.random.Generator) -> Chunk:
    """Simulate customers ``offset + 1 .. offset + n`` with their own generator ``rng``.

    Every draw comes from ``rng`` in a fixed order (population, then per day: play, closures,
    self-service events, triggers, cases; then deposits), so the same seed gives the same chunk.
    """
    pop = draw_population(p, n, rng)
    play = Play(p, pop, rng)
    desk = CaseDesk(p, pop)
    cid = customer_ids(offset, n)
    study = None
    net_at: dict[int, np.ndarray] = {}      # net loss since the data start, before the trial's look-back and day
    for t in range(p.days):
        if p.trial is not None and t in (p.trial_day - p.trial_lookback, p.trial_day):
            net_at[t] = play.net_cum.copy()
        play.play(t, rng)
        play.close_accounts(t, rng)
        play.self_service(t, rng)
        fired, fired_kind = desk.fire_triggers(t, rng, play)
        if p.trial is not None and t == p.trial_day:
            net = net_at[t] - net_at.get(t - p.trial_lookback, np.zeros(n))
            eligible = trial.eligible_list(p, pop, play, desk.last_case_day, t, net, cid)
            chunk_no = offset // p.chunk_size
            study = {"chunk": chunk_no, "eligible": eligible.drop(columns="_i"),
                     "allocation": trial.run_trial_day(p, rng, desk, play, t, eligible, chunk_no)}
        if t >= p.programme_start_day:
            desk.open_cases(t, rng, fired, fired_kind, play)

    rows = play.activity_rows()
    activity = activity_table(rows, cid, play.dates)
    deposits = deposits_table(rows, cid, play.dates, rng)
    del rows
    customers = customers_table(p, pop, cid, play.closed_day)
    triggers = desk.triggers_table(cid, play.dates)
    rg_events = play.rg_events_table(cid)
    cases, attempts, sms = case_tables(desk.case_rows, cid, np.datetime64(p.start_date, "D"), p.days,
                                       with_block=p.trial is not None)
    truth = chunk_truth(p, desk.case_rows, play.tl_actual, play.tl_base, play.closed_day, pop.registered_day)
    if p.trial is not None:
        truth["trial"] = trial.trial_truth(p, desk.case_rows, play.tl_actual, play.tl_base)
    if programme.active(p):
        truth["programme"] = programme.chunk_truth(p, desk.case_rows, play.tl_actual, play.tl_base,
                                                   pop.registered_day)
    return Chunk(customers, activity, deposits, triggers, cases, attempts, sms, rg_events, truth, study)
