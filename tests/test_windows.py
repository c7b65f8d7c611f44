"""The aggregation layer (cohorts/windows.py) against plain pandas on the sample's files.

Each aggregate is recomputed here the obvious way (pandas over the whole
activity table, a loop-free merge) and must agree: window totals and active
days over windows that cross the 63-day bitmask blocks, product shares, the
event-study moments, prior responsible-gambling flags and last play.
Also: stage timing, the memory limit, the validation report's JSON, and a
matched-sets table (repeated index labels) keeping its rows in add_outcomes.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE

from carecall_eval.cohorts import windows as W
from carecall_eval.contract import ValidationReport, load, validate
from carecall_eval.stages import Stages


@pytest.fixture(scope="module")
def ds():
    d = load(SAMPLE, validate=False)
    yield d
    d.close()


@pytest.fixture(scope="module")
def play():
    a = pd.read_parquet(SAMPLE / "activity.parquet").merge(pd.read_parquet(SAMPLE / "products.parquet"))
    a["date"] = pd.to_datetime(a["date"])
    a["tl"] = a["wagered"] * (1 - a["payback"])
    a["net_loss"] = a["wagered"] - a["won"]
    return a


@pytest.fixture(scope="module")
def keys(ds):
    cases = ds.table("call_cases")
    rng = np.random.default_rng(5)
    pick = np.sort(rng.choice(len(cases), 150, replace=False))
    c = cases.iloc[pick]
    # row ids deliberately not 0..n-1 and not sorted like the rows
    return pd.DataFrame({"row_id": rng.permutation(np.arange(1000, 1000 + len(c))),
                         "customer_id": c["customer_id"].to_numpy(), "index_date": c["opened_on"].to_numpy()})


def _joined(play, keys, lo, hi):
    j = keys.merge(play, on="customer_id")
    j["off"] = (j["date"] - pd.to_datetime(j["index_date"])).dt.days
    return j[(j["off"] >= lo) & (j["off"] <= hi)]


WINDOWS = {"long": (-300, -2), "cross": (-70, 10), "post": (0, 364), "day": (-1, -1), "late": (64, 130)}


def test_window_totals_and_active_days_match_pandas(ds, play, keys):
    got = W.window_aggregates(ds, keys, WINDOWS, share_window=(-84, -1))
    assert list(got.index) == list(keys["row_id"])
    for name, (a, b) in WINDOWS.items():
        j = _joined(play, keys, a, b)
        exp = j.groupby("row_id").agg(tl=("tl", "sum"), net_loss=("net_loss", "sum"), wagered=("wagered", "sum"),
                                      days=("date", "nunique")).reindex(keys["row_id"], fill_value=0)
        for m in ("tl", "net_loss", "wagered"):
            np.testing.assert_allclose(got[f"{m}_{name}"], exp[m], rtol=1e-12, atol=1e-6)
        np.testing.assert_array_equal(got[f"active_days_{name}"], exp["days"])
    assert (got["active_days_long"] > 63).any()        # windows really span several bitmask blocks
    # several products on one day count once
    j = _joined(play, keys, -300, -2)
    assert (j.groupby(["row_id", "date"]).size() > 1).any()


def test_product_shares_match_pandas(ds, play, keys):
    got = W.product_shares(ds, keys, -84, -1)
    j = _joined(play, keys, -84, -1)
    w = j.pivot_table(index="row_id", columns="product", values="wagered", aggfunc="sum", fill_value=0.0)
    exp = w.div(w.sum(axis=1), axis=0).reindex(keys["row_id"], fill_value=0.0)
    exp = exp.reindex(columns=sorted(pd.read_parquet(SAMPLE / "products.parquet")["product"]), fill_value=0.0)
    np.testing.assert_allclose(got.to_numpy(), exp.to_numpy(), rtol=1e-10, atol=1e-12)
    assert list(got.columns) == [f"share_{p}" for p in exp.columns]


def test_deposit_totals_match_pandas(ds, keys):
    dep = pd.read_parquet(SAMPLE / "deposits.parquet")
    dep["date"] = pd.to_datetime(dep["date"])
    got = W.window_totals(ds, keys, {"cross": (-70, 10)})
    j = _joined(dep, keys, -70, 10)
    exp = j.groupby("row_id")["amount"].sum().reindex(keys["row_id"], fill_value=0.0)
    np.testing.assert_allclose(got["deposits_cross"], exp, rtol=1e-12, atol=1e-6)


def test_weekly_moments_match_pandas(ds, play, keys):
    k = keys.assign(group=np.arange(len(keys)) % 2, weight=np.linspace(0.2, 3.0, len(keys)))
    got = W.weekly_moments(ds, k, -5, 8, by="group", weight="weight").set_index(["group", "week"])
    j = _joined(play, k, -35, 62)
    j["week"] = np.floor(j["off"] / 7).astype(int)
    y = j.groupby(["row_id", "group", "weight", "week"])["tl"].sum().reset_index()
    y["swy"] = y["weight"] * y["tl"]
    y["swy2"] = y["weight"] * y["tl"] ** 2
    exp = y.groupby(["group", "week"])[["swy", "swy2"]].sum()
    assert got.index.equals(exp.index)
    np.testing.assert_allclose(got["swy"], exp["swy"], rtol=1e-9)
    np.testing.assert_allclose(got["swy2"], exp["swy2"], rtol=1e-9)


def test_prior_rg_flags_match_pandas(ds, keys):
    rg = pd.read_parquet(SAMPLE / "rg_events.parquet")
    rg["date"] = pd.to_datetime(rg["occurred_on"]).dt.normalize()
    got = W.prior_rg_flags(ds, keys, 365)
    j = _joined(rg, keys, -365, -1)
    for name, events in W._RG_FLAGS.items():
        hit = set(j.loc[j["event"].isin(events), "row_id"])
        exp = keys["row_id"].isin(hit).astype(int).to_numpy()
        np.testing.assert_array_equal(got[name].to_numpy(), exp)
    assert got.to_numpy().sum() > 0


def test_last_play_matches_pandas(ds, play):
    ids = pd.Series(play["customer_id"].drop_duplicates().iloc[:50].tolist() + ["nobody"])
    got = W.last_play(ds, ids).set_index("customer_id")["last_play"]
    exp = play[play["customer_id"].isin(ids)].groupby("customer_id")["date"].max()
    assert "nobody" not in got.index
    pd.testing.assert_series_equal(got.sort_index(), exp.sort_index(), check_names=False)


def test_aggregates_do_not_depend_on_thread_count(keys):
    """Fixed-point sums: one thread and two give the same bits."""
    out = []
    for threads in (1, 2):
        d = load(SAMPLE, validate=False)
        d.con.execute(f"SET threads TO {threads}")
        out.append(W.window_totals(d, keys, {"long": (-300, -2)}))
        d.close()
    pd.testing.assert_frame_equal(out[0], out[1], check_exact=True)


def test_query_log_records_each_aggregation(ds, keys):
    with W.query_log() as log:
        W.window_totals(ds, keys, {"a": (-7, -1)})
        W.prior_rg_flags(ds, keys)
    assert [(name, table) for name, table, n, s in log] == [
        ("window_aggregates", "activity"), ("window_aggregates", "deposits"), ("prior_rg_flags", "rg_events")]
    assert all(n == len(keys) and s >= 0 for _, _, n, s in log)


def test_window_keys_are_checked(ds, keys):
    with pytest.raises(ValueError, match="row_id must be unique"):
        W.window_totals(ds, pd.concat([keys, keys]), {"a": (-7, -1)})
    with pytest.raises(ValueError, match="lack columns"):
        W.window_totals(ds, keys.drop(columns="index_date"), {"a": (-7, -1)})
    with pytest.raises(ValueError, match="after last day"):
        W.window_totals(ds, keys, {"a": (3, 1)})


def test_add_outcomes_keeps_rows_of_a_matched_sets_table(ds, keys):
    """A table of matched sets repeats index labels; outcomes must not multiply its rows."""
    from carecall_eval.outcomes.spending import add_outcomes

    t = keys.drop(columns="row_id").head(20)
    sets = pd.concat([t, t.head(5)])                  # labels 0..4 appear twice
    out = add_outcomes(ds, sets, (28,))
    assert len(out) == len(sets)
    assert out.index.equals(sets.index)
    single = add_outcomes(ds, t, (28,))
    np.testing.assert_array_equal(out["tl_post28"].to_numpy()[:20], single["tl_post28"].to_numpy())
    np.testing.assert_array_equal(out["tl_post28"].to_numpy()[20:], single["tl_post28"].to_numpy()[:5])


# ----------------------------------------------------------------------------- around the layer

def test_stages_record_time_and_nested_peaks():
    st = Stages(quiet=True)
    with st("outer"):
        big = np.ones(30_000_000)          # 240 MB, resident
        big[::512] = 2.0
        del big
        with st("inner"):
            pass
    inner, outer = st.records
    assert (inner["stage"], outer["stage"]) == ("inner", "outer")
    assert outer["seconds"] >= inner["seconds"] >= 0
    if os.path.exists("/proc/self/clear_refs"):
        assert outer["peak_mb"] >= inner["peak_mb"] + 150    # the inner stage's reset did not hide it
    assert st.seconds() == {"inner": inner["seconds"], "outer": outer["seconds"]}


def test_memory_limit_is_set_and_checked(monkeypatch):
    d = load(SAMPLE, validate=False, memory_limit="1GB")
    assert d.con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0].startswith("953")
    d.close()
    monkeypatch.setenv("CARECALL_MEMORY_LIMIT", "512MB")
    d = load(SAMPLE, validate=False)
    assert d.con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0].startswith("488")
    d.close()
    with pytest.raises(ValueError, match="not a DuckDB memory size"):
        load(SAMPLE, validate=False, memory_limit="plenty")


def test_validation_report_round_trips_through_json(tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(SAMPLE, bad)
    pr = pd.read_parquet(bad / "products.parquet")
    pr.loc[0, "payback"] = 1.7
    pr.to_parquet(bad / "products.parquet")
    rep = validate(bad)
    assert not rep.ok
    back = ValidationReport.from_json(rep.to_json())
    pd.testing.assert_frame_equal(back.problems, rep.problems)
    assert back.message() == rep.message()
    assert dict(back.n_rows) == dict(rep.n_rows)


def test_group_sums_are_exact_integers_in_any_order():
    """The per-window addition of the backend's groups: exact int64 sums (a float path below 2**53)."""
    import decimal

    import pyarrow as pa

    rng = np.random.default_rng(3)
    vals = rng.integers(-10**6, 10**6, 10_000)
    idx = rng.integers(0, 7, vals.size)
    want = [int(vals[idx == i].sum()) for i in range(7)]
    assert W._sums_by(idx, vals, 7).tolist() == want
    big = vals * 10**8                                   # partial sums beyond 2**53: the exact integer path
    assert W._sums_by(idx, big, 7).tolist() == [w * 10**8 for w in want]
    # per window: float cells (exact integers below 2**53) added by a float product give the integer sums
    cells_f = W._sums_by(idx, vals, 7, exact_float=True)
    assert cells_f.dtype == np.float64 and cells_f.tolist() == want
    member = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1], [1, 0, 0], [0, 1, 1]])
    by_int = W._per_window(np.array(want, dtype=np.int64), 1, 7, member)
    assert by_int.dtype == np.int64 and W._per_window(cells_f, 1, 7, member).tolist() == by_int.tolist()
    assert by_int.tolist() == [[sum(w for w, m in zip(want, member[:, j]) if m) for j in range(3)]]
    assert W._sums_by(idx, big, 7, exact_float=True).dtype == np.int64      # beyond 2**53: integers kept
    # decimals read as their unscaled integers, negatives and nulls included (null = 0)
    col = pa.chunked_array([pa.array([decimal.Decimal("-1.234567"), None, decimal.Decimal("98765432.1")],
                                     pa.decimal128(38, 6))])
    assert W._scaled(col).tolist() == [-1234567, 0, 98765432100000]
    assert W._unscale(W._scaled(col), col.type).tolist() == [-1.234567, 0.0, 98765432.1]
    with pytest.raises(TypeError, match="expected a decimal"):     # a float sum would not be exact
        W._scaled(pa.chunked_array([pa.array([1.5])]))
    # beyond 64 bits: Python integers, still exact
    huge = pa.chunked_array([pa.array([decimal.Decimal(10**20), decimal.Decimal(-3)], pa.decimal128(38, 6))])
    assert W._scaled(huge).tolist() == [10**26, -3 * 10**6]
    assert W._sums_by(np.array([0, 0, 1]), np.array([10**26, -1, 5], dtype=object), 2).tolist() == [10**26 - 1, 5]
    # added up over batches: int64 while the totals cannot wrap, then Python integers (exact either way)
    acc = W._Sums(7)
    for part in np.array_split(np.arange(vals.size), 5):
        acc.add(idx[part], vals[part])
    assert acc.out.dtype == np.int64 and acc.out.tolist() == want
    acc = W._Sums(2)
    near = np.array([2**62, 2**62, -5], dtype=np.int64)       # each fits int64; their total does not
    for i in range(3):
        acc.add(np.array([0 if i < 2 else 1]), near[i:i + 1])
    assert acc.out.dtype == object and acc.out.tolist() == [2**63, -5]


def test_weekly_series_gives_the_moments_floats(ds, keys):
    """The event study's per-key weekly series re-weighted locally: the same floats as weekly_moments' query,
    for keys sharing one series row (a customer-day twice), at non-default weeks."""
    k = keys.assign(group=np.arange(len(keys)) % 3, weight=np.linspace(0.2, 3.0, len(keys)))
    series = W.weekly_series(ds, keys, -9, 4)
    assert series["week"].between(-9, 4).all() and series["week"].dtype == np.int8
    assert not series.duplicated(["row_id", "week"]).any()
    # two copies of the keys (new row ids), both pointing at the one series row of their key
    twice = pd.concat([k, k.assign(row_id=k["row_id"] + 10**6, weight=k["weight"] * 0.5)], ignore_index=True)
    want = W.weekly_moments(ds, twice, -9, 4, by="group", weight="weight")
    got = W.moments_from_series(series, twice.assign(series_row=twice["row_id"] % 10**6), by="group",
                                weight="weight")
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
    assert len(got) > 10 and got["swy"].gt(0).any()
