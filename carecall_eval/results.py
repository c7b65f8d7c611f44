"""The shared result type.

Every estimator in carecall_eval returns a :class:`Result`: a frozen record of
*what was estimated and how* (``params``), a tidy ``summary`` DataFrame with the
fixed columns :data:`SUMMARY_COLUMNS`, a plain-language ``text`` a manager can
read, and the numbers a plot needs (``get_plot_data()``).  Plotting functions in
:mod:`carecall_eval.plotting` take a result's plot data and never compute
statistics of their own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from ._version import __version__

#: Columns of every tidy summary, in order.
SUMMARY_COLUMNS = ["metric", "group", "estimate", "ci_low", "ci_high", "n", "method"]


def tidy(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a tidy summary frame with exactly :data:`SUMMARY_COLUMNS` first.

    Missing fields become NaN; extra keys are kept as further columns.
    """
    df = pd.DataFrame.from_records(list(rows))
    for col in SUMMARY_COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    extra = [c for c in df.columns if c not in SUMMARY_COLUMNS]
    df = df[SUMMARY_COLUMNS + extra]
    for col in ("estimate", "ci_low", "ci_high"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["n"] = pd.to_numeric(df["n"], errors="coerce").astype("Int64")
    return df.reset_index(drop=True)


@dataclass(frozen=True)
class Result:
    """Outcome of one estimator.

    Attributes
    ----------
    name : str
        Short name of the estimator (``"spending"``, ``"reach"`` ...).
    summary : pandas.DataFrame
        Tidy rows with columns :data:`SUMMARY_COLUMNS` (plus optional extras).
    text : str
        Plain-language findings, one or a few sentences.
    params : dict
        How the result was made: method, estimand, windows, seed, package
        version.  Always JSON-serialisable.
    plot_data : dict
        DataFrames a plotting function needs; see :meth:`get_plot_data`.
    details : dict
        Fitted models and intermediate tables for researchers (not exported).
    """

    name: str
    summary: pd.DataFrame
    text: str
    params: dict = field(default_factory=dict)
    plot_data: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in SUMMARY_COLUMNS if c not in self.summary.columns]
        if missing:
            raise ValueError(f"Result {self.name!r}: summary lacks columns {missing}")
        self.params.setdefault("package_version", __version__)

    def get_plot_data(self, key: str | None = None):
        """Return the data behind this result's plots (a dict, or one entry)."""
        if key is None:
            return dict(self.plot_data)
        try:
            return self.plot_data[key]
        except KeyError:
            raise KeyError(
                f"{self.name} result has no plot data {key!r}; available: {sorted(self.plot_data)}"
            ) from None

    def metric(self, metric: str, group: str | None = None) -> pd.Series:
        """Return the one summary row for ``metric`` (and ``group``)."""
        rows = self.summary[self.summary["metric"] == metric]
        if group is not None:
            rows = rows[rows["group"] == group]
        if len(rows) != 1:
            raise KeyError(
                f"{self.name} result has {len(rows)} rows for metric={metric!r}, group={group!r}"
            )
        return rows.iloc[0]

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<Result {self.name}: {len(self.summary)} rows>\n{self.text}"
