"""Calendar quarters, defined once: labels of dates, parsing, first and last days, earlier quarters.

Every quarter the toolkit shows (the reach and call-length rows by quarter,
the report's quarter, an export's index period, a cohort's ``index_quarter``)
comes from here, so a label always means the same three months.

>>> parse_quarter("2025-Q3")
Quarter(year=2025, q=3)
>>> q = Quarter(2025, 1)
>>> q.label, str(q.start), str(q.end), q.shift(-1).label
('2025Q1', '2025-01-01', '2025-03-31', '2024Q4')
>>> [x.label for x in q.previous(2)]
['2024Q3', '2024Q4', '2025Q1']
>>> quarter_of(["2025-02-14", None, "2024-12-31"]).tolist()
['2025Q1', nan, '2024Q4']
>>> Quarter.containing("2025-08-01").label
'2025Q3'
>>> parse_quarter("2025Q5")
Traceback (most recent call last):
...
carecall_eval.errors.InputError: quarter number must be 1 to 4, got 5 in '2025Q5'; write the quarter as YEAR then Q1-Q4, e.g. 2025Q3
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass
from numbers import Integral

from .errors import InputError

__all__ = ["Quarter", "parse_quarter", "quarter_of", "last_complete_quarter"]

_QUARTER_RE = re.compile(r"^\s*(\d{4})\s*[-_ ]?\s*[Qq]\s*(\d+)\s*$")
_FORM = "write the quarter as YEAR then Q1-Q4, e.g. 2025Q3"


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return isinstance(value, float) and math.isnan(value)


@dataclass(frozen=True, order=True)
class Quarter:
    """A calendar quarter.

    Attributes
    ----------
    year : int
    q : int
        1 to 4.

    Examples
    --------
    >>> Quarter(2025, 3).label, str(Quarter(2025, 3).start), str(Quarter(2025, 3).end)
    ('2025Q3', '2025-07-01', '2025-09-30')
    >>> Quarter(2025, 1).shift(-1).label
    '2024Q4'
    """

    year: int
    q: int

    def __post_init__(self) -> None:
        for name, v in (("year", self.year), ("quarter number", self.q)):
            if isinstance(v, bool) or not isinstance(v, Integral):
                raise TypeError(f"{name} must be a whole number, got {v!r}")
        if not 1 <= self.q <= 4:
            raise InputError(f"quarter number must be 1 to 4, got {self.q!r}")
        object.__setattr__(self, "year", int(self.year))
        object.__setattr__(self, "q", int(self.q))

    @classmethod
    def containing(cls, date, what: str = "the date") -> "Quarter":
        """The quarter a date falls in; a missing date (None, NaT, NaN) is a ValueError saying so."""
        if _is_missing(date):
            raise InputError(f"there are no dates to take a quarter of: {what} is missing")
        import pandas as pd

        ts = pd.Timestamp(date)
        return cls(int(ts.year), (int(ts.month) - 1) // 3 + 1)

    @property
    def label(self) -> str:
        return f"{self.year}Q{self.q}"

    def __str__(self) -> str:
        return self.label

    @property
    def start(self) -> _dt.date:
        """First day of the quarter."""
        return _dt.date(self.year, 3 * self.q - 2, 1)

    @property
    def end(self) -> _dt.date:
        """Last day of the quarter."""
        return self.shift(1).start - _dt.timedelta(days=1)

    def shift(self, n: int) -> "Quarter":
        """The quarter ``n`` quarters later (earlier when negative)."""
        k = self.year * 4 + (self.q - 1) + int(n)
        return Quarter(k // 4, k % 4 + 1)

    def previous(self, n: int) -> list["Quarter"]:
        """This quarter and the ``n`` before it, oldest first."""
        return [self.shift(-k) for k in range(n, -1, -1)]


def parse_quarter(value) -> Quarter:
    """Parse ``"2025Q3"`` (also ``"2025-Q3"``, ``"2025 q3"``) into a :class:`Quarter`.

    ``"latest"`` is not a quarter: the caller resolves it (the report takes
    :func:`last_complete_quarter` of the data).

    Raises
    ------
    ValueError
        Saying what is wrong and the expected form, when ``value`` is not a quarter.

    Examples
    --------
    >>> parse_quarter("2025-q3")
    Quarter(year=2025, q=3)
    """
    if isinstance(value, Quarter):
        return value
    if _is_missing(value):
        raise InputError(f"no quarter given (got {value!r}); {_FORM}")
    text = str(value)
    if text.strip().lower() == "latest":
        raise InputError("'latest' is not a quarter itself: resolve it to the last complete quarter of the data "
                         f"(carecall_eval.calendar.last_complete_quarter) or {_FORM}")
    m = _QUARTER_RE.match(text)
    if not m:
        raise InputError(f"quarter {value!r} is not a calendar quarter; {_FORM}")
    number = int(m.group(2))
    if not 1 <= number <= 4:
        raise InputError(f"quarter number must be 1 to 4, got {number} in {value!r}; {_FORM}")
    return Quarter(int(m.group(1)), number)


def quarter_of(dates):
    """Quarter labels (``"2025Q3"``) of dates, vectorised: a pandas Series; missing dates stay missing.

    A Series keeps its index; anything else (a list, an array, an Index) gets a default index.
    """
    import numpy as np
    import pandas as pd

    s = dates if isinstance(dates, pd.Series) else pd.Series(dates)
    if s.dtype != "datetime64[ns]":
        s = pd.to_datetime(s)
    # one label per distinct quarter, then looked up (a string per row is slow at millions of rows)
    ok = s.notna().to_numpy()
    code = np.where(ok, s.dt.year.fillna(0).to_numpy(int) * 4 + s.dt.quarter.fillna(1).to_numpy(int) - 1, -1)
    uniq, inv = np.unique(code, return_inverse=True)
    labels = np.array([f"{u // 4}Q{u % 4 + 1}" if u >= 0 else np.nan for u in uniq], dtype=object)
    return pd.Series(labels[inv], index=s.index, dtype=object, name=s.name)


def last_complete_quarter(data_end, what: str = "the data end") -> Quarter:
    """The last quarter whose every day is on or before ``data_end``.

    >>> last_complete_quarter("2025-12-31").label, last_complete_quarter("2025-12-30").label
    ('2025Q4', '2025Q3')
    """
    q = Quarter.containing(data_end, what)
    import pandas as pd

    return q if pd.Timestamp(data_end).date() >= q.end else q.shift(-1)
