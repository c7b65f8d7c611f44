"""End to end: evaluate() on the sample, the CLI, and the design's default matching on the sample."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from carecall_eval import build_cohort, evaluate, load
from carecall_eval.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"

REQUIRED_IDS = [
    "spending.naive_change", "spending.matched_change", "spending.matched_diff", "spending.did_change",
    "spending.placebo_change", "spending.share_reduced", "spending.mde", "spending.evalue",
    "retention.account_12m", "retention.active_12m", "retention.hazard_ratio",
    "reach.before_sms", "reach.after_sms", "reach.sms_effect", "reach.sms_difference", "reach.its_level_change",
    "attempt.answer_rate", "call_length.mean_s", "call_length.median_s", "call_length.p90_s",
    "actions.limit_set_28d", "actions.pause_28d", "actions.self_exclusion_28d", "reception.positive",
]


@pytest.fixture(scope="module")
def ev():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(SAMPLE)


def test_every_metric_id_is_present(ev):
    ids = set(ev.summary["metric"])
    missing = [m for m in REQUIRED_IDS if m not in ids]
    assert not missing


def test_json_round_trips_and_is_deterministic(ev, tmp_path):
    doc = json.loads(ev.to_json())
    back = pd.DataFrame(doc["metrics"])
    s = ev.summary
    assert len(back) == len(s)
    prim = back[(back["metric"] == "spending.matched_change") & (back["window"] == 84)]["estimate"].iloc[0]
    assert prim == pytest.approx(ev.metric("spending.matched_change", "difference", window=84)["estimate"],
                                 abs=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = evaluate(SAMPLE)
    assert again.to_json() == ev.to_json()


def test_no_identifiers_in_the_export(ev):
    text = ev.to_json()
    cust = load(SAMPLE).table("customers")["customer_id"]
    assert not any(cid in text for cid in cust.head(200))
    assert '"A0' not in text   # agent ids


def test_design_default_matching_balances_the_sample():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = build_cohort(load(SAMPLE))
        m = c.match()
    b = m.balance().drop(index="distance", errors="ignore")
    assert (b["smd_before"].abs() >= 0.1).sum() >= 3        # badly imbalanced before
    assert (b["smd_after"].abs() < 0.1).all(), b.loc[b["smd_after"].abs() >= 0.1, "smd_after"]
    counts = m.counts
    assert counts.loc["matched", "treated"] >= 0.9 * counts.loc["all", "treated"]   # few contacts lost
    assert "kept" in m.text


def test_cli_validate_and_evaluate(tmp_path, capsys):
    assert main(["validate", str(SAMPLE)]) == 0
    out = tmp_path / "m.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["evaluate", str(SAMPLE), "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    assert "spending.matched_change" in set(df["metric"])
    printed = capsys.readouterr().out
    assert "naive" in printed


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope")]) != 0
    err = capsys.readouterr()
    assert "nope" in (err.out + err.err)
