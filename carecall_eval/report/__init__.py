"""Reports for people: quarterly notebook reports rendered to self-contained HTML.

``render_report(data, quarter, out)`` executes ``notebooks/quarterly_report.py``
with papermill and writes ``out/<operator>/<quarter>/report.html`` with
``metrics.json`` and ``metrics.csv``; ``build_quarterly`` computes the numbers
behind it without a kernel.
"""
from .context import QuarterlyReport, build_quarterly, effect_cohort_period
from .quarters import Quarter, kpi_table, parse_quarter, quarter_kpis
from .render import KERNEL_NAME, RenderedReport, ReportError, render_report

__all__ = ["render_report", "RenderedReport", "ReportError", "KERNEL_NAME", "build_quarterly", "QuarterlyReport",
           "effect_cohort_period", "Quarter", "parse_quarter", "quarter_kpis", "kpi_table"]
