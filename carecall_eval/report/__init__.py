"""Reports for people: quarterly notebook reports rendered to self-contained HTML.

``render_report(data, quarter, out)`` executes ``notebooks/quarterly_report.py``
with papermill and writes ``out/<operator>/<quarter>/report.html`` with
``metrics.json`` and ``metrics.csv``; ``build_quarterly`` computes the numbers
behind it without a kernel.

Names are imported on first use (PEP 562), so the CLI registers ``report`` without loading pandas.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "render_report": "render",
    "RenderedReport": "render",
    "ReportError": "render",
    "KERNEL_NAME": "render",
    "build_quarterly": "context",
    "QuarterlyReport": "context",
    "effect_cohort_period": "context",
    "Quarter": "quarters",
    "parse_quarter": "quarters",
    "quarter_kpis": "quarters",
    "kpi_table": "quarters",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
