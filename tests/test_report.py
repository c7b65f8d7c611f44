"""Quarterly notebook reports: quarters, KPIs, rendering, determinism, privacy.

The rendering tests execute ``notebooks/quarterly_report.py`` on the sample data
in the ``carecall-eval`` kernel (registered by ``make setup``) in the CI setting
(no placebo, one quarter pooled), twice; together they take about a minute.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import carecall_eval as ce
from carecall_eval.cli import main
from carecall_eval.report import render as rr
from carecall_eval.report.context import build_quarterly, check_quarter, effect_cohort_period
from carecall_eval.report.quarters import Quarter, kpi_table, parse_quarter, quarter_kpis

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
QUARTER = "2025Q4"
SECTIONS = ["1. Headline figures", "2. Reach and the missed-call SMS", "3. Spending after a call",
            "4. Retention after 12 months", "5. Actions within 28 days",
            "6. Who was compared: cohort flow and balance", "7. Data quality", "8. Can these figures be trusted?",
            "9. Method notes", "10. Reproducibility"]
CI_SETTING = {"placebo": False, "pool_quarters": 1, "selfcheck_replicates": 5}


@pytest.fixture(scope="module")
def ds():
    d = ce.load(SAMPLE)
    yield d
    d.close()


# ----------------------------------------------------------------------------- quarters

@pytest.mark.parametrize("text, expected", [("2025Q3", (2025, 3)), ("2025-q1", (2025, 1)), (" 2024 Q4 ", (2024, 4))])
def test_parse_quarter(text, expected):
    assert parse_quarter(text) == Quarter(*expected)


@pytest.mark.parametrize("bad", ["2025Q5", "2025", "Q3 2025", "", "2025Q0"])
def test_parse_quarter_rejects_with_the_expected_form(bad):
    with pytest.raises(ValueError, match="e.g. 2025Q3"):
        parse_quarter(bad)


def test_quarter_arithmetic():
    q = Quarter(2025, 1)
    assert q.shift(-1) == Quarter(2024, 4) and q.shift(4) == Quarter(2026, 1)
    assert [x.label for x in q.previous(2)] == ["2024Q3", "2024Q4", "2025Q1"]
    assert str(q.start) == "2025-01-01" and str(q.end) == "2025-03-31"
    assert str(Quarter(2024, 1).end) == "2024-03-31" and str(Quarter(2024, 4).end) == "2024-12-31"


def test_effect_cohort_has_complete_follow_up_by_the_quarter_end():
    start, end = effect_cohort_period(Quarter(2025, 3), pd.Timestamp("2025-12-31"), window=84, pool_quarters=4)
    # 2025-09-30 minus 83 days: the last index whose days 0..83 end on the quarter's last day
    assert str(end) == "2025-07-09" and str(start) == "2024-07-10"
    # data ending inside the quarter: follow-up must end at the data end
    _, end = effect_cohort_period(Quarter(2025, 4), pd.Timestamp("2025-11-30"), window=28, pool_quarters=1)
    assert str(end) == "2025-11-03"
    assert effect_cohort_period(Quarter(2025, 4), pd.Timestamp("2025-12-31"), pool_quarters=None)[0] is None


# ----------------------------------------------------------------------------- KPIs

def test_kpis_match_the_tables_counted_independently(ds):
    quarters = parse_quarter(QUARTER).previous(4)
    k = quarter_kpis(ds, quarters).set_index(["metric", "quarter"])
    cases = ds.table("call_cases")
    att = ds.table("call_attempts")
    opened = cases["opened_on"].dt.to_period("Q").astype(str).str.replace("Q", "Q")
    for q in quarters:
        assert k.loc[("kpi.cases_opened", q.label), "n"] == int((opened == q.label).sum())
        in_q = (att["attempted_at"] >= pd.Timestamp(q.start)) & (att["attempted_at"] < pd.Timestamp(q.shift(1).start))
        assert k.loc[("kpi.attempts", q.label), "n"] == int(in_q.sum())
        d = att.loc[in_q & att["answered"], "duration_s"].to_numpy()
        assert k.loc[("kpi.call_length_median_s", q.label), "estimate"] == pytest.approx(np.median(d), abs=0)
        assert k.loc[("kpi.call_length_mean_s", q.label), "estimate"] == pytest.approx(d.mean(), rel=1e-12)
        mix = [m for m in k.index.get_level_values(0).unique() if m.startswith("kpi.outcome.")]
        assert sum(k.loc[(m, q.label), "estimate"] for m in mix) == pytest.approx(1.0)
    # the same statistics as the library's estimators (one implementation each)
    from carecall_eval.outcomes import calls, reach

    cl = calls.call_length(ds).summary.set_index(["metric", "group"])
    cr = reach.case_reach(ds)
    for q in quarters:
        assert k.loc[("kpi.call_length_median_s", q.label), "estimate"] == \
            cl.loc[("call_length.median_s", f"quarter={q.label}"), "estimate"]
        sub = cr[cr["quarter"] == q.label]
        assert k.loc[("kpi.reach_rate", q.label), "estimate"] == pytest.approx(sub["reached"].mean(), rel=1e-12)
        assert k.loc[("kpi.reach_rate", q.label), "n"] == len(sub)


def test_kpi_table_suppresses_small_cells():
    rows = pd.DataFrame({
        "metric": ["kpi.cases_opened", "kpi.cases_opened", "kpi.reach_rate", "kpi.reach_rate"],
        "group": ["quarter=2025Q1", "quarter=2025Q2"] * 2, "quarter": ["2025Q1", "2025Q2"] * 2,
        "estimate": [4.0, 250.0, 0.5, 0.02], "ci_low": np.nan, "ci_high": np.nan, "n": [4, 250, 4, 250],
        "count": pd.array([pd.NA, pd.NA, 2, 5], dtype="Int64"), "method": "x"})
    t = kpi_table(rows, threshold=10)
    assert t.loc["Cases opened (all channels)"].tolist() == ["<10", "250"]
    # a share is suppressed when its numerator or denominator is a small count
    assert t.loc["Reach rate (phone cases answered)"].tolist() == ["<10", "<10"]


def test_unknown_or_empty_quarter_is_a_clear_message(ds, capsys):
    assert check_quarter(ds, Quarter(2025, 4)) == []
    msg = check_quarter(ds, Quarter(2026, 1))[0]
    assert "outside the data" in msg and "2024Q1 to 2025Q4" in msg
    assert main(["report", "--data", str(SAMPLE), "--quarter", "2025Q7", "--quiet"]) == 2
    assert "e.g. 2025Q3" in capsys.readouterr().err
    assert main(["report", "--data", str(SAMPLE), "--quarter", "2023Q2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "outside the data" in err and "Traceback" not in err


def test_missing_sms_policy_is_said_not_raised(tmp_path, monkeypatch):
    import sys

    import carecall_eval.evaluate  # noqa: F401  (the lazy package loads it on first use)
    from carecall_eval.outcomes import reach

    evaluate_module = sys.modules["carecall_eval.evaluate"]

    data = tmp_path / "nopolicy"
    data.mkdir()
    for f in SAMPLE.iterdir():
        if f.suffix == ".parquet":
            (data / f.name).symlink_to(f)
    (data / "operator.toml").write_text('operator = "NoPolicy"\ncurrency = "SEK"\n')
    nds = ce.load(data)
    res = reach.sms_effect(nds)  # what the reach section shows: reach over time, no before/after
    assert "reach.sms_effect" not in set(res.summary["metric"])
    assert "No effect of a missed-call SMS is estimated" in res.text
    # the full evaluation is exercised by the rendering tests; here only what the report says is missing
    monkeypatch.setattr(evaluate_module, "evaluate", lambda *a, **k: None)
    rep = build_quarterly(nds, QUARTER, **CI_SETTING)
    assert "sms_policy_start" in rep.missing["sms_policy"] and "YYYY-MM-DD" in rep.missing["sms_policy"]
    assert rep.metrics() is None
    # the metrics files are still complete: one not-available row per estimator, with the reason (issue 13)
    written = rep.write_metrics(tmp_path)
    assert [p.name for p in written] == ["metrics.json", "metrics.csv"]
    doc = json.loads(written[0].read_text())
    spending = [m for m in doc["metrics"] if m["estimator"] == "evaluation" and m["metric"] == "spending"]
    assert spending and spending[0]["estimate"] is None and spending[0]["note"].startswith("not available: ")
    assert any(m["metric"].startswith("kpi.") for m in doc["metrics"])


# ----------------------------------------------------------------------------- rendering

@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Two renders of the same inputs: one through the CLI, one through render_report."""
    pytest.importorskip("papermill")
    try:
        rr._check_kernel(rr.KERNEL_NAME)
    except rr.ReportError as exc:
        pytest.fail(str(exc))
    out1 = tmp_path_factory.mktemp("reports1")
    out2 = tmp_path_factory.mktemp("reports2")
    cwd = os.getcwd()
    os.chdir(out1)  # a relative --out, as `make report` passes it
    try:
        code = main(["report", "--data", str(SAMPLE), "--quarter", QUARTER, "--out", "reports", "--fast",
                     "--pool-quarters", "1", "--selfcheck-replicates", "5", "--quiet", "--timeout", "600"])
    finally:
        os.chdir(cwd)
    assert code == 0
    out1 = out1 / "reports"
    r2 = rr.render_report(SAMPLE, QUARTER, out2, progress=False, timeout=600, **CI_SETTING)
    d1 = out1 / "SimSpel" / QUARTER
    return d1, r2.directory


