"""The faster paths of the SMS answer model (issue 18) give the numbers of the plain code they replaced.

Each reference below is the previous implementation, kept here verbatim in substance: the attempt
numbering of ``phone_tables`` (a sort of the frame and a groupby), ``protocol`` on per-case Series,
``answer_table`` on a concatenated frame, the design matrix stacked from full columns, the predictor rows
built as a frame of hypothetical attempts and turned into two matrices (with and without the policy term),
and statsmodels' own Logit (one product over all rows per Hessian).
"""
from __future__ import annotations

import importlib
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import SAMPLE

from carecall_eval.contract import load
from carecall_eval.outcomes.reach import answer_model as am
from carecall_eval.outcomes.reach.cases import case_reach, phone_tables, reach_tables, resolve_policy, sms_rule

rates = importlib.import_module("carecall_eval.outcomes.reach.answer_rates")   # the package exports the function


@pytest.fixture(scope="module")
def frame():
    ds = load(SAMPLE)
    policy = resolve_policy(ds, None)
    s, _ = sms_rule(ds)
    cr, att = reach_tables(ds)
    cov = am.case_covariates(ds, cr)
    a = am.attempt_frame(cr, att, cov, s, "quarter")
    design = am.Design.from_frame(a, ["attempt", "period_fe", "weekday", "hour_band", "trigger"], list(cov.columns))
    return ds, policy, s, cr, att, cov, a, design


def _phone_tables_reference(ds, arms):
    from carecall_eval.outcomes.reach.cases import _arm_mask

    cases, att = ds.table("call_cases"), ds.table("call_attempts")
    sel = cases[(cases["channel"] == "phone") & _arm_mask(cases["arm"], arms)].copy()
    att = att[att["case_id"].isin(sel["case_id"])].copy()
    att["answered"] = att["answered"].astype(bool)
    att = att.sort_values(["case_id", "attempted_at"], kind="mergesort").reset_index(drop=True)
    att["attempt_no"] = att.groupby("case_id", sort=False).cumcount() + 1
    first_ans = att[att["answered"]].groupby("case_id")["attempt_no"].min()
    stop = att["case_id"].map(first_ans)
    att = att[stop.isna() | (att["attempt_no"] <= stop)].reset_index(drop=True)
    sel = sel[sel["case_id"].isin(att["case_id"])].reset_index(drop=True)
    return sel, att


def _matrix_reference(design, df):
    cols = [np.ones(len(df)), df[design.treat].to_numpy(float)]
    for c, lv in design.categorical.items():
        v = df[c].to_numpy()
        cols += [(v == x).astype(float) for x in lv[1:]]
    cols += [df[c].to_numpy(float) for c in design.continuous]
    return np.column_stack(cols)


def _predictor_reference(a, cr_post, design, cols, offset, cont, data_end, s):
    K = len(offset)
    cases = cr_post.reset_index(drop=True)
    pos = pd.Series(np.arange(len(cases)), index=cases["case_id"])
    obs = a[a["case_id"].isin(pos.index)].copy()
    obs["i"] = obs["case_id"].map(pos).to_numpy()
    obs["w"] = 1.0
    band = a.groupby(["attempt_no", "hour_band"]).size()
    band = band / band.groupby(level=0).transform("sum")
    case_cols = [c for c in a.columns if c not in
                 ("attempted_at", "answered", "attempt_no", "weekday", "hour_band", "attempt", "late_after")]
    case_level = a.drop_duplicates("case_id").set_index("case_id")[[c for c in case_cols if c != "case_id"]]
    first_day = cases["first_attempt_at"].dt.normalize().to_numpy()
    n_obs = cases["n_attempts"].to_numpy()
    reached = cases["reached"].to_numpy(bool)
    q = np.zeros((len(cases), K))
    hyp = []
    for k in range(1, K + 1):
        observed = n_obs >= k
        date_k = first_day + np.timedelta64(int(offset[k - 1]), "D")
        possible = ~observed & reached & (date_k <= np.datetime64(data_end))
        q[:, k - 1] = np.where(observed, 1.0, np.where(possible, cont[k - 1], 0.0))
        idx = np.flatnonzero(possible)
        if idx.size == 0:
            continue
        kb = band.loc[k] if k in band.index.get_level_values(0) else band.groupby(level=1).mean()
        base = case_level.loc[cases["case_id"].to_numpy()[idx]].reset_index()
        base["i"] = idx
        base["attempt_no"] = k
        base["weekday"] = pd.DatetimeIndex(date_k[idx]).weekday.astype(str)
        for hb, w in kb.items():
            hyp.append(base.assign(hour_band=hb, w=float(w)))
    rows = pd.concat([obs] + hyp, ignore_index=True)
    rows["attempt"] = rows["attempt_no"].astype(int).astype(str)
    rows["late_after"] = (rows["attempt_no"] > s).astype(float)
    X_with = _matrix_reference(design, rows)[:, cols]
    X_without = _matrix_reference(design, rows.assign(late_after=0.0))[:, cols]
    cell = rows["i"].to_numpy(int) * K + rows["attempt_no"].to_numpy(int) - 1
    return am.Predictor(X_with, X_without, rows["w"].to_numpy(float), cell, q, len(cases), K)


