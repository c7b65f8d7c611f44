"""Who plays: the products and their paybacks, and each customer's age, gender, registration, risk,
product preferences and usual intensity; the ``customers`` table."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .params import SimulationParams

PRODUCTS = pd.DataFrame(
    {
        "product": ["lottery", "sports", "casino", "poker", "bingo"],
        "payback": [0.50, 0.92, 0.96, 0.97, 0.75],
    }
)
# Gamma shape of the per-day win multiplier (smaller = noisier results).
WIN_SHAPE = np.array([0.5, 8.0, 20.0, 20.0, 3.0])


@dataclass
class Population:
    """The fixed traits of one chunk of ``n`` customers (day indices count from the data start)."""

    n: int
    age0: np.ndarray             # age at the data start
    birth_year: np.ndarray
    gender: np.ndarray
    registered_day: np.ndarray
    risky: np.ndarray            # prone to loss episodes
    young: np.ndarray            # under 30 at the data start
    pref: np.ndarray             # (n, products) product shares
    pref_cdf: np.ndarray
    mu: np.ndarray               # usual log stake per play day
    play_p: np.ndarray           # usual probability of playing on a day
    sd_level: np.ndarray         # sd of the slowly varying log-intensity


def draw_population(p: SimulationParams, n: int, rng: np.random.Generator) -> Population:
    """Draw the traits of ``n`` customers (the first draws of a chunk's generator)."""
    T = p.days
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
    sd_level = np.where(risky, p.level_sd_risky, p.level_sd_other)
    return Population(n, age0, birth_year, gender, registered_day, risky, young, pref, pref_cdf, mu, play_p,
                      sd_level)


def customer_ids(offset: int, n: int) -> np.ndarray:
    """``C0000001``, ... for customers ``offset + 1 .. offset + n``."""
    return np.char.add("C", np.char.zfill(np.arange(offset + 1, offset + n + 1).astype(str), 7)).astype(object)


def customers_table(p: SimulationParams, pop: Population, cid: np.ndarray, closed_day: np.ndarray) -> pd.DataFrame:
    """The ``customers`` table of a chunk (``closed_day`` -1 for accounts still open)."""
    start = np.datetime64(p.start_date, "D")
    return pd.DataFrame({
        "customer_id": cid,
        "operator": p.operator,
        "birth_year": pop.birth_year,
        "gender": pop.gender,
        "registered_on": start + pop.registered_day,
        "closed_on": np.where(closed_day >= 0, start + np.maximum(closed_day, 0), np.datetime64("NaT")),
    })