def test_render_writes_the_three_files_under_operator_and_quarter(rendered):
    d1, d2 = rendered
    assert d1.parts[-2:] == ("SimSpel", QUARTER)
    assert sorted(p.name for p in d1.iterdir()) == [".carecall-output", "metrics.csv", "metrics.json", "report.html"]
    assert not list(d1.parent.glob(".*"))  # no staging or old directories left behind (the marker is the writer's)


def test_html_has_every_section_and_no_external_url(rendered):
    text = (rendered[0] / "report.html").read_text()
    for heading in SECTIONS:
        assert re.search(r"<h2[^>]*>" + re.escape(heading), text), heading
    assert "SimSpel care calls: quarterly report 2025Q4" in text
    assert "http://" not in text and "https://" not in text
    assert rr.external_urls(text) == []
    assert not re.search(r"<script[^>]+src=", text)
    # figures are embedded PNGs (event study, ITS, answer rates, waterfall, estimates, KM, actions, love plot)
    assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', text)) >= 8
    assert "Traceback" not in text and "import carecall_eval" not in text
    assert len(re.findall(r'<time id="render-timestamp">', text)) == 1


def test_two_renders_are_identical_but_for_the_marked_timestamp(rendered):
    d1, d2 = rendered
    assert (d1 / "metrics.json").read_bytes() == (d2 / "metrics.json").read_bytes()
    assert (d1 / "metrics.csv").read_bytes() == (d2 / "metrics.csv").read_bytes()
    h1, h2 = (d1 / "report.html").read_text(), (d2 / "report.html").read_text()
    assert rr.strip_timestamp(h1) == rr.strip_timestamp(h2)


