"""Data for the survival reference (R survival 3.5.3): python tests/results/make_survival_data.py"""
import numpy as np
import pandas as pd

rng = np.random.default_rng(20261122)
n = 300
contact = rng.integers(0, 2, n)
t_event = rng.exponential(600 / np.where(contact == 1, 0.7, 1.0))
t_cens = rng.uniform(100, 800, n)
duration = np.round(np.minimum(t_event, t_cens))
event = (t_event <= t_cens).astype(int)
weights = np.round(np.where(contact == 1, 1.0, rng.uniform(0.2, 3.0, n)), 3)
cluster = rng.integers(0, 120, n)
pd.DataFrame({"duration": np.maximum(duration, 1), "event": event, "contact": contact, "weights": weights,
              "cluster": cluster}).to_csv("tests/results/survival_data.csv", index=False)
