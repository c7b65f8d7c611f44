"""The simulator's fast paths give what the plain formulations they replace give, value for value (the
committed sample and every known-truth test depend on the exact random stream and arithmetic)."""
import numpy as np
import pandas as pd
import pytest

from carecall_eval.simulate import simulate
from carecall_eval.simulate.calls import answer_logit, answer_logits, choice_cdf, draw_index
from carecall_eval.simulate.params import SimulationParams
from carecall_eval.simulate.play import Play, activity_table, day_sum, days_sum, deposits_table
from carecall_eval.simulate.population import PRODUCTS, customer_ids, draw_population


def test_draw_index_is_generator_choice():
    p = [0.10, 0.08, 0.05, 0.04, 0.05, 0.58, 0.10]
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    cdf = choice_cdf(p)
    for k in range(2000):
        if k % 7 == 0:        # other draws in between, some leaving half a 64-bit word buffered
            assert a.integers(0, 60, 3).tolist() == b.integers(0, 60, 3).tolist()
        assert draw_index(a, cdf) == int(b.choice(len(p), p=p))
    assert a.random() == b.random()


@pytest.mark.parametrize("knobs", [{}, {"answer_hour_log_odds": tuple(np.linspace(-0.3, 0.4, 24)),
                                        "answer_weekday_log_odds": (0.1, 0.0, -0.05, 0.02, 0.0, -0.3, -0.2)},
                                   {"answer_evening_log_odds": -0.1, "answer_weekend_log_odds": 0.15}])
def test_answer_logits_are_answer_logit(knobs):
    p = SimulationParams(**knobs)
    rng = np.random.default_rng(3)
    for _ in range(300):
        start = int(rng.integers(0, 740))
        days = start + np.array([0, 1, 3, 6])
        hours = rng.integers(9, 20, 4)
        age, log_spend, pref = 18 + 60 * rng.random(), 12 * rng.random(), rng.dirichlet(np.ones(5))
        got = answer_logits(p, days, np.float64(age), log_spend, pref, hours)
        want = [answer_logit(p, int(d), k, np.float64(age), log_spend, pref, int(h))
                for k, (d, h) in enumerate(zip(days, hours))]
        assert got.tolist() == want


def _played(n=400, days=200, seed=9):
    p = SimulationParams(customers=n, seed=seed, days=days)
    rng = np.random.default_rng(seed)
    pop = draw_population(p, n, rng)
    play = Play(p, pop, rng)
    for t in range(days):
        play.play(t, rng)
        play.close_accounts(t, rng)
        play.self_service(t, rng)
    return play


def test_activity_rows_are_in_lexsort_order():
    play = _played()
    rows = play.act_rows
    idx = np.concatenate([r[0] for r in rows])
    day = np.concatenate([np.full(r[0].size, r[1]) for r in rows])
    prod = np.concatenate([r[2] for r in rows])
    wagered = np.concatenate([r[3] for r in rows])
    order = np.lexsort((prod, day, idx))
    got = play.activity_rows()
    assert got["customer"].tolist() == idx[order].tolist()
    assert got["day"].tolist() == day[order].tolist()
    assert got["product"].tolist() == prod[order].tolist()
    assert got["wagered"].tobytes() == wagered[order].tobytes()
    assert (np.bincount(idx, minlength=play.pop.n) == play.act_count).all()
    # two products on a day happen, in both orders of drawing
    assert ((got["customer"][1:] == got["customer"][:-1]) & (got["day"][1:] == got["day"][:-1])).any()


def test_activity_and_deposits_tables_match_the_pandas_formulation():
    play = _played()
    cid = customer_ids(0, play.pop.n)
    rows = play.activity_rows()
    act = activity_table(rows, cid, play.dates).to_pandas()
    want = pd.DataFrame({"customer_id": cid[rows["customer"]], "date": play.dates[rows["day"]],
                         "product": PRODUCTS["product"].to_numpy()[rows["product"]],
                         "wagered": rows["wagered"], "won": rows["won"]})
    assert act["customer_id"].tolist() == want["customer_id"].tolist()
    assert act["product"].tolist() == want["product"].tolist()
    assert (pd.to_datetime(act["date"]).to_numpy() == want["date"].to_numpy()).all()
    # deposits: the pandas groupby they replace, with the same draws
    got = deposits_table(rows, cid, play.dates, np.random.default_rng(1)).to_pandas()
    rng = np.random.default_rng(1)
    day_tot = want.groupby(["customer_id", "date"], sort=False)["wagered"].sum()
    keep = rng.random(day_tot.size) < 0.6
    amount = np.round(day_tot.to_numpy()[keep] * rng.uniform(0.2, 0.7, keep.sum()), 0)
    assert got["customer_id"].tolist() == day_tot.index.get_level_values(0)[keep].tolist()
    assert got["amount"].to_numpy().tobytes() == amount.tobytes()


def test_day_sums_are_the_contiguous_row_sums():
    play = _played()
    rows = np.ascontiguousarray(play.tl_actual.T)      # customer x day, as the readers once had it
    assert rows.any()
    for i in range(0, play.pop.n, 17):
        for a, b in [(0, 200), (3, 187), (40, 41), (50, 50), (0, -5)]:
            assert day_sum(play.tl_actual, i, a, b).tobytes() == rows[i, a:b].sum().tobytes()
    idx = np.arange(0, play.pop.n, 3)
    assert days_sum(play.tl_actual, idx, 10, 100).tobytes() == rows[idx, 10:100].sum(axis=1).tobytes()


def test_workers_leave_no_spool_behind(tmp_path):
    simulate(tmp_path / "two", customers=900, seed=4, chunk_size=300, jobs=2)
    assert not [f.name for f in (tmp_path / "two").iterdir() if "spool" in f.name]
    assert not [f.name for f in tmp_path.iterdir() if f.name != "two"]