def test_phone_tables_and_reach_tables_equal_the_plain_sort(frame):
    ds = frame[0]
    for arms in ((None, "call"), ("call",), (None,)):
        sel, att = phone_tables(ds, arms)
        ref_sel, ref_att = _phone_tables_reference(ds, arms)
        pd.testing.assert_frame_equal(sel, ref_sel)
        pd.testing.assert_frame_equal(att, ref_att)
        cr, att2 = reach_tables(ds, arms=arms)
        pd.testing.assert_frame_equal(att2, ref_att)
        pd.testing.assert_frame_equal(cr, case_reach(ds, arms=arms))


def test_design_matrix_equals_stacked_columns(frame):
    design, a = frame[7], frame[6]
    ref = _matrix_reference(design, a)
    X = design.matrix(a)
    assert X.flags.c_contiguous
    np.testing.assert_array_equal(X, ref)
    cols = np.array([0, 1, 3, X.shape[1] - 1])
    np.testing.assert_array_equal(design.matrix(a, cols), ref[:, cols])
    # independent columns from the one-pass Gram matrix: what the full scaled design gave
    Xs = ref / np.maximum(np.sqrt((ref ** 2).mean(axis=0)), 1e-12)
    np.testing.assert_allclose(am.weighted_gram(Xs) / len(Xs), Xs.T @ Xs / len(Xs), rtol=1e-12, atol=1e-14)
    w = np.random.default_rng(0).uniform(0, 0.25, len(ref))
    np.testing.assert_allclose(am.weighted_gram(ref, w, chunk=1000), (ref.T * w) @ ref, rtol=1e-12, atol=1e-12)


def test_predictor_equals_the_frame_built_one(frame):
    ds, policy, s, cr, att, cov, a, design = frame
    data_end = pd.Timestamp(ds.data_end)
    K = int(att["attempt_no"].max())
    offset, cont = am.protocol(att, cr, data_end, K)
    post = cr[cr["post_policy"].astype(bool).to_numpy()]
    cols = am.independent_columns(design.matrix(a))
    fast = am.build_predictor(a, post, design, cols, offset, cont, data_end, s)
    ref = _predictor_reference(a, post, design, cols, offset, cont, data_end, s)
    np.testing.assert_array_equal(fast.X_with, ref.X_with)
    assert fast.X_without is None and fast.treat == 1
    X_without = fast.X_with.copy()
    X_without[:, fast.treat] = 0.0
    np.testing.assert_array_equal(X_without, ref.X_without)
    np.testing.assert_array_equal(fast.weight, ref.weight)
    np.testing.assert_array_equal(fast.cell, ref.cell)
    np.testing.assert_array_equal(fast.q, ref.q)
    beta = np.random.default_rng(1).normal(scale=0.2, size=len(cols))
    A = np.random.default_rng(2).normal(size=(len(cols), len(cols)))
    cov_b = A @ A.T / 200
    np.testing.assert_allclose(fast.effects(beta), ref.effects(beta), rtol=1e-12)
    assert fast.effect_se(beta, cov_b) == pytest.approx(ref.effect_se(beta, cov_b), rel=1e-9)
    assert fast.effect_se(beta, cov_b) == pytest.approx(am.delta_se(lambda b: ref.effects(b)[0], beta, cov_b),
                                                        rel=1e-9)


