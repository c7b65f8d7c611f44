"""Packaging, quickly (the full wheel check is tests/test_install.py): notebooks and the sample are found through
the package, the notebook before any figure, a missing kernel falls back to this interpreter."""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from carecall_eval import datasets
from carecall_eval.report import render as rr

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_notebooks_are_the_reviewed_sources():
    for name in ("quarterly_report", "compare", "research_walkthrough"):
        assert rr.notebook_path(name).read_bytes() == (ROOT / "notebooks" / f"{name}.py").read_bytes()
    with pytest.raises(rr.ReportError, match="no notebook 'nope'.*available: compare, quarterly_report"):
        rr.notebook_path("nope")


def test_missing_notebook_fails_before_any_figure_is_computed(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the data were opened before the notebook was found")

    monkeypatch.setattr("carecall_eval.contract.open_dataset", boom)
    with pytest.raises(rr.ReportError, match="not found"):
        rr.render_report(datasets.sample_path(), "2025Q4", "unused", notebook="no/such/notebook.py", progress=False)


def test_missing_kernel_falls_back_to_this_interpreter(monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setattr(rr, "_has_kernel", lambda name: False)
    said = []
    with rr.kernel(None, said.append) as name:
        spec = KernelSpecManager().get_kernel_spec(name)
        assert spec.argv[:3] == [sys.executable, "-m", "ipykernel_launcher"]
    assert len(said) == 1 and "not registered" in said[0] and sys.executable in said[0]
    with pytest.raises(Exception, match="No such kernel"):   # the spec lived only for the block
        KernelSpecManager().get_kernel_spec(name)


def test_a_kernel_named_explicitly_must_exist():
    with pytest.raises(rr.ReportError, match="'no-such-kernel' is not registered"):
        with rr.kernel("no-such-kernel"):
            pass


def test_template_is_package_data():
    assert "lab/index.html.j2" in rr._template()


def test_sample_ships_with_its_truth():
    p = datasets.sample_path()
    assert (p / "operator.toml").is_file() and (p / "activity.parquet").is_file()
    t = datasets.sample_truth()
    assert t["params"]["customers"] == datasets.SAMPLE_CUSTOMERS and t["params"]["seed"] == datasets.SAMPLE_SEED


def test_conventional_files_and_metadata():
    for name in ("LICENSE", "CHANGELOG.md", "CITATION.cff", "CONTRIBUTING.md", "SECURITY.md",
                 "carecall_eval/py.typed"):
        assert (ROOT / name).is_file(), name
    assert "data protection" in (ROOT / "SECURITY.md").read_text().lower()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(project["urls"])
    assert {"report", "docs", "test", "lint", "spark"} <= set(project["optional-dependencies"])
