"""Output helpers for report notebooks: deterministic figures, plain HTML tables, Markdown.

Figures are drawn with the Agg backend at a fixed size and dpi and saved as PNG
without a date or software stamp, so the same numbers give the same bytes; they
are embedded in the page as ``data:`` URIs (no external file, no URL).
Tables are rendered with :meth:`pandas.DataFrame.to_html` (no random ids).
"""
from __future__ import annotations

import base64
import html
import io
import math
import random

import numpy as np
import pandas as pd

__all__ = ["setup", "figure", "show_figure", "show_table", "show_markdown", "pct", "pts", "num", "ci_pct",
           "duration", "suppress", "pts_ci", "flow_table", "censoring_table"]

#: dpi of every report figure.
DPI = 100


def setup(seed: int = 20240101) -> None:
    """Make the notebook deterministic: Agg backend, fixed matplotlib settings, seeded RNGs."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams.update({
        "svg.hashsalt": "carecall_eval",
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "font.family": "DejaVu Sans",
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.max_open_warning": 0,
    })
    random.seed(seed)
    np.random.seed(seed)  # legacy global RNG, for any third-party code that uses it
    pd.set_option("display.max_columns", 50)


def figure(width: float = 8.0, height: float = 4.0, ncols: int = 1):
    """A new figure and its axes (one or ``ncols`` side by side)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, ncols, figsize=(width, height))
    return fig, ax


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes: fixed dpi, no metadata that changes between runs."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def figure_html(fig, alt: str, caption: str | None = None) -> str:
    """An HTML ``<figure>`` with the PNG embedded as a data URI."""
    import matplotlib.pyplot as plt

    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    plt.close(fig)
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f'<figure class="report-figure"><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"{cap}</figure>")


def show_figure(fig, alt: str, caption: str | None = None) -> None:
    """Display a figure in the notebook (and the HTML export) and close it."""
    from IPython.display import HTML, display

    display(HTML(figure_html(fig, alt, caption)))


def table_html(df: pd.DataFrame, *, index: bool = True, caption: str | None = None) -> str:
    out = df.to_html(index=index, border=0, classes="report-table", na_rep="-", escape=True)
    if caption:
        out = out.replace('<table border="0" class="dataframe report-table">',
                          f'<table class="report-table"><caption>{html.escape(caption)}</caption>', 1)
    return out.replace('<table border="0" class="dataframe report-table">', '<table class="report-table">')


def show_table(df: pd.DataFrame, *, index: bool = True, caption: str | None = None) -> None:
    """Display a (pre-formatted) table as plain HTML."""
    from IPython.display import HTML, display

    display(HTML(table_html(df, index=index, caption=caption)))


def show_markdown(text: str) -> None:
    from IPython.display import Markdown, display

    display(Markdown(text))


def _ok(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and not pd.isna(x)


def pct(x, digits: int = 1, signed: bool = False) -> str:
    """0.123 -> '12.3%' (signed: '+12.3%'); missing -> '-'."""
    if not _ok(x):
        return "-"
    return f"{100 * x:+.{digits}f}%" if signed else f"{100 * x:.{digits}f}%"


def pts(x, digits: int = 1) -> str:
    """Difference of shares in percentage points: 0.05 -> '+5.0 pp'."""
    return "-" if not _ok(x) else f"{100 * x:+.{digits}f} pp"


def pts_ci(lo, hi, digits: int = 1) -> str:
    """Interval of a difference of shares in percentage points; '-' when either end is missing."""
    return "-" if not (_ok(lo) and _ok(hi)) else f"{pts(lo, digits)} to {pts(hi, digits)}"


def ci_pct(lo, hi, digits: int = 1, signed: bool = True) -> str:
    if not (_ok(lo) and _ok(hi)):
        return "-"
    return f"{pct(lo, digits, signed)} to {pct(hi, digits, signed)}"


def num(x, digits: int = 0) -> str:
    return "-" if not _ok(x) else f"{x:,.{digits}f}"


def duration(seconds) -> str:
    """Seconds -> 'm:ss'."""
    if not _ok(seconds):
        return "-"
    s = int(round(float(seconds)))
    return f"{s // 60}:{s % 60:02d}"


def suppress(n, threshold: int) -> str:
    """A count for a shared table: 1 to threshold-1 become '<threshold'; a count the report's suppression
    withheld (missing after :meth:`QuarterlyReport.for_people`) reads 'withheld'."""
    if not _ok(n):
        return "withheld"
    n = int(n)
    return f"<{threshold}" if 0 < n < threshold else f"{n:,}"


def flow_table(flow: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """The cohort flow for people (:func:`carecall_eval.report.people.flow_table`: the bundle's rules)."""
    from .people import flow_table as _flow_table

    return _flow_table(flow, threshold)


def censoring_table(cohort_table: pd.DataFrame, windows, threshold: int) -> pd.DataFrame:
    """Complete and censored follow-up for people (:func:`carecall_eval.report.people.censoring_table`)."""
    from .people import censoring_table as _censoring_table

    return _censoring_table(cohort_table, windows, threshold)