def test_blockwise_hessian_logit_equals_statsmodels(frame):
    import statsmodels.api as sm

    a, design = frame[6], frame[7]
    X_full = design.matrix(a)
    cols = am.independent_columns(X_full)
    X = np.ascontiguousarray(X_full[:, cols])
    y = a["answered"].to_numpy(float)
    groups = pd.factorize(a["case_id"])[0]
    fit = am.fit_logit(y, X, groups, [design.names[j] for j in cols])
    assert type(fit.model).__name__ == "BlockLogit"                                    # the blockwise path ran
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sm.Logit(y, X).fit(disp=0, maxiter=200, cov_type="cluster", cov_kwds={"groups": groups})
    np.testing.assert_allclose(fit.params, ref.params, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(fit.cov_params(), ref.cov_params(), rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(fit.model.hessian(ref.params), ref.model.hessian(ref.params), rtol=1e-12)


def _protocol_reference(att, cr, data_end, K):
    first = att[att["attempt_no"] == 1].set_index("case_id")["attempted_at"].dt.normalize()
    a = att.assign(day=(att["attempted_at"].dt.normalize() - att["case_id"].map(first)).dt.days)
    offset = a.groupby("attempt_no")["day"].median().reindex(range(1, K + 1)).ffill().to_numpy()
    cont = np.ones(K)
    n_by = att.groupby("case_id")["attempt_no"].max()
    reached = cr.set_index("case_id")["reached"]
    for k in range(2, K + 1):
        at_risk = n_by[(n_by >= k - 1) & ~((n_by == k - 1) & reached.reindex(n_by.index))].index
        due = first.reindex(at_risk) + pd.to_timedelta(offset[k - 1], unit="D") <= data_end
        at_risk = at_risk[due.to_numpy()]
        if len(at_risk):
            cont[k - 1] = float((n_by.reindex(at_risk) >= k).mean())
    return offset, cont


def _answer_table_reference(att, post, level):
    from carecall_eval.outcomes.intervals import wilson_interval

    parts = [att.assign(period="all")]
    if post is not None:
        p = att["case_id"].map(post).astype(bool)
        parts += [att[~p].assign(period="before_sms"), att[p].assign(period="after_sms")]
    a = pd.concat(parts, ignore_index=True)
    t = a.groupby(["period", "attempt_no"], sort=False)["answered"].agg(n="size", answered="sum").reset_index()
    t["answered"] = t["answered"].astype(int)
    t["rate"] = t["answered"] / t["n"]
    t["ci_low"], t["ci_high"] = wilson_interval(t["answered"].to_numpy(), t["n"].to_numpy(), level)
    order = {"all": 0, "before_sms": 1, "after_sms": 2}
    t = t.sort_values(["period", "attempt_no"], key=lambda s: s.map(order) if s.name == "period" else s)
    return t.rename(columns={"attempt_no": "attempt"}).reset_index(drop=True)


def _synthetic_attempts(seed=9, n=3000, K=6):
    """Cases that stop early unanswered, are answered at any attempt, and run past the data end."""
    rng = np.random.default_rng(seed)
    opened = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 200, n), unit="D")
    rows, cases = [], []
    for i in range(n):
        made = int(rng.integers(1, K + 1))
        hit = rng.random() < 0.6
        t = opened[i] + pd.Timedelta(hours=int(rng.integers(8, 20)))
        for k in range(1, made + 1):
            rows.append((f"c{i:05d}", t, hit and k == made, k))
            t += pd.Timedelta(days=float(rng.choice([0.5, 1, 1, 2, 3])))
        cases.append((f"c{i:05d}", hit))
    att = pd.DataFrame(rows, columns=["case_id", "attempted_at", "answered", "attempt_no"])
    att = att.sample(frac=1.0, random_state=1).reset_index(drop=True)          # not sorted by case
    cr = pd.DataFrame(cases, columns=["case_id", "reached"])
    return att, cr, K


