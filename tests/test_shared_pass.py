"""One pass over activity for many callers (cohorts/windows.py ``shared_pass``, evaluate.py ``one_pass``).

A call answered from a shared pass must give exactly what its own pass gives (every sum is exact and per
key), in the caller's key order and row ids; a call the pass does not cover (another key, window or share
window, another dataset) runs its own query; an evaluation with the pass equals one without it, metric by
metric, and runs one pass over activity instead of one per cohort, placebo and case-covariate table.
"""
from __future__ import annotations

import contextlib
import importlib

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE

from carecall_eval.cohorts import windows as W
from carecall_eval.contract import load

EVALUATE = importlib.import_module("carecall_eval.evaluate")


@pytest.fixture(scope="module")
def ds(sample):
    return sample[0]


@pytest.fixture(scope="module")
def cases(ds):
    c = ds.table("call_cases")
    return pd.DataFrame({"customer_id": c["customer_id"].to_numpy(), "index_date": c["opened_on"].to_numpy()})


def _keys(cases, n, seed):
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(cases), n, replace=False)
    k = cases.iloc[pick].reset_index(drop=True)
    # row ids not 0..n-1 and not in the rows' order; a time of day on the index (the pass counts days)
    return k.assign(row_id=rng.permutation(np.arange(500, 500 + n)),
                    index_date=pd.to_datetime(k["index_date"]) + pd.Timedelta(hours=13))


WINDOWS = {"pre": (-84, -1), "post": (0, 83), "long": (-365, -85), "cross": (-70, 10)}


def test_a_covered_call_is_answered_exactly_from_the_pass(ds, cases):
    keys = _keys(cases, 120, 1)
    own = W.window_aggregates(ds, keys, WINDOWS, share_window=(-84, -1))
    own_other = W.window_aggregates(ds, keys, {"a": (-168, -85)}, share_window=(-168, -85))
    with W.query_log() as log, W.shared_pass(ds, cases, [*WINDOWS.values(), (-168, -85), (5, 9)],
                                            [(-84, -1), (-168, -85)]) as sp:
        got = W.window_aggregates(ds, keys, WINDOWS, share_window=(-84, -1))
        other = W.window_aggregates(ds, keys, {"a": (-168, -85)}, share_window=(-168, -85))
        plain = W.window_totals(ds, keys, {"x": (-84, -1)})
    pd.testing.assert_frame_equal(got, own, check_exact=True)
    pd.testing.assert_frame_equal(other, own_other, check_exact=True)
    pd.testing.assert_frame_equal(plain, own[[c for c in own.columns if c.endswith("_pre")]]
                                  .rename(columns=lambda c: c[:-3] + "x"), check_exact=True)
    assert sp.served == 3
    # the one pass (activity and deposits), nothing else
    assert [(f, t) for f, t, _n, _s in log] == [("shared_aggregates", "activity"), ("shared_aggregates", "deposits")]
    assert log[0][2] == len(cases.drop_duplicates())


def test_a_call_the_pass_does_not_cover_runs_its_own_query(ds, cases):
    keys = _keys(cases, 40, 2)
    stranger = keys.assign(index_date=keys["index_date"] + pd.Timedelta(days=3))   # not a case's opening day
    with W.query_log() as log, W.shared_pass(ds, cases, WINDOWS.values(), [(-84, -1)]) as sp:
        a = W.window_aggregates(ds, stranger, WINDOWS)                       # other keys
        b = W.window_aggregates(ds, keys, {"other": (-90, -1)})              # another window
        c = W.window_aggregates(ds, keys, WINDOWS, share_window=(-28, -1))   # another share window
    assert sp.served == 0 and sp.table is None                              # never computed: nobody used it
    assert [f for f, _t, _n, _s in log].count("window_aggregates") == 6     # three calls, activity + deposits
    pd.testing.assert_frame_equal(a, W.window_aggregates(ds, stranger, WINDOWS), check_exact=True)
    assert list(b.columns)[:4] == ["tl_other", "net_loss_other", "wagered_other", "active_days_other"]
    pd.testing.assert_frame_equal(c, W.window_aggregates(ds, keys, WINDOWS, share_window=(-28, -1)), check_exact=True)


def test_another_dataset_is_not_answered_and_nested_passes_share_one(ds, cases):
    keys = _keys(cases, 30, 3)
    other = load(SAMPLE, validate=False)      # the same files: answered (the same data, by fingerprint)
    try:
        with W.shared_pass(ds, cases, WINDOWS.values(), [(-84, -1)]) as outer:
            with W.shared_pass(ds, cases.iloc[:50], WINDOWS.values(), [(-84, -1)]) as inner:
                assert inner is outer              # covered by the enclosing pass: no second pass
            pd.testing.assert_frame_equal(W.window_aggregates(other, keys, WINDOWS),
                                          W.window_aggregates(ds, keys, WINDOWS), check_exact=True)
            assert outer.served == 2
    finally:
        other.close()


def test_an_evaluation_with_the_pass_equals_one_without_it(ds, monkeypatch):
    with W.query_log() as log:
        shared = EVALUATE.evaluate(ds, level=0.9, window=28)
    passes = [f for f, t, _n, _s in log if t == "activity" and f in ("window_aggregates", "shared_aggregates")]
    assert passes == ["shared_aggregates"]    # cohort, placebo and reach's case covariates from one pass
    monkeypatch.setattr(EVALUATE, "one_pass", lambda *a, **k: contextlib.nullcontext())
    with W.query_log() as log:
        own = EVALUATE.evaluate(ds, level=0.9, window=28)
    assert [f for f, t, _n, _s in log if t == "activity"].count("window_aggregates") >= 3
    pd.testing.assert_frame_equal(shared.summary, own.summary, check_exact=True)


@pytest.mark.parametrize("dense", [True, False])
def test_active_days_do_not_depend_on_the_product_split(ds, cases, monkeypatch, dense):
    """Groups split by product in the share windows have their day masks OR-ed back (a dense table of masks,
    or sorted when that table would be large): the active days are those of the unsplit pass."""
    if not dense:
        monkeypatch.setattr(W, "_DENSE_SLOTS", -10**12)
    keys = _keys(cases, 150, 4)
    days = [f"active_days_{n}" for n in WINDOWS]
    plain = W.window_aggregates(ds, keys, WINDOWS)[days]
    for share in [(-84, -1), (-70, 10), (-300, 364)]:
        got = W.window_aggregates(ds, keys, WINDOWS, share_window=share)[days]
        pd.testing.assert_frame_equal(got, plain, check_exact=True)
    assert (plain.to_numpy() > 0).mean() > 0.3        # the sample's cases do play in these windows


@pytest.mark.parametrize("dense", [True, False])
def test_the_pass_does_not_depend_on_how_the_groups_are_batched(ds, cases, monkeypatch, dense):
    """The groups are streamed from the backend in record batches and added up as they come: the same
    figures, bit for bit, whether they arrive in one batch or in batches of 97 rows (a key's groups, and a
    (key, segment, block)'s product-split masks, then straddle batches)."""
    if not dense:
        monkeypatch.setattr(W, "_DENSE_SLOTS", -10**12)
    keys = _keys(cases, 150, 4)
    whole = W.window_aggregates(ds, keys, WINDOWS, share_window=(-70, 10))
    monkeypatch.setattr(W, "_BATCH_ROWS", 97)
    batched = W.window_aggregates(ds, keys, WINDOWS, share_window=(-70, 10))
    pd.testing.assert_frame_equal(batched, whole, check_exact=True)
    assert len(whole) == len(keys) and (whole.filter(like="share_").sum(axis=1) > 0).mean() > 0.3