def test_metrics_round_trip_and_match_evaluate(rendered, ds):
    text = (rendered[0] / "metrics.json").read_text()
    doc = json.loads(text)
    assert json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n" == text
    csv = pd.read_csv(rendered[0] / "metrics.csv")
    js = pd.DataFrame(doc["metrics"])
    assert len(csv) == len(js)
    assert csv["metric"].tolist() == js["metric"].tolist()
    np.testing.assert_allclose(csv["estimate"].to_numpy(float), js["estimate"].astype(float).to_numpy(),
                               rtol=1e-9, equal_nan=True)
    rep = doc["settings"]["report"]
    assert rep["quarter"] == QUARTER and rep["retention_cohort"] == "2024Q4"
    assert doc["settings"]["data_fingerprint"] == ds.fingerprint()
    # the evaluation's rows are exactly what evaluate() gives for the recorded design
    design = ce.StudyDesign.from_dict(doc["settings"]["design"])
    assert str(design.study_end) == rep["effect_cohort"]["study_end"]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # as in the report's kernel (one BLAS thread, for bit-reproducible sums)
        ev = ce.evaluate(ds, design, placebo=False, window=84)
    mine = [r for r in doc["metrics"] if r["estimator"] in ev.results]
    ref = json.loads(ev.to_json())["metrics"]
    keys = set().union(*(r.keys() for r in ref))
    # the report's stacked rows carry the columns of its extra results (the self-check's), empty on these rows
    assert [{k: r.get(k) for k in keys} for r in mine] == [{k: r.get(k) for k in keys} for r in ref]
    assert all(v is None for r in mine for k, v in r.items() if k not in keys)
    extra = {r["estimator"] for r in doc["metrics"]} - set(ev.results)
    assert {"kpis", "retention_year_earlier"} <= extra <= {"kpis", "retention_year_earlier", "selfcheck"}


