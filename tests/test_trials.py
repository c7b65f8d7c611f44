"""Planning, allocating and (from the command line) running a randomized care-call study.

Allocation: byte-identical files for a seed, whatever the row order; designs that keep their promises
(every matched set holds the ratio, within its stratum; permuted blocks hold the ratio); customers allocated
before are refused; a changed allocation is detected by verification.  Planning: the closed-form detectable
effects and months, their inverse relation, and power checked by simulating trials at the planned size.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import carecall_eval as ce
from carecall_eval._validation import z_quantile
from carecall_eval.cli import main
from carecall_eval.errors import InputError
from carecall_eval.trials import estimators as est
from carecall_eval.trials.allocate import (
    allocate,
    allocation_hash,
    log_path,
    parse_ratio,
    read_allocation,
    verify_allocation,
)
from carecall_eval.trials.plan import plan_trial


@pytest.fixture(scope="module")
def eligible():
    rng = np.random.default_rng(3)
    n = 601
    return pd.DataFrame({"customer_id": [f"C{i:05d}" for i in rng.permutation(n)],
                         "gender": rng.choice(["F", "M", "U"], n, p=[0.3, 0.68, 0.02]),
                         "age": rng.integers(18, 80, n), "net_loss": np.round(rng.lognormal(9, 1, n), 2),
                         "theoretical_loss": np.round(rng.lognormal(8.5, 1, n), 2)})


# ----------------------------------------------------------------------------- allocation
@pytest.mark.parametrize("design", ["simple", "blocked", "matched-sets"])
def test_allocation_is_byte_identical_for_a_seed_and_changes_with_it(tmp_path, eligible, design):
    kw = {"design": design, "ratio": "1.5:1", "strata": ["gender"], "seed": 42}
    a = allocate(eligible, **kw)
    b = allocate(eligible.sample(frac=1, random_state=7), **kw)           # row order does not matter
    a.write(tmp_path / "a.parquet")
    b.write(tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert (tmp_path / "a.log.json").read_bytes() == (tmp_path / "b.log.json").read_bytes()
    c = allocate(eligible, **{**kw, "seed": 43})
    assert c.log["allocation_sha256"] != a.log["allocation_sha256"]
    log = json.loads((tmp_path / "a.log.json").read_text())
    assert log["seed"] == 42 and log["input"]["sha256_content"] == a.log["input"]["sha256_content"]
    assert log["allocation_sha256"] == allocation_hash(read_allocation(tmp_path / "a.parquet"))


def test_matched_sets_hold_the_ratio_within_strata(eligible):
    a = allocate(eligible, design="matched-sets", ratio="1:1:1", strata=["gender"], seed=1)
    t = a.table.merge(eligible, on="customer_id")
    sets = t.groupby("block")
    full = sets.size() == 3
    assert full.sum() >= len(eligible) // 3 - 3 and (sets.size() <= 3).all()
    assert (sets["arm"].nunique()[full] == 3).all()                       # one of each arm in every full set
    within = sets["gender"].nunique()[full] == 1
    assert within.mean() > 0.98                                           # only the pooled leftovers mix strata
    # sets are close in age and net loss: the within-set spread is far below the population's
    assert sets["net_loss"].apply(lambda x: x.max() - x.min())[full].median() < 0.1 * eligible["net_loss"].std()
    b = allocate(eligible, design="matched-sets", ratio="1.5:1", seed=1)
    s = b.table.groupby("block")["arm"].value_counts().unstack(fill_value=0)
    full5 = s.sum(axis=1) == 5
    assert (s.loc[full5, "call"] == 3).all() and (s.loc[full5, "control"] == 2).all()
    assert a.balance.filter(like="smd_").abs().max().max() < 0.15


def test_blocks_hold_the_ratio_and_simple_draws_follow_it(eligible):
    a = allocate(eligible, design="blocked", ratio="1:1", block_size=4, strata=["gender"], seed=5)
    counts = a.table.groupby("block")["arm"].value_counts().unstack(fill_value=0)
    full = counts.sum(axis=1) == 4
    assert (counts.loc[full, "call"] == 2).all()
    n = a.log["n_by_arm"]
    assert abs(n["call"] - n["control"]) <= a.table["stratum"].nunique() * 2
    big = pd.DataFrame({"customer_id": [f"X{i}" for i in range(20000)]})
    s = allocate(big, design="simple", ratio="1.5:1", seed=9)
    share = s.log["n_by_arm"]["call"] / 20000
    assert abs(share - 0.6) < 4 * math.sqrt(0.24 / 20000)
    assert s.table["block"].isna().all()


def test_ratio_and_argument_checks(eligible):
    assert parse_ratio("1.5:1") == (3, 2) and parse_ratio("1:1:1") == (1, 1, 1) and parse_ratio("2:1") == (2, 1)
    with pytest.raises(InputError, match="ratio"):
        parse_ratio("1")
    with pytest.raises(InputError, match="seed"):
        allocate(eligible)
    with pytest.raises(InputError, match="lacks column"):
        allocate(eligible, design="matched-sets", match_on=["income"], seed=1)
    with pytest.raises(InputError, match="more than once"):
        allocate(pd.concat([eligible, eligible.head(2)]), seed=1)
    with pytest.raises(InputError, match="arms"):
        allocate(eligible, ratio="1:1", arms=["call", "sms"], seed=1)
    with pytest.raises(InputError, match="multiple of 2"):
        allocate(eligible, design="blocked", block_size=5, seed=1)


def test_customers_allocated_before_are_refused_not_redrawn(tmp_path, eligible):
    first = allocate(eligible.iloc[:300], design="blocked", seed=1)
    first.write(tmp_path / "first.parquet")
    with pytest.raises(InputError, match="allocated before .*never redrawn"):
        allocate(eligible, design="blocked", seed=2, previous=[tmp_path / "first.parquet"])
    second = allocate(eligible, design="blocked", seed=2, previous=[tmp_path / "first.parquet"],
                      exclude_allocated=True)
    assert second.log["refused"]["n"] == 300
    assert not set(second.table["customer_id"]) & set(first.table["customer_id"])
    assert second.log["previous"][0]["allocation_sha256"] == first.log["allocation_sha256"]
    with pytest.raises(InputError, match="never overwritten"):
        first.write(tmp_path / "first.parquet")


def test_verification_detects_a_changed_allocation(tmp_path, eligible):
    a = allocate(eligible, design="matched-sets", ratio="1:1:1", strata=["gender"], seed=8)
    path, _ = a.write(tmp_path / "alloc.parquet")
    ok = verify_allocation(path, eligible=eligible)
    assert ok.ok and "verified" in ok.text and set(ok.checks["check"]) >= {"allocation_hash", "redraw"}
    t = read_allocation(path)
    i = t.index[t["arm"] == "control"][0]
    t.loc[i, "arm"] = "call"                                   # one customer moved from control to call
    t.to_parquet(path, index=False)
    bad = verify_allocation(path, log=log_path(path))
    assert not bad.ok and "FAILED" in bad.text and "changed after it was drawn" in bad.text
    changed = eligible.copy()
    changed.loc[0, "net_loss"] += 1
    worse = verify_allocation(path, eligible=changed)
    assert set(worse.checks.loc[~worse.checks["passed"], "check"]) >= {"allocation_hash", "eligible_fingerprint"}


# ----------------------------------------------------------------------------- planning
def test_plan_closed_form():
    r = plan_trial(eligible_per_month=200, reach=0.4, spread=1.5, complier_ratio=0.9, months=10, level=0.9,
                   power=0.9)
    z = z_quantile(0.9) + z_quantile(0.8)          # power 0.9: the one-sided 90% quantile
    for d, (q1, q0) in {"1:1": (0.5, 0.5), "1.5:1": (0.6, 0.4), "triplet": (1 / 3, 1 / 3)}.items():
        se = 1.5 * math.sqrt(1 / (q1 * 2000) + 1 / (q0 * 2000))
        itt = r.metric("trial.mde_itt", d)
        assert itt["estimate"] == pytest.approx(math.expm1(-z * se), rel=1e-12)
        assert r.metric("trial.mde_reached", d)["estimate"] == pytest.approx(itt["estimate"] / 0.36, rel=1e-12)
        assert itt["n_call"] == round(q1 * 2000)
        # inverse: the months needed for that effect are the months given
        m = plan_trial(eligible_per_month=200, reach=0.4, spread=1.5, complier_ratio=0.9, level=0.9, power=0.9,
                       effect=itt["estimate"])
        assert m.metric("trial.months_itt", d)["estimate"] == pytest.approx(10, rel=1e-9)
        m2 = plan_trial(eligible_per_month=200, reach=0.4, spread=1.5, complier_ratio=0.9, level=0.9, power=0.9,
                        effect=r.metric("trial.mde_reached", d)["estimate"])
        assert m2.metric("trial.months_reached", d)["estimate"] == pytest.approx(10, rel=1e-9)
    assert "two-sided test at 10%, 90% power" in r.text
    with pytest.raises(InputError, match="without data"):
        plan_trial(reach=0.5)
    with pytest.raises(InputError, match="not both"):
        plan_trial(eligible_per_month=1, reach=0.5, spread=1, complier_ratio=1, months=3, effect=-0.1)


def test_plan_has_the_power_it_promises():
    """Simulated 1:1 trials at the planned size reject no-effect at the promised rate (the planned effect true)."""
    rng = np.random.default_rng(2024)
    shape = 0.5                                       # gamma outcomes: coefficient of variation 1/sqrt(shape)
    r = plan_trial(eligible_per_month=100, reach=1.0, spread=1 / math.sqrt(shape), complier_ratio=1.0, months=6)
    mde = r.metric("trial.mde_itt", "1:1")["estimate"]
    n = int(r.metric("trial.mde_itt", "1:1")["n_call"])
    reps, hits = 400, 0
    X = np.zeros((2 * n, 0))
    arm = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    for _ in range(reps):
        y = rng.gamma(shape, 1 / shape, 2 * n) * np.where(arm, 1 + mde, 1.0)
        e = est.itt_ratio(y, X, arm, ~arm, np.arange(2 * n), 0.95)
        hits += e["ci_high"] < 0
    power = hits / reps
    assert abs(power - 0.8) < 3 * math.sqrt(0.16 / reps), power


def test_plan_measured_on_the_data(sample):
    ds, _ = sample
    r = plan_trial(ds, months=12)
    m = r.settings["measured"]
    cohort = ce.build_cohort(ds)
    assert m["n_cases"] == len(cohort.table)
    assert r.metric("trial.reach_rate", "all")["estimate"] == pytest.approx(cohort.table["reached"].mean())
    assert 0 < m["spread"] <= m["spread_unadjusted"] * 1.05
    assert r.metric("trial.mde_itt", "1:1")["estimate"] < 0
    assert "eligible customers a month" in r.text


# ----------------------------------------------------------------------------- the working model
def test_poisson_fit_equals_statsmodels():
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    n = 500
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n), np.ones(n), 2 * x])   # a constant and a copy
    y = rng.poisson(np.exp(1 + 0.5 * x))
    b, kept = est.poisson_fit(y, X)
    assert len(kept) == 3
    ref = sm.GLM(y, X[:, kept], family=sm.families.Poisson()).fit()
    np.testing.assert_allclose(b, ref.params, rtol=1e-8)


# ----------------------------------------------------------------------------- from the command line
def test_plan_allocate_fieldwork_verify_and_analyse_from_the_cli(tmp_path, capsys):
    data = tmp_path / "trial"
    assert main(["simulate-trial", str(data), "--customers", "3000", "--seed", "4", "--share", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "effect of being reached" in out
    el = data / "trial" / "eligible.parquet"
    # the simulator's allocation is reproducible from its eligible list: byte for byte
    alloc = tmp_path / "again.parquet"
    assert main(["allocate", str(el), "--design", "matched-sets", "--ratio", "1:1:1", "--strata", "gender",
                 "--match-on", "age,net_loss", "--seed", "4", "--out", str(alloc)]) == 0
    assert alloc.read_bytes() == (data / "trial" / "allocation.parquet").read_bytes()
    assert log_path(alloc).read_bytes() == (data / "trial" / "allocation.log.json").read_bytes()
    assert main(["verify-allocation", str(alloc), "--eligible", str(el), "--data", str(data)]) == 0
    # drawing again is refused, and a tampered allocation fails verification
    assert main(["allocate", str(el), "--seed", "4", "--out", str(tmp_path / "x.parquet"),
                 "--previous", str(alloc)]) == 2
    t = read_allocation(alloc)
    t.loc[t.index[0], "block"] = "S00000"
    t.to_parquet(alloc, index=False)
    assert main(["verify-allocation", str(alloc), "--data", str(data)]) == 1
    capsys.readouterr()
    res = tmp_path / "res.json"
    fig = tmp_path / "consort.png"
    assert main(["analyse-trial", str(data), "--out", str(res), "--figure", str(fig), "--level", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "Per protocol (not randomized" in out and "CONSORT" in out and "90% CI" in out
    doc = json.loads(res.read_text())
    assert {r["metric"] for r in doc["summary"]} >= {"spending.rct_itt_change", "spending.rct_cace_change"}
    assert fig.read_bytes()[:4] == b"\x89PNG"
    assert main(["plan-trial", str(data), "--effect", "-0.2"]) == 0
    assert "months of recruitment" in capsys.readouterr().out


def test_blocked_study_with_block_fixed_effects(simulated):
    path, truth = simulated(customers=4000, seed=12, trial="blocked", trial_ratio="1:1", trial_share=0.3,
                            trial_block_size=40)
    ds = ce.load(path)
    res = ce.randomized_effects(ds, outcomes=False)        # blocks of 40 (20 per arm): block fixed effects
    assert res.settings["blocks"] == "fixed" and "fixed effects" in res.metric(
        "spending.rct_itt_change", "call", window=84)["method"]
    tr = truth["realised"]["trial"]
    for w in (28, 84, 365):
        r = res.metric("spending.rct_itt_change", "call", window=w)
        z = (math.log1p(r["estimate"]) - math.log1p(tr["itt"]["call"][f"{w}d"])) / r["se"]
        assert abs(z) < 3, (w, z)          # (at this seed the 12-month estimate is 2.2 standard errors off)
    cl = ce.randomized_effects(ds, blocks="cluster", outcomes=False)
    a, b = res.metric("spending.rct_itt_change", "call", window=84), cl.metric("spending.rct_itt_change", "call",
                                                                               window=84)
    assert a["estimate"] != pytest.approx(b["estimate"], rel=1e-9)   # the working model differs, not only the se
    ds.close()


# ----------------------------------------------------------------------------- the report and the bundle
def _trial_cell() -> str:
    from pathlib import Path

    src = (Path(__file__).resolve().parents[1] / "notebooks" / "quarterly_report.py").read_text()
    cells = src.split("\n# %%")
    hits = [c for c in cells if "The randomized study: a section only when" in c]
    assert len(hits) == 1
    return hits[0].split("\n", 1)[1]


def _run_cell(res: dict, T: int = 10) -> list:
    import html
    import types

    import matplotlib

    matplotlib.use("Agg")
    from carecall_eval import plotting
    from carecall_eval.narrative import horizon_phrase, level_label
    from carecall_eval.report import display as real

    shown: list = []
    rd = types.SimpleNamespace(
        pct=real.pct, ci_pct=real.ci_pct, suppress=real.suppress, figure=real.figure,
        show_markdown=lambda t: shown.append(("markdown", t)),
        show_table=lambda df, **k: shown.append(("table", df)),
        show_figure=lambda fig, alt, caption=None: shown.append(("figure", alt)))
    exec(_trial_cell(), {"res": res, "T": T, "rd": rd, "pd": pd, "html": html, "plotting": plotting,
                         "level_label": level_label, "horizon_phrase": horizon_phrase})
    return shown


def test_report_trial_section_only_with_arms(simulated):
    assert _run_cell({"spending": object()}) == []                     # no arms: no section at all
    path, _ = simulated(customers=4000, seed=11, trial="matched-sets", trial_share=0.3)
    ds = ce.load(path)
    res = ce.randomized_effects(ds)
    shown = _run_cell({"randomized": res})
    kinds = [k for k, _ in shown]
    assert kinds[0] == "markdown" and shown[0][1].startswith("## Randomized study")
    assert "table" in kinds and ("figure", "CONSORT flow of the randomized study") in shown
    table = next(v for k, v in shown if k == "table")
    assert set(table["after"]) == {"28 days", "12 weeks", "12 months"}
    assert table[""].str.contains("not randomized").any()
    # small cells: with a threshold above the arm sizes every count is withheld in the table
    big = _run_cell({"randomized": res}, T=10_000)
    t2 = next(v for k, v in big if k == "table")
    from carecall_eval.report import display as real

    assert set(t2["customers"]) == {"withheld"} and (t2["change"] == real.pct(float("nan"), 1, True)).all()
    ds.close()


def test_bundle_carries_the_trial_suppressed_like_the_rest(simulated):
    import types

    from carecall_eval.compare import export as ex

    path, _ = simulated(customers=4000, seed=11, trial="matched-sets", trial_share=0.3)
    ds = ce.load(path)
    res = ce.randomized_effects(ds)
    ev = types.SimpleNamespace(summary=res.summary.assign(estimator="randomized"))
    m, log = ex._metrics_table(ev, 10, 0.95)
    rows = m.set_index(["metric", "group", "window"], drop=False)
    itt = m[(m["metric"] == "spending.rct_itt_change") & (m["group"] == "call") & (m["window"] == 84)].iloc[0]
    assert itt["se_scale"] == "log1p" and itt["suppressed"] == "" and itt["estimate"] == pytest.approx(
        res.metric("spending.rct_itt_change", "call", window=84)["estimate"])
    cace = m[m["metric"] == "spending.rct_cace_change"]
    assert (cace["se_scale"] == "log1p").all()
    # an arm share with fewer than 10 customers with (or without) the outcome is withheld, and its differences
    s = res.summary
    a = s[(s["metric"] == "actions.rct_self_exclusion_28d") & s["group"].isin(["call", "letter", "control"])]
    k = (a["estimate"] * a["n"]).round()
    small = a.loc[(k > 0) & (k < 10) | ((a["n"] - k) > 0) & ((a["n"] - k) < 10), "group"]
    got = m[(m["metric"] == "actions.rct_self_exclusion_28d")].set_index("group")
    for g in small:
        assert pd.isna(got.loc[g, "estimate"]) and "implied count<10" in got.loc[g, "suppressed"]
        for d in ([f"{g}-control"] if g != "control" else ["call-control", "letter-control"]):
            assert pd.isna(got.loc[d, "estimate"])
    assert len(rows) == len(res.summary) and log["rows"] == len(res.summary)
    c = ex.consort_counts(res.get_plot_data("consort"), 10_000)
    assert set(c["n"]) <= {"<10000", "withheld", 0}
    ds.close()
