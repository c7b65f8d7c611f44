"""Generate ``matchit_data.csv``, the small dataset behind the MatchIt reference fixtures.

Run from the repository root::

    python tests/results/make_matchit_data.py

The data are simulated with a fixed seed so the CSV can be regenerated
byte-for-byte; ``matchit_reference.R`` then reads it and writes the
``matchit_*.csv`` fixtures.
"""
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20260301
N = 300


def make(seed: int = SEED, n: int = N) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(45, 12, n).round(1)
    income = rng.lognormal(10, 0.5, n).round(0)
    tenure = rng.gamma(2.0, 300.0, n).round(0)
    married = rng.binomial(1, 0.45, n)
    region = rng.choice(["north", "south", "west"], n, p=[0.5, 0.3, 0.2])
    trigger = rng.choice(["loss", "time"], n, p=[0.6, 0.4])
    lin = (-1.4 + 0.035 * (age - 45) + 0.6 * (np.log(income) - 10)
           - 0.0006 * (tenure - 600) + 0.5 * married
           + 0.6 * (region == "south") - 0.4 * (region == "west")
           + 0.5 * (trigger == "loss"))
    treat = rng.binomial(1, 1 / (1 + np.exp(-lin)))
    return pd.DataFrame({
        "id": np.arange(1, n + 1), "treat": treat, "age": age, "income": income,
        "tenure": tenure, "married": married, "region": region, "trigger": trigger,
    })


if __name__ == "__main__":
    out = Path(__file__).with_name("matchit_data.csv")
    make().to_csv(out, index=False)
    print(f"wrote {out}")