def test_reports_contain_no_customer_case_or_agent_ids(rendered, ds):
    ids = set(ds.table("customers")["customer_id"]) | set(ds.table("call_cases")["case_id"]) \
        | set(ds.table("call_attempts")["agent_id"].dropna())
    for name in ("report.html", "metrics.json", "metrics.csv"):
        text = (rendered[0] / name).read_text()
        text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
        tokens = set(re.findall(r"[A-Za-z0-9_]+", text))
        assert not tokens & ids, (name, sorted(tokens & ids)[:5])


def test_the_notebooks_context_leaves_the_matched_rows_to_be_read_again(ds, tmp_path):
    """What the renderer hands the notebook (lean, pickled) keeps the cohort and the matching but not the
    matched table's copy of the cohort's columns (asked for, it is rebuilt the same) nor the propensity
    model's statsmodels fit."""
    from carecall_eval.report.context import load_report

    rep = build_quarterly(ds, QUARTER, programme=False, **CI_SETTING)
    full = rep.evaluation.sample.table
    assert "table" in vars(rep.evaluation.sample)
    back = load_report(rep.lean().save(tmp_path / "context.pickle"))
    assert "table" not in vars(back.evaluation.sample)
    assert "table" in vars(rep.evaluation.sample)          # the report itself is not changed
    pd.testing.assert_frame_equal(back.evaluation.sample.table, full, check_exact=True)
    pd.testing.assert_frame_equal(back.evaluation.summary, rep.evaluation.summary, check_exact=True)
    # no statsmodels fit (the design matrix again); the scores and the balance the page shows are kept
    assert back.evaluation.matched.propensity.results is None
    assert rep.evaluation.matched.propensity.results is not None
    np.testing.assert_array_equal(back.evaluation.matched.propensity.ps, rep.evaluation.matched.propensity.ps)
    pd.testing.assert_frame_equal(back.evaluation.matched.balance(), rep.evaluation.matched.balance(), check_exact=True)
    assert back.evaluation.matched.text == rep.evaluation.matched.text


def test_without_details_the_report_has_the_same_figures_and_what_its_pages_read(ds):
    """``details=False`` (the renderer's setting: details dropped as each section is computed, so the later
    sections run in less memory) changes no exported figure, and each result keeps what ``lean()`` keeps."""
    from carecall_eval.cohorts import cache
    from carecall_eval.report.context import QuarterlyReport

    with cache.caching(False):
        full = build_quarterly(ds, QUARTER, programme=False, **CI_SETTING)
        lean = build_quarterly(ds, QUARTER, programme=False, details=False, **CI_SETTING)
    pd.testing.assert_frame_equal(lean.metrics().summary, full.metrics().summary, check_exact=True)
    assert any(len(r.details) > 1 for r in full.evaluation.results.values())     # there was something to drop
    for name, r in lean.evaluation.results.items():
        assert set(r.details) <= set(QuarterlyReport.SHOWN_DETAILS), name
        kept = full.lean().evaluation.results[name].details
        assert set(r.details) == set(kept)
        for k in kept:
            pd.testing.assert_frame_equal(r.details[k], kept[k], check_exact=True)
    assert set(lean.selfcheck.details) <= set(QuarterlyReport.SHOWN_DETAILS)
