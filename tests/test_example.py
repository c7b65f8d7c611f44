"""The committed example report (``reports/example/``) matches what the code computes.

``make example`` simulates the showcase operator, renders its report and records how
(``reports/example/example.json``).  Here the operator is simulated again from that record and its report
figures are computed with the current code (what ``carecall-eval report`` computes, without the notebook):
the test fails when the simulator or any estimator has changed the figures since the example was rendered.
That is a full recomputation (a 30,000-customer simulation and the report's estimators, placebo included),
not a sample of it; fix a failure with ``make example`` and commit ``reports/example/``.
"""
from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import example  # noqa: E402
import readme_figures  # noqa: E402

pytestmark = pytest.mark.example

REC = json.loads(example.RECORD.read_text(encoding="utf-8"))
FOLDER = example.report_folder(REC)


def _rows(text: str) -> list[dict]:
    return json.loads(text)["metrics"]


def _same_figures(old: list[dict], new: list[dict], rtol: float = 1e-8, atol: float = 1e-9) -> bool:
    """Equal rows, numbers to 8 significant digits (a float rounded at the JSON's 10th decimal may differ
    in its last digit between machines); anything else must be identical."""
    if len(old) != len(new):
        return False
    for a, b in zip(old, new):
        if a.keys() != b.keys():
            return False
        for k, x in a.items():
            y = b[k]
            if isinstance(x, float) and isinstance(y, float):
                if abs(x - y) > atol + rtol * abs(y):
                    return False
            elif x != y:
                return False
    return True


def test_committed_files_are_the_recorded_ones():
    assert example.sha256(FOLDER / "metrics.json") == REC["metrics_sha256"], (
        "reports/example metrics.json differs from the one make example recorded: run `make example`")
    for name in ("report.html", "metrics.csv"):
        assert (FOLDER / name).is_file(), name


def test_committed_example_matches_the_code(tmp_path):
    fingerprint, metrics = example.recompute(REC, tmp_path / "example")
    assert fingerprint == REC["data_fingerprint"], (
        "the simulator now gives other data for the example operator: run `make example` and commit reports/example")
    committed = (FOLDER / "metrics.json").read_text(encoding="utf-8")
    if metrics != committed and not _same_figures(_rows(committed), _rows(metrics)):
        old, new = _rows(committed), _rows(metrics)
        diff = "\n".join(list(difflib.unified_diff(json.dumps(old, indent=1).splitlines(),
                                                   json.dumps(new, indent=1).splitlines(), "committed", "code",
                                                   lineterm="", n=1))[:60])
        pytest.fail("the committed example's metrics.json no longer matches what the code computes: run "
                    f"`make example` and commit reports/example\n{diff}")


def test_example_interval_is_narrow_enough_to_mean_something():
    """The pooled year's matched spending interval is within about +/-10 points (the reason for its size)."""
    rows = _rows((FOLDER / "metrics.json").read_text(encoding="utf-8"))
    mt = readme_figures._metric(rows, "spending.matched_change", "difference", window=84)
    assert (mt["ci_high"] - mt["ci_low"]) / 2 <= 0.10
    truth = REC["truth"]["realised_att_84d"]
    assert mt["ci_low"] <= truth <= mt["ci_high"]      # this seed's interval covers the built-in truth


def test_example_page_is_offline_and_names_the_operator():
    from carecall_eval.report.render import external_urls

    page = (FOLDER / "report.html").read_text(encoding="utf-8")
    assert external_urls(page) == []
    assert REC["operator"] in page and REC["quarter"] in page


def test_readme_figures_are_written_from_truth_and_metrics(capsys):
    """README.md and docs/index.md carry the figures tools/readme_figures.py writes (none typed by hand)."""
    assert readme_figures.main(["--check"]) == 0, capsys.readouterr().err
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    truth = json.loads((ROOT / "data" / "sample" / "truth.json").read_text(encoding="utf-8"))["realised"]
    from carecall_eval.narrative import spct1

    assert spct1(truth["realised_att_theoretical_loss"]["post_84d"]) in readme
    assert spct1(truth["naive_change_reached_84d"]) in readme
