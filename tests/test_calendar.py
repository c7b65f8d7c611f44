"""Calendar quarters, defined once: labels against pandas' own periods, parsing and its messages, missing dates."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from carecall_eval.calendar import Quarter, last_complete_quarter, parse_quarter, quarter_of


def test_quarter_labels_match_pandas_periods():
    """Reference: pandas' quarterly Period (``to_period("Q")``) of every day from 2023 to 2026."""
    days = pd.Series(pd.date_range("2023-01-01", "2026-12-31", freq="D"), index=np.arange(1461) * 3)
    labels = quarter_of(days)
    assert labels.index.equals(days.index)
    assert labels.tolist() == days.dt.to_period("Q").astype(str).tolist()
    # timestamps with a time of day, lists and arrays give the same labels
    assert quarter_of(["2025-03-31 23:59:59", "2025-04-01 00:00:00"]).tolist() == ["2025Q1", "2025Q2"]
    assert quarter_of(np.array(["2024-12-31"], dtype="datetime64[ns]")).tolist() == ["2024Q4"]


def test_missing_dates_stay_missing_and_never_say_nan():
    labels = quarter_of(pd.Series([pd.NaT, pd.Timestamp("2025-05-01"), None]))
    assert labels.isna().tolist() == [True, False, True]
    assert quarter_of(pd.Series([pd.NaT, pd.NaT])).isna().all()
    for missing in (pd.NaT, None, float("nan"), np.datetime64("NaT")):
        with pytest.raises(ValueError, match="there are no dates") as e:
            Quarter.containing(missing)
        assert "nan" not in str(e.value).lower()
        with pytest.raises(ValueError, match="there are no dates.*the data end is missing"):
            last_complete_quarter(missing)


@pytest.mark.parametrize("text, expected", [("2025Q3", (2025, 3)), ("2025-Q3", (2025, 3)), ("2025-q1", (2025, 1)),
                                            (" 2024 Q4 ", (2024, 4)), ("2024_Q2", (2024, 2))])
def test_parse_quarter_forms(text, expected):
    assert parse_quarter(text) == Quarter(*expected)
    assert parse_quarter(Quarter(*expected)) == Quarter(*expected)


@pytest.mark.parametrize("bad, says", [
    ("2025Q5", "quarter number must be 1 to 4, got 5 in '2025Q5'"),
    ("2025Q0", "quarter number must be 1 to 4, got 0"),
    ("2025-Q13", "quarter number must be 1 to 4, got 13"),
    ("2025", "is not a calendar quarter"),
    ("Q3 2025", "is not a calendar quarter"),
    ("", "is not a calendar quarter"),
    ("latest", "'latest' is not a quarter itself"),
    (None, "no quarter given"),
    (float("nan"), "no quarter given"),
])
def test_parse_quarter_says_what_is_wrong_and_the_form(bad, says):
    with pytest.raises(ValueError, match="e.g. 2025Q3") as e:
        parse_quarter(bad)
    assert says in str(e.value)


def test_quarter_arithmetic_and_bounds():
    q = Quarter(2025, 1)
    assert q.shift(-1) == Quarter(2024, 4) and q.shift(4) == Quarter(2026, 1) and q.shift(-5) == Quarter(2023, 4)
    assert [x.label for x in q.previous(4)] == ["2024Q1", "2024Q2", "2024Q3", "2024Q4", "2025Q1"]
    for year, n in ((2024, 1), (2024, 2), (2024, 3), (2024, 4), (2023, 1)):
        p = pd.Period(f"{year}Q{n}", freq="Q")
        assert Quarter(year, n).start == p.start_time.date() and Quarter(year, n).end == p.end_time.date()
    assert Quarter.containing(dt.date(2025, 9, 30)) == Quarter(2025, 3)
    with pytest.raises(ValueError, match="quarter number must be 1 to 4, got 5"):
        Quarter(2025, 5)
    with pytest.raises(TypeError, match="whole number"):
        Quarter(2025.0, 1)


def test_last_complete_quarter():
    assert last_complete_quarter("2025-12-31") == Quarter(2025, 4)
    assert last_complete_quarter(pd.Timestamp("2025-12-30")) == Quarter(2025, 3)
    assert last_complete_quarter(dt.date(2025, 4, 1)) == Quarter(2025, 1)