def test_protocol_equals_the_per_case_series_version():
    att, cr, K = _synthetic_attempts()
    for end in ("2025-04-01", "2025-07-25", "2026-01-01"):
        off, cont = am.protocol(att, cr, pd.Timestamp(end), K)
        ref_off, ref_cont = _protocol_reference(att, cr, pd.Timestamp(end), K)
        np.testing.assert_array_equal(off, ref_off)
        np.testing.assert_array_equal(cont, ref_cont)
        assert (cont[1:] < 1).all()                          # early stops: continuation below one


def test_answer_table_equals_the_concatenated_groupby(frame):
    att, cr = frame[4], frame[3]
    post = cr.set_index("case_id")["post_policy"]
    for p in (None, post):
        for level in (0.9, 0.95):
            pd.testing.assert_frame_equal(rates.answer_table(att, p, level),
                                          _answer_table_reference(att, p, level))


def _case_reach_reference(ds, arms=(None, "call"), sms_kind="missed_call_followup"):
    from carecall_eval.calendar import quarter_of
    from carecall_eval.outcomes.reach.cases import _week_start

    _, window = sms_rule(ds)
    policy = resolve_policy(ds, None)
    sel, att = _phone_tables_reference(ds, arms)
    g = att.groupby("case_id", sort=False)
    per = pd.DataFrame({"n_attempts": g.size(), "first_attempt_at": g["attempted_at"].min()})
    ans = att[att["answered"]].set_index("case_id")
    per["reached_at"] = ans["attempted_at"].reindex(per.index)
    per["attempts_to_reach"] = ans["attempt_no"].reindex(per.index).astype("Int64")
    out = sel[["case_id", "customer_id", "opened_on"] + [c for c in ("trigger", "arm") if c in sel.columns]].copy()
    out["opened_on"] = pd.to_datetime(out["opened_on"]).astype("datetime64[ns]")
    out["quarter"] = quarter_of(out["opened_on"])
    out["week"] = _week_start(out["opened_on"])
    out["post_policy"] = pd.array(out["opened_on"] >= policy, dtype="boolean")
    out = out.join(per, on="case_id")
    out["reached"] = out["reached_at"].notna()
    sms = ds.table("sms")
    first_sms = sms[sms["kind"] == sms_kind].groupby("case_id")["sent_at"].min()
    out["sms_at"] = pd.to_datetime(out["case_id"].map(first_sms)).astype("datetime64[ns]")
    out["sms_sent"] = out["sms_at"].notna()
    lag = out["reached_at"] - out["sms_at"]
    out["reached_after_sms"] = (lag > pd.Timedelta(0)) & (lag <= pd.Timedelta(hours=float(window)))
    cols = ["case_id", "customer_id", "opened_on", "trigger", "arm", "quarter", "week", "post_policy",
            "n_attempts", "reached", "attempts_to_reach", "first_attempt_at", "reached_at", "sms_at",
            "sms_sent", "reached_after_sms"]
    return out[[c for c in cols if c in out.columns]].reset_index(drop=True)


def test_case_reach_equals_the_groupby_join_version(frame):
    ds = frame[0]
    for arms in ((None, "call"), ("call",)):
        pd.testing.assert_frame_equal(case_reach(ds, arms=arms), _case_reach_reference(ds, arms))


def test_case_table_is_computed_once_per_dataset_and_handed_out_as_copies(monkeypatch):
    from carecall_eval.outcomes.reach import cases as cases_mod

    ds = load(SAMPLE)
    calls = []
    real = cases_mod._reach_tables

    def counting(*args):
        calls.append(args[1:])
        return real(*args)

    monkeypatch.setattr(cases_mod, "_reach_tables", counting)
    first = case_reach(ds)
    first["reached"] = False                                      # a caller's change stays its own
    again, att = reach_tables(ds)
    assert len(calls) == 1                                         # the second call read the memo
    assert again["reached"].any()
    pd.testing.assert_frame_equal(again, _case_reach_reference(ds))
    case_reach(ds, arms=("call",))                                 # other options: computed
    assert len(calls) == 2
    ds._frames.pop("call_attempts")                                # the dataset reads the table again
    case_reach(ds)
    assert len(calls) == 3


