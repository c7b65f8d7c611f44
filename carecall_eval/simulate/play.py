"""The spending process of one chunk, day by day: intensity swings and binges, stakes and results per product
(with and without any contact: the potential outcomes), account closures and self-service responsible-gambling
actions; the ``activity``, ``deposits`` and ``rg_events`` tables.

A call or letter acts on play only through :meth:`Play.after_call` and :meth:`Play.after_letter`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from . import programme
from .params import SimulationParams
from .population import PRODUCTS, WIN_SHAPE, Population
from .writer import arrow_table

RG_EVENTS = np.array(["limit_set", "limit_lowered", "limit_raised", "pause", "self_exclusion",
                      "self_test_red", "self_test_other"], dtype=object)
PAUSE, SELF_EXCLUSION = 3, 4          # indices into RG_EVENTS
# chances of each self-service event, given one happens
_SELF_SERVICE_P = [0.35, 0.15, 0.10, 0.12, 0.04, 0.09, 0.15]


def day_sum(tl: np.ndarray, i: int, a: int, b: int) -> np.float32:
    """Customer ``i``'s theoretical loss over days ``a:b`` of ``tl`` (``Play.tl_actual`` or ``tl_base``, day x
    customer), summed as a contiguous float32 row (the same pairwise sum, so the same value, as a customer x
    day layout gave)."""
    return np.ascontiguousarray(tl[a:b, i]).sum()


def days_sum(tl: np.ndarray, idx: np.ndarray, a: int, b: int) -> np.ndarray:
    """:func:`day_sum` of the customers ``idx`` (one float32 sum per customer)."""
    return np.ascontiguousarray(tl[a:b, idx].T).sum(axis=1)


class Play:
    """State of the spending process for one chunk of customers.

    Per day, call :meth:`play`, :meth:`close_accounts` and :meth:`self_service` in that order (they share
    the chunk's generator, so the order fixes the draws). ``tl_actual`` and ``tl_base`` hold each
    customer-day's theoretical loss as played and as it would have been without any contact.
    """

    def __init__(self, p: SimulationParams, pop: Population, rng: np.random.Generator) -> None:
        T, n = p.days, pop.n
        self.p, self.pop = p, pop
        self.payback = PRODUCTS["payback"].to_numpy()
        # a slowly mean-reverting log-intensity (Ornstein-Uhlenbeck): risky customers swing widely, so
        # triggers fire near peaks and spending falls afterwards anyway
        self.phi = np.exp(-np.log(2) / p.level_half_life)
        self.innov_sd = pop.sd_level * np.sqrt(1 - self.phi ** 2)
        self.closure_h = p.annual_closure_rate / 365.0
        # season and trend on stakes (common to everyone)
        day_idx = np.arange(T)
        self.dates = np.datetime64(p.start_date, "D") + day_idx
        weekday = ((day_idx + p.start_date.weekday()) % 7)
        self.stake_season = (1.0 + 0.15 * (weekday >= 5)) * (1.0 + 0.08 * np.sin(2 * np.pi * day_idx / 365.25)) * (
            1.0 + 0.05 * day_idx / 365.0)
        # state
        self.level = rng.normal(0.0, pop.sd_level)
        self.excess = np.zeros(n)               # excess of the intensity over the usual level, today
        self.open_ = np.zeros(n, bool)          # account open today (before today's closures)
        self.closed_day = np.full(n, -1)
        self.excluded_until = np.full(n, -1)        # self-service pause / self-exclusion
        self.call_excluded_until = np.full(n, -1)   # pause / self-exclusion agreed on a call
        self.effect_day = np.full(n, 10**9)        # day the stake multiplier starts
        self.effect_mult = np.ones(n)
        self.call_day = np.full(n, 10**9)          # answered-call day (for closure HR)
        self.loss_ring = np.zeros((28, n), dtype=np.float64)
        self.loss28 = np.zeros(n)                   # net loss over the last 28 days
        self.net_cum = np.zeros(n)                  # net loss since the data start (the trial's eligible list)
        # day x customer (a day's losses written into one row); read through day_sum()
        self.tl_actual = np.zeros((T, n), dtype=np.float32)
        self.tl_base = np.zeros((T, n), dtype=np.float32)   # potential outcome without any contact
        # activity rows, day by day: (customers, day, products, wagered, won, rank); a row's rank is its place
        # among its customer's rows in the table's order (day, then product), so the table needs no sort
        self.act_rows: list[tuple] = []
        self.act_count = np.zeros(n, dtype=np.int64)   # activity rows of each customer so far
        self.pref_cdf_t = np.ascontiguousarray(pop.pref_cdf.T)   # product x customer (one gather per product)
        self.rg_rows: list[tuple] = []

    # ------------------------------------------------------------------ one day
    def play(self, t: int, rng: np.random.Generator) -> None:
        """Day ``t``'s play: stakes, results, theoretical loss (both worlds) and the 28-day loss."""
        p, pop = self.p, self.pop
        n_prod = len(self.payback)
        payback = self.payback
        # intensity swings (and their excess over the usual level)
        self.level = self.phi * self.level + self.innov_sd * rng.standard_normal(pop.n)
        level = self.level
        self.excess = np.maximum(np.exp(level) - 1.0, 0.0)
        open_ = (pop.registered_day <= t) & (self.closed_day < 0)
        self.open_ = open_
        # play as it would be without any contact (potential outcome) ...
        plays_base = open_ & (self.excluded_until < t) & (
            rng.random(pop.n) < np.minimum(0.95, pop.play_p * np.exp(0.6 * level)))
        # ... and as it is: a pause or self-exclusion agreed on a call stops play too
        plays = plays_base & (self.call_excluded_until < t)
        idx = np.flatnonzero(plays_base)
        day_loss = np.zeros(pop.n)
        if idx.size:
            k = idx.size
            binge = np.where(rng.random(k) < p.binge_prob, rng.lognormal(np.log(p.binge_size), 0.6, k), 1.0)
            stake = np.exp(pop.mu[idx] + level[idx] + rng.normal(0, p.day_sd, k)) * binge * self.stake_season[t]
            stake = np.round(stake, 2)
            m_now = self.effect_mult[idx] if p.call_effect_half_life is None else \
                programme.current_multiplier(p, self.effect_mult[idx], self.effect_day[idx], t)
            mult = np.where(self.effect_day[idx] <= t, m_now, 1.0) * plays[idx]
            u = rng.random(k)
            # the product: how many of the first n_prod - 1 cumulative shares u exceeds (the cumulative shares
            # are non-decreasing, so this is the count over all of them clipped to the last product)
            p1 = np.zeros(k, dtype=np.int64)
            for j in range(n_prod - 1):
                p1 += u > self.pref_cdf_t[j, idx]
            two = rng.random(k) < 0.3
            p2 = rng.integers(0, n_prod, k)
            two &= p2 != p1
            share = np.where(two, rng.uniform(0.2, 0.6, k), 0.0)
            w_base1 = stake * (1 - share)
            w_base2 = stake * share
            w1 = np.round(w_base1 * mult, 2)
            w2 = np.round(w_base2 * mult, 2)
            shape1, shape2 = WIN_SHAPE[p1], WIN_SHAPE[p2]
            g1 = rng.gamma(shape1, 1.0 / shape1)
            g2 = rng.gamma(shape2, 1.0 / shape2)
            pb1, pb2 = payback[p1], payback[p2]
            won1 = np.round(w1 * pb1 * g1, 2)
            won2 = np.round(w2 * pb2 * g2, 2)
            edge1, edge2 = 1 - pb1, 1 - pb2
            self.tl_actual[t, idx] = w1 * edge1 + w2 * edge2
            self.tl_base[t, idx] = w_base1 * edge1 + w_base2 * edge2
            net = (w1 - won1) + (w2 - won2)
            keep = plays[idx]
            if not keep.all():      # paused or self-excluded on a call: no play (but in the base world)
                idx, p1, p2, w1, w2, won1, won2, two = (x[keep] for x in (idx, p1, p2, w1, w2, won1, won2, two))
                net = net[keep]
            # a customer's rows in the table's order: by day, and on a day with two products the lower first
            rank = self.act_count[idx]
            self.act_rows.append((idx, t, p1, w1, won1, rank + (two & (p2 < p1))))
            sel = np.flatnonzero(two)
            if sel.size:
                self.act_rows.append((idx[sel], t, p2[sel], w2[sel], won2[sel], rank[sel] + (p2[sel] > p1[sel])))
            self.act_count[idx] = rank + 1 + two
            day_loss[idx] = net
        self.net_cum += day_loss
        self.loss28 += day_loss - self.loss_ring[t % 28]
        self.loss_ring[t % 28] = day_loss

    def close_accounts(self, t: int, rng: np.random.Generator) -> None:
        """Day ``t``'s account closures (a small true hazard ratio after an answered call)."""
        h_call = self.closure_h * self.p.closure_hr_call
        u = rng.random(self.pop.n)
        # the hazard is at most max(...): only those below it can close (the rest of the arithmetic on them alone)
        cand = np.flatnonzero(u < max(self.closure_h, h_call))
        if cand.size:
            h = np.where(self.call_day[cand] <= t, h_call, self.closure_h)
            self.closed_day[cand[self.open_[cand] & (u[cand] < h)]] = t

    def self_service(self, t: int, rng: np.random.Generator) -> None:
        """Day ``t``'s self-service responsible-gambling events (anyone), more likely in an episode."""
        u = rng.random(self.pop.n)
        cand = np.flatnonzero(u < 0.0008 + 0.0006 * 5)      # the chance's largest value (then on these alone)
        rg_p = (0.0008 + 0.0006 * np.minimum(self.excess[cand], 5)) * self.open_[cand]
        rg_hit = cand[u[cand] < rg_p]
        if rg_hit.size:
            ev = rng.choice(len(RG_EVENTS), size=rg_hit.size, p=_SELF_SERVICE_P)
            self.rg_rows.append((rg_hit, t, ev, np.zeros(rg_hit.size, bool)))
            excl = rg_hit[ev == SELF_EXCLUSION]
            self.excluded_until[excl] = t + 180
            paused = rg_hit[ev == PAUSE]
            self.excluded_until[paused] = np.maximum(self.excluded_until[paused], t + 30)

    # ------------------------------------------------------------------ contact
    def after_call(self, i: int, day: int, events: list[int], mult: float | None = None) -> None:
        """Customer ``i`` answered on ``day``: stakes scaled by ``call_effect`` (or the case's ``mult``, see
        :mod:`.programme`) from then on, the responsible-gambling ``events`` agreed on the call recorded,
        pauses and self-exclusions enforced."""
        m = self.p.call_effect if mult is None else mult
        if self.p.second_call_effect is not None and self.call_day[i] < 10**9:    # reached before
            m = self.multiplier_on(i, day) * self.p.second_call_effect
        self.effect_day[i] = day
        self.effect_mult[i] = m
        self.call_day[i] = day
        for ev in events:
            self.rg_rows.append((np.array([i]), day, np.array([ev]), np.array([True])))
            if ev == SELF_EXCLUSION:
                self.call_excluded_until[i] = max(self.call_excluded_until[i], day + 180)
            if ev == PAUSE:
                self.call_excluded_until[i] = max(self.call_excluded_until[i], day + 30)

    def multiplier_on(self, i: int, t: int) -> float:
        """Customer ``i``'s stake multiplier on day ``t`` from their last call or letter (1 before any)."""
        if self.effect_day[i] > t:
            return 1.0
        return float(programme.current_multiplier(self.p, self.effect_mult[i:i + 1], self.effect_day[i:i + 1], t)[0])

    def after_letter(self, i: int, day: int) -> None:
        """Customer ``i`` read a letter on ``day``: stakes scaled by ``letter_effect`` from then on."""
        self.effect_day[i] = day
        self.effect_mult[i] = self.p.letter_effect

    # ------------------------------------------------------------------ tables
    def activity_rows(self) -> dict[str, np.ndarray]:
        """The ``activity`` rows as arrays sorted by customer, day and product: ``customer`` (index in the chunk),
        ``day``, ``product`` (index into ``PRODUCTS``), ``wagered``, ``won``; each row placed by its customer's
        first row plus its rank (no sort)."""
        rows, counts = self.act_rows, self.act_count
        n_rows = int(counts.sum())
        first = np.zeros(counts.size, dtype=np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        out: dict[str, np.ndarray] = {
            "customer": np.repeat(np.arange(counts.size), counts), "day": np.empty(n_rows, np.int32),
               "product": np.empty(n_rows, np.int8), "wagered": np.empty(n_rows), "won": np.empty(n_rows)}
        for idx, t, prod, w, won, rank in rows:
            pos = first[idx] + rank
            out["day"][pos] = t
            out["product"][pos] = prod
            out["wagered"][pos] = w
            out["won"][pos] = won
        return out

    def rg_events_table(self, cid: np.ndarray) -> pd.DataFrame:
        """The ``rg_events`` table (self-service and agreed on a call), up to the data end."""
        rows, dates = self.rg_rows, self.dates
        if not rows:
            return pd.DataFrame(columns=["customer_id", "occurred_on", "event", "via_call"])
        rg_events = pd.DataFrame({
            "customer_id": cid[np.concatenate([r[0] for r in rows])],
            "occurred_on": dates[np.concatenate([np.full(r[0].size, r[1]) for r in rows])],
            "event": RG_EVENTS[np.concatenate([r[2] for r in rows])],
            "via_call": np.concatenate([r[3] for r in rows]),
        })
        return rg_events[rg_events["occurred_on"] < dates[-1] + 1]


def activity_table(rows: dict[str, np.ndarray], cid: np.ndarray, dates: np.ndarray) -> pa.Table:
    """The ``activity`` table (Arrow, the contract's schema) from :meth:`Play.activity_rows`."""
    return arrow_table("activity", {
        "customer_id": pa.array(cid, pa.string()).take(rows["customer"]),
        "date": dates[rows["day"]],
        "product": pa.array(PRODUCTS["product"].to_numpy(), pa.string()).take(rows["product"]),
        "wagered": rows["wagered"],
        "won": rows["won"],
    })


def deposits_table(rows: dict[str, np.ndarray], cid: np.ndarray, dates: np.ndarray,
                   rng: np.random.Generator) -> pa.Table:
    """The ``deposits`` table (Arrow): a share of each play day's stakes, on most play days; ``rows`` from
    :meth:`Play.activity_rows` (a play day's rows are adjacent, so its stakes are summed in the table's order)."""
    cust, day = rows["customer"], rows["day"]
    new_day = np.empty(cust.size, dtype=bool)     # a row opening a customer's play day
    new_day[:1] = True
    np.not_equal(cust[1:], cust[:-1], out=new_day[1:])
    new_day[1:] |= day[1:] != day[:-1]
    starts = np.flatnonzero(new_day)
    day_tot = np.add.reduceat(rows["wagered"], starts) if starts.size else np.empty(0)
    dep_u = rng.random(day_tot.size)
    dep_keep = dep_u < 0.6
    first = starts[dep_keep]
    return arrow_table("deposits", {
        "customer_id": pa.array(cid, pa.string()).take(cust[first]),
        "date": dates[day[first]],
        "amount": np.round(day_tot[dep_keep] * rng.uniform(0.2, 0.7, dep_keep.sum()), 0),
    })
