"""One contract test over every registered estimator (scikit-learn's ``parametrize_with_checks`` is the model).

Each estimator is called with the one signature ``estimator(data, sample, /, *, level=..., **options)`` on
data/sample and must: return a Result following the protocol; honour a level of 0.9 in its numbers (narrower
intervals than at 0.95) and in every sentence of its text; reject an invalid level with a message naming it;
honour a non-default horizon in its settings, metric ids and text; reject a wrong ``sample`` type with a
TypeError that says how to get the right one.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import carecall_eval as ce
from carecall_eval.outcomes.registry import ESTIMATORS
from carecall_eval.results import SUMMARY_COLUMNS

#: options that keep the slow parts out of a protocol check (they are tested in their own modules)
FAST = {"spending": {"placebo": False, "subgroups": False, "event_weeks": None},
        "selfcheck": {"replicates": 6, "sms_replicates": 2}}
SPECS = list(ESTIMATORS.values())


@pytest.fixture(scope="module")
def env(sample):
    ds, _ = sample
    obs = ce.build_cohort(ds).sample()
    rnd = ce.build_cohort(ds, ce.StudyDesign(contact="randomized", comparison="arms")).sample()
    return ds, {"observational": obs, "randomized": rnd, None: None}


def _call(spec, env, **kw):
    ds, samples = env
    return spec(ds, samples[spec.sample], **{**FAST.get(spec.name, {}), **kw})


_cache: dict = {}


def _result(spec, env, **kw):
    key = (spec.name, tuple(sorted(kw.items())))
    if key not in _cache:
        _cache[key] = _call(spec, env, **kw)
    return _cache[key]


def _interval_rows(s: pd.DataFrame) -> pd.DataFrame:
    return s[s["ci_low"].notna() & s["ci_high"].notna() & (s["ci_high"] > s["ci_low"])]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_protocol(spec, env):
    r = _result(spec, env)
    assert isinstance(r, ce.Result)
    s = r.summary
    assert isinstance(s, pd.DataFrame) and list(s.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert len(s) > 0
    assert isinstance(r.text, str) and r.text.strip()
    assert r.settings["level"] == 0.95
    if spec.horizon:
        assert r.settings[spec.horizon] == spec.default_horizon
    assert isinstance(r.to_dict(), dict) and r.to_json()
    assert "<" in r._repr_html_() and repr(r).startswith("<Result")
    assert isinstance(r.get_plot_data(), dict)
    first = s.iloc[0]
    extra = {c: first[c] for c in s.columns if c not in SUMMARY_COLUMNS and pd.notna(first[c])
             and c in ("window", "horizon", "outcome", "days")}
    row = r.metric(first["metric"], first["group"], **extra)
    assert row["metric"] == first["metric"]
    # every interval from a standard error carries it
    se_rows = s[s["method"].astype(str).str.contains("robust|delta|Wald|clustered|cluster", case=False)
                & s["ci_low"].notna()]
    assert se_rows["se"].notna().all(), se_rows[["metric", "group", "method"]]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_level_is_honoured_in_numbers_and_text(spec, env):
    r95, r90 = _result(spec, env), _result(spec, env, level=0.9)
    assert r90.settings["level"] == 0.9
    a, b = _interval_rows(r95.summary), _interval_rows(r90.summary)
    key = ["metric", "group"] + [c for c in ("window", "outcome", "days", "horizon", "step")
                                 if c in a.columns]
    both = a.merge(b, on=key, suffixes=("_95", "_90"))
    assert len(both) > 0
    np.testing.assert_allclose(both["estimate_95"], both["estimate_90"], rtol=1e-9, equal_nan=True)
    w95 = both["ci_high_95"] - both["ci_low_95"]
    w90 = both["ci_high_90"] - both["ci_low_90"]
    assert (w90 <= w95 + 1e-12).all() and (w90 < w95).any()
    assert "95%" not in r90.text, r90.text
    stated = set(re.findall(r"(\d+(?:\.\d+)?)% CI", r90.text))
    assert stated <= {"90"}, r90.text


@pytest.mark.parametrize("bad", [95, 0, 1, -0.1, "0.95", float("nan"), True])
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_invalid_level_rejected(spec, env, bad):
    with pytest.raises(ValueError, match="level must be a number strictly between 0 and 1"):
        _call(spec, env, level=bad)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.horizon], ids=[s.name for s in SPECS if s.horizon])
def test_non_default_horizon(spec, env):
    h = spec.other_horizon
    r = _result(spec, env, **{spec.horizon: h})
    assert r.settings[spec.horizon] == h
    d = _result(spec, env)
    default_ids = set(d.summary["metric"])
    ids = set(r.summary["metric"])
    # another horizon gets its own ids, or rows that carry the horizon in a column
    col = next((c for c in ("window", "horizon", "days") if c in r.summary.columns), None)
    if ids == default_ids:
        assert col is not None and h in set(r.summary[col].dropna().astype(int))
    assert "12 months" not in r.text or h % 365 == 0


@pytest.mark.parametrize("spec", [s for s in SPECS if s.sample], ids=[s.name for s in SPECS if s.sample])
def test_wrong_sample_type(spec, env):
    ds, samples = env
    with pytest.raises(TypeError, match="MatchedSample"):
        spec(ds, pd.DataFrame({"a": [1]}))
    with pytest.raises(TypeError, match="MatchedSample"):
        spec(ds, "not a sample")


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_wrong_data_type(spec, env):
    with pytest.raises(TypeError, match="Dataset"):
        spec(12345)


def test_every_public_estimator_is_registered_and_exported():
    for spec in SPECS:
        fn = spec.func
        assert getattr(ce, fn.__name__) is fn, fn.__name__
    import inspect

    for spec in SPECS:
        sig = inspect.signature(spec.func)
        ps = list(sig.parameters.values())
        assert [p.name for p in ps[:2]] == ["data", "sample"], spec.name
        assert ps[0].kind is inspect.Parameter.POSITIONAL_ONLY and ps[1].kind is inspect.Parameter.POSITIONAL_ONLY
        assert ps[1].default is None
        assert sig.parameters["level"].kind is inspect.Parameter.KEYWORD_ONLY
        assert sig.parameters["level"].default == 0.95