def test_the_fit_pickles(frame):
    """Results are cached as pickles: the fit and its blockwise model class load back by name."""
    import pickle
    import subprocess
    import sys

    a, design = frame[6], frame[7]
    X = design.matrix(a, order="F")
    cols = am.independent_columns(X)
    X = np.asfortranarray(X[:, cols])
    fit = am.fit_logit(a["answered"].to_numpy(float), X, pd.factorize(a["case_id"])[0],
                       [design.names[j] for j in cols])
    blob = pickle.dumps(fit)
    np.testing.assert_array_equal(pickle.loads(blob).params, fit.params)
    code = ("import pickle, sys; f = pickle.loads(sys.stdin.buffer.read()); "
            "print(type(f.model).__name__, len(f.params))")
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, check=True)
    assert out.stdout.decode().split() == ["BlockLogit", str(len(cols))]     # a fresh process finds the class


def test_block_logit_scores_equal_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(8)
    X = np.asfortranarray(np.column_stack([np.ones(5000), rng.normal(size=(5000, 4))]))
    y = (rng.random(5000) < 0.4).astype(float)
    b = rng.normal(scale=0.3, size=5)
    fast, ref = am._logit_class()(y, X), sm.Logit(y, X)
    np.testing.assert_array_equal(fast.score_obs(b), ref.score_obs(b))
    np.testing.assert_allclose(fast.hessian(b), ref.hessian(b), rtol=1e-12)


def test_block_logit_predictions_equal_statsmodels_as_coefficients_change():
    import statsmodels.api as sm

    rng = np.random.default_rng(12)
    X = np.asfortranarray(np.column_stack([np.ones(3000), rng.normal(size=(3000, 3))]))
    y = (rng.random(3000) < 0.3).astype(float)
    fast, ref = am._logit_class()(y, X), sm.Logit(y, X)
    b = rng.normal(scale=0.3, size=4)
    for step in range(3):
        for which in ("mean", "linear", "var"):
            np.testing.assert_array_equal(fast.predict(b, which=which), ref.predict(b, which=which))
        b[step] += 0.1                                  # the same array changed in place: recomputed
    np.testing.assert_array_equal(fast.predict(b, exog=X[:10]), ref.predict(b, exog=X[:10]))
    np.testing.assert_array_equal(fast.loglike(b), ref.loglike(b))


def test_effect_se_with_dummy_and_empty_columns_equals_the_generic_delta_method():
    """Sparse columns move only their rows, an all-zero column moves nothing: the generic central differences."""
    rng = np.random.default_rng(21)
    n_cases, K = 600, 4
    rows = n_cases * K * 2
    X = np.column_stack([np.ones(rows), (rng.random(rows) < 0.5).astype(float), rng.normal(size=rows),
                         (rng.random(rows) < 0.1).astype(float), np.zeros(rows),
                         (rng.random(rows) < 0.3).astype(float)])
    cell = np.repeat(np.arange(n_cases * K), 2)
    weight = np.tile([0.3, 0.7], n_cases * K)
    q = rng.uniform(0.4, 1.0, size=(n_cases, K))
    q[:, 0] = 1.0
    beta = rng.normal(scale=0.4, size=X.shape[1])
    A = rng.normal(size=(X.shape[1],) * 2)
    cov = A @ A.T / 40
    X_without = X.copy()
    X_without[:, 1] = 0.0
    for pred in (am.Predictor(np.asfortranarray(X), None, weight, cell, q, n_cases, K, treat=1),
                 am.Predictor(X, X_without, weight, cell, q, n_cases, K)):
        assert pred.effect_se(beta, cov) == pytest.approx(am.delta_se(lambda b, p=pred: p.effects(b)[0], beta, cov),
                                                          rel=1e-9)
