"""One chunk of customers simulated over the whole period: the day loop, vectorised over the chunk's
customers, and the chunk's tables and truth sums."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .calls import CaseDesk, case_tables
from .params import SimulationParams
from .play import Play, deposits_table
from .population import customer_ids, customers_table, draw_population
from .truth import chunk_truth


@dataclass
class Chunk:
    """Everything simulated for one chunk of customers (case ids still temporary, agents not drawn)."""

    customers: pd.DataFrame
    activity: pd.DataFrame
    deposits: pd.DataFrame
    triggers: pd.DataFrame
    cases: pd.DataFrame
    attempts: pd.DataFrame
    sms: pd.DataFrame
    rg_events: pd.DataFrame
    truth: dict = field(default_factory=dict)


def simulate_chunk(p: SimulationParams, offset: int, n: int, rng: np.random.Generator) -> Chunk:
    """Simulate customers ``offset + 1 .. offset + n`` with their own generator ``rng``.

    Every draw comes from ``rng`` in a fixed order (population, then per day: play, closures,
    self-service events, triggers, cases; then deposits), so the same seed gives the same chunk.
    """
    pop = draw_population(p, n, rng)
    play = Play(p, pop, rng)
    desk = CaseDesk(p, pop)
    for t in range(p.days):
        play.play(t, rng)
        play.close_accounts(t, rng)
        play.self_service(t, rng)
        fired_any, fired_kind = desk.fire_triggers(t, rng, play)
        if t >= p.programme_start_day:
            desk.open_cases(t, rng, fired_any, fired_kind, play)

    cid = customer_ids(offset, n)
    activity = play.activity_table(cid)
    deposits = deposits_table(activity, rng)
    customers = customers_table(p, pop, cid, play.closed_day)
    triggers = desk.triggers_table(cid, play.dates)
    rg_events = play.rg_events_table(cid)
    cases, attempts, sms = case_tables(desk.case_rows, cid, np.datetime64(p.start_date, "D"), p.days)
    truth = chunk_truth(p, desk.case_rows, play.tl_actual, play.tl_base, play.closed_day, pop.registered_day)
    return Chunk(customers, activity, deposits, triggers, cases, attempts, sms, rg_events, truth)
