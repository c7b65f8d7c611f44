"""Randomized arms: ITT by assigned arm recovers the simulator's realised arm effects."""
from __future__ import annotations

import warnings

import pytest

from carecall_eval import StudyDesign, build_cohort, load, randomized_effects
from carecall_eval.simulate import simulate


@pytest.fixture(scope="module")
def rct(tmp_path_factory):
    d = tmp_path_factory.mktemp("rct") / "d"
    # a longer randomized period than the default so the arms are large enough to test
    truth = simulate(d, customers=8000, seed=5, rct_end_day=460)
    ds = load(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = build_cohort(ds, StudyDesign(contact="randomized", comparison="arms"))
        res = randomized_effects(ds, cohort, window=84)
    return res, truth["realised"]["rct"]


def test_itt_intervals_cover_the_realised_arm_effects(rct):
    res, truth = rct
    for arm in ("call", "letter"):
        r = res.metric("spending.rct_itt_change", arm)
        assert r["ci_low"] <= truth[arm]["realised_effect_post_84d"] <= r["ci_high"], (arm, r, truth[arm])
        assert r["n"] > 300


def test_per_protocol_is_labelled_and_arms_need_a_control(rct):
    res, _ = rct
    pp = res.metric("spending.rct_pp_change", "call")
    assert "not randomized" in pp["method"]
    assert "by assigned arm" in res.text


def test_randomized_effects_refuses_an_observational_cohort(tmp_path):
    simulate(tmp_path / "d", customers=500, seed=1)
    ds = load(tmp_path / "d")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = build_cohort(ds)
    with pytest.raises(ValueError, match="contact='randomized'"):
        randomized_effects(ds, c)
