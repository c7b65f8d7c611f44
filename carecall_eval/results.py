"""The one result protocol, and the shared result type.

Every object a person or a report reads (an estimator's :class:`Result`, a
matching result, a cohort, an evaluation, a validation report, a comparison)
follows :class:`Reporting`:

``summary``
    a tidy DataFrame property whose first columns are :data:`SUMMARY_COLUMNS`
    (``se`` is filled wherever an interval comes from a standard error);
``text``
    plain-language findings (a property), written by :mod:`carecall_eval.narrative`
    from the result and its level, never by hand;
``metric(metric, group=None, **where)``
    the one summary row asked for (ambiguities resolved by the result's own
    ``settings``, for example the headline ``window``);
``settings``
    how it was made (method, level, horizon, windows, seed, package version),
    JSON-serialisable;
``to_dict()``, ``print_summary()``, ``_repr_html_()``, a short ``__repr__`` and
``get_plot_data()``.

Plotting functions in :mod:`carecall_eval.plotting` draw a result's plot data
and never compute statistics of their own.

>>> r = Result("demo", tidy([{"metric": "demo.share", "group": "all", "estimate": 0.5, "ci_low": 0.4,
...                           "ci_high": 0.6, "n": 100, "method": "Wilson"}]), settings={"level": 0.9})
>>> float(r.metric("demo.share")["estimate"])
0.5
>>> r
<Result demo: 1 row, level 90%>
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from ._version import __version__

#: Columns of every tidy summary, in order.
SUMMARY_COLUMNS = ["metric", "group", "estimate", "se", "ci_low", "ci_high", "n", "method"]

__all__ = ["SUMMARY_COLUMNS", "Reporting", "Result", "tidy", "jsonable", "not_available"]


def tidy(rows: list[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Build a tidy summary frame with exactly :data:`SUMMARY_COLUMNS` first.

    Missing fields become NaN; extra keys are kept as further columns.
    """
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    for col in SUMMARY_COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    extra = [c for c in df.columns if c not in SUMMARY_COLUMNS]
    df = df[SUMMARY_COLUMNS + extra]
    for col in ("estimate", "se", "ci_low", "ci_high"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["n"] = pd.to_numeric(df["n"], errors="coerce").astype("Int64")
    return df.reset_index(drop=True)


def not_available(row: Mapping[str, Any], reason: str) -> dict:
    """A summary row whose figure nobody could observe: estimate and interval missing, ``note`` says why."""
    out = dict(row)
    out.update({"estimate": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                "note": f"not available: {reason}"})
    return out


def jsonable(v: Any) -> Any:
    """The one JSON sanitiser: numpy scalars to Python, NaN/NA/inf to None, floats rounded to 10 places.

    Containers (dict, list, tuple) are converted recursively; timestamps become ISO strings.

    >>> jsonable({"a": np.float64("nan"), "b": [np.int64(3), 0.1 + 0.2]})
    {'a': None, 'b': [3, 0.3]}
    """
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        seq = sorted(v, key=str) if isinstance(v, (set, frozenset)) else v
        return [jsonable(x) for x in seq]
    if isinstance(v, np.ndarray):
        return [jsonable(x) for x in v.tolist()]
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return None if not math.isfinite(f) else round(f, 10)
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        return str(pd.Timestamp(v).isoformat())
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


class Reporting:
    """The protocol every result a person or a report reads follows (a mixin).

    Subclasses provide ``summary`` (a tidy DataFrame), ``text`` and ``settings``
    (properties or dataclass fields) and optionally ``_plot_data()``; everything
    else is derived here once.
    """

    name: str

    # -- provided by each class (properties or dataclass fields) -------------------------------------
    if TYPE_CHECKING:  # declared for the type checker only: subclasses give fields or properties
        @property
        def summary(self) -> pd.DataFrame: ...     # tidy DataFrame, SUMMARY_COLUMNS first

        @property
        def text(self) -> str: ...                  # plain-language findings

        @property
        def settings(self) -> dict: ...             # how it was made (JSON-serialisable)

    def _plot_data(self) -> dict:
        return {}

    # -- derived -------------------------------------------------------------------------------------
    def get_plot_data(self, key: str | None = None):
        """The data behind this result's plots: a dict of DataFrames, or the one entry ``key``."""
        data = self._plot_data()
        if key is None:
            return dict(data)
        try:
            return data[key]
        except KeyError:
            raise KeyError(f"{self.name} result has no plot data {key!r}; available: {sorted(data)}") from None

    def metric(self, metric: str, group: str | None = None, **where) -> pd.Series:
        """The one summary row of ``metric`` (and ``group``, and any column given in ``where``).

        When several rows remain (one per window, say), columns that the
        result's ``settings`` fix (the headline ``window``, ``horizon``,
        ``outcome``) pick the headline row; otherwise a KeyError lists what
        to pass.
        """
        s = self.summary
        rows = s[s["metric"] == metric]
        if rows.empty:
            known = sorted(s["metric"].dropna().unique().tolist())
            raise KeyError(f"{self.name} result has no metric {metric!r}; available: {known}")
        if group is not None:
            rows = rows[rows["group"] == group]
        for k, v in where.items():
            if k not in s.columns:
                raise KeyError(f"{self.name} result's summary has no column {k!r}; columns: {list(s.columns)}")
            rows = rows[rows[k] == v]
        if len(rows) > 1:
            settings = self.settings
            for col in [c for c in rows.columns if c not in SUMMARY_COLUMNS and c not in where]:
                if col in settings and rows[col].nunique(dropna=False) > 1 and np.isscalar(settings[col]):
                    rows = rows[rows[col] == settings[col]]
        if len(rows) != 1:
            varying = {c: sorted(map(str, rows[c].dropna().unique())) for c in rows.columns
                       if c not in ("estimate", "se", "ci_low", "ci_high", "n", "method", "note")
                       and rows[c].nunique(dropna=True) > 1}
            hint = f"; rows differ in {varying}: pass group= or one of these as a keyword" if varying else ""
            raise KeyError(f"{self.name} result has {len(rows)} rows for metric={metric!r}, group={group!r}"
                           f"{', ' + str(where) if where else ''}{hint}")
        return rows.iloc[0]

    def to_dict(self) -> dict:
        """JSON-ready form: name, settings, text and the summary rows (NaN as None)."""
        return {"name": self.name, "settings": jsonable(self.settings), "text": self.text,
                "summary": [jsonable(r) for r in self.summary.to_dict(orient="records")]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    def print_summary(self, digits: int = 3) -> None:
        """Print the text and the summary table (rounded to ``digits``)."""
        print(self.text)
        print()
        with pd.option_context("display.max_rows", 200, "display.width", 160):
            print(self.summary.round(digits).to_string(index=False))

    def _repr_html_(self) -> str:
        table = self.summary.round(4).to_html(index=False, na_rep="", border=0)
        return (f"<div><p><b>{html.escape(self.name)}</b> ({html.escape(self._level_str())})</p>"
                f"<p>{html.escape(self.text)}</p>{table}</div>")

    def _level_str(self) -> str:
        lvl = self.settings.get("level") if isinstance(self.settings, Mapping) else None
        if lvl is None:
            return "no intervals"
        from ._validation import level_label

        return f"level {level_label(lvl)}"

    def __repr__(self) -> str:
        n = len(self.summary)
        return f"<{type(self).__name__} {self.name}: {n} row{'s' if n != 1 else ''}, {self._level_str()}>"


@dataclass(frozen=True, repr=False)
class Result(Reporting):
    """Outcome of one estimator.

    Parameters
    ----------
    name : str
        Short name of the estimator (``"spending"``, ``"reach"`` ...).
    summary : pandas.DataFrame
        Tidy rows, :data:`SUMMARY_COLUMNS` first (plus optional extras such as
        ``window``, ``horizon`` or ``note``).
    text : str
        Plain-language findings, from :mod:`carecall_eval.narrative`.
    settings : dict
        How the result was made: method, estimand, level, windows, seed,
        package version.  Always JSON-serialisable.
    plot_data : dict
        DataFrames a plotting function needs; see :meth:`get_plot_data`.
    details : dict
        Fitted models and intermediate tables for researchers (never exported).
    """

    name: str
    summary: pd.DataFrame
    text: str = ""
    settings: dict = field(default_factory=dict)
    plot_data: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in SUMMARY_COLUMNS if c not in self.summary.columns]
        if missing:
            object.__setattr__(self, "summary", tidy(self.summary))
        self.settings.setdefault("package_version", __version__)

    def _plot_data(self) -> dict:
        return self.plot_data
