"""The simulator: determinism, its truth.json against its own tables, and the traps it must set."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from carecall_eval.simulate import simulate

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _digest(d: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = simulate(tmp_path / "a", customers=600, seed=5)
    b = simulate(tmp_path / "b", customers=600, seed=5)
    assert a == b
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    simulate(tmp_path / "c", customers=600, seed=6)
    assert _digest(tmp_path / "a")["activity.parquet"] != _digest(tmp_path / "c")["activity.parquet"]


def test_chunking_does_not_change_the_contract(tmp_path):
    simulate(tmp_path / "x", customers=900, seed=2, chunk_size=400)
    cust = pd.read_parquet(tmp_path / "x" / "customers.parquet")
    cases = pd.read_parquet(tmp_path / "x" / "call_cases.parquet")
    assert cust["customer_id"].is_unique and len(cust) == 900
    assert cases["case_id"].is_unique
    assert set(cases["customer_id"]) <= set(cust["customer_id"])


def test_failed_simulation_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError):
        simulate(tmp_path / "bad", customers=0)
    assert not (tmp_path / "bad").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def sample():
    t = {name: pd.read_parquet(SAMPLE / f"{name}.parquet") for name in
         ("customers", "call_cases", "call_attempts", "sms", "activity", "products")}
    truth = json.loads((SAMPLE / "truth.json").read_text())
    return t, truth


def test_sample_truth_matches_its_tables(sample):
    t, truth = sample
    r = truth["realised"]
    att = t["call_attempts"]
    answered = att[att["answered"]]
    assert answered["duration_s"].mean() == pytest.approx(r["call_length_mean_s"], rel=1e-12)
    assert answered["duration_s"].median() == pytest.approx(r["call_length_median_s"], rel=1e-12)
    assert len(answered) == r["n_answered_calls"]
    rec = answered["reception"].dropna().value_counts(normalize=True)
    for k, v in r["reception_shares"].items():
        assert rec[k] == pytest.approx(v, rel=1e-12)
    # case-level reach before / after the SMS policy, observational phone cases
    cases = t["call_cases"]
    phone = cases[(cases["channel"] == "phone") & cases["arm"].isna()]
    reached = phone["case_id"].isin(answered["case_id"])
    policy = pd.Timestamp(truth["params"]["sms_policy_start"])
    after = pd.to_datetime(phone["opened_on"]) >= policy
    assert reached[~after].mean() == pytest.approx(r["reach_before_sms"], abs=1e-12)
    assert reached[after].mean() == pytest.approx(r["reach_after_sms"], abs=1e-12)


def test_sample_is_realistic(sample):
    t, truth = sample
    r = truth["realised"]
    # published-like figures: ~6-minute calls, ~85% positive, ~half reached before the SMS
    assert 300 < r["call_length_mean_s"] < 420
    assert 0.80 < r["reception_shares"]["positive"] < 0.90
    assert 0.40 < r["reach_before_sms"] < 0.60
    assert r["reach_after_sms"] > r["reach_before_sms"] + 0.1
    assert r["retention_account_12m_reached"] > 0.97
    # randomized control arm: no contact, so its realised effect is zero
    assert abs(r["rct"]["control"]["realised_effect_post_84d"]) < 1e-6


@pytest.mark.parametrize("seed", [20261122, 11])
def test_naive_change_overstates_the_true_effect(tmp_path, seed):
    """Regression to the mean: the naive before/after is clearly larger in magnitude."""
    if seed == 20261122:
        truth = json.loads((SAMPLE / "truth.json").read_text())
    else:
        truth = simulate(tmp_path / "s", customers=6000, seed=seed)
    r = truth["realised"]
    true84 = r["realised_att_theoretical_loss"]["post_84d"]
    assert -0.25 < true84 < -0.05
    assert r["naive_change_reached_84d"] < true84 - 0.05


def test_reached_and_unreached_differ_at_baseline(sample):
    t, _ = sample
    att, cases, cust = t["call_attempts"], t["call_cases"], t["customers"]
    phone = cases[(cases["channel"] == "phone") & cases["arm"].isna()].copy()
    phone["reached"] = phone["case_id"].isin(att.loc[att["answered"], "case_id"])
    phone = phone.merge(cust, on="customer_id")
    phone["age"] = pd.to_datetime(phone["opened_on"]).dt.year - phone["birth_year"]
    g = phone.groupby("reached")["age"]
    smd = (g.mean()[True] - g.mean()[False]) / g.std()[True]
    assert smd > 0.2  # older customers answer more
