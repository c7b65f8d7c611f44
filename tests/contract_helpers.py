"""A tiny hand-made dataset in the data contract, and ways to break it.

The valid dataset includes rows real operator data carry and the toolkit must
accept: an SMS of kind "other", a control-arm case with no attempts, a letter
case, an open account (closed_on null), a trigger without a value, an answered
call with no reception recorded, and a self-service rg_event by a customer
never called.
"""
from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Callable

import pandas as pd

D = dt.date
T = dt.datetime

OPERATOR_TOML = 'operator = "Demo Spel"\ncurrency = "SEK"\nsms_policy_start = 2024-02-01\n'


def valid_tables() -> dict[str, pd.DataFrame]:
    """Fresh DataFrames of a small valid dataset (dates as datetime.date)."""
    return {
        "customers": pd.DataFrame({
            "customer_id": ["c1", "c2", "c3", "c4"],
            "operator": ["Demo Spel"] * 4,
            "birth_year": [1970, 1985, 1999, 1960],
            "gender": ["F", "M", "U", "F"],
            "registered_on": [D(2020, 1, 5), D(2021, 3, 1), D(2022, 7, 9), D(2019, 11, 30)],
            "closed_on": [None, D(2024, 3, 1), None, None],
            "segment": ["a", "b", "a", "c"],  # an extra column: allowed and kept
        }),
        "products": pd.DataFrame({
            "product": ["slots", "sports", "lotto"],
            "payback": [0.94, 0.93, 0.5],
        }),
        "activity": pd.DataFrame({
            "customer_id": ["c1", "c1", "c1", "c2", "c2", "c3", "c4", "c4"],
            "date": [D(2024, 1, 1), D(2024, 1, 1), D(2024, 1, 2), D(2024, 1, 1),
                     D(2024, 2, 10), D(2024, 1, 3), D(2024, 1, 31), D(2024, 3, 31)],
            "product": ["slots", "sports", "slots", "lotto", "slots", "sports", "slots", "lotto"],
            "wagered": [100.0, 50.0, 20.0, 10.0, 0.0, 5.5, 300.0, 12.0],
            "won": [80.0, 0.0, 30.0, 0.0, 0.0, 11.0, 250.0, 0.0],
        }),
        "deposits": pd.DataFrame({
            "customer_id": ["c1", "c2", "c4"],
            "date": [D(2024, 1, 1), D(2024, 1, 1), D(2024, 1, 31)],
            "amount": [200.0, 20.0, 500.0],
        }),
        "triggers": pd.DataFrame({
            "customer_id": ["c1", "c2", "c4"],
            "triggered_on": [D(2024, 1, 2), D(2024, 1, 5), D(2024, 2, 1)],
            "trigger": ["high_loss", "red_self_test", "risk_model"],
            "value": [8100.0, None, 0.93],
        }),
        "call_cases": pd.DataFrame({
            "case_id": ["k1", "k2", "k3", "k4"],
            "customer_id": ["c1", "c2", "c4", "c4"],
            "opened_on": [D(2024, 1, 3), D(2024, 1, 6), D(2024, 2, 2), D(2024, 2, 20)],
            "trigger": ["high_loss", "red_self_test", "risk_model", "other"],
            "channel": ["phone", "phone", "letter", "phone"],
            "arm": [None, "control", "letter", "call"],
        }),
        "call_attempts": pd.DataFrame({
            "case_id": ["k1", "k1", "k1", "k4"],
            "attempted_at": [T(2024, 1, 3, 10, 0), T(2024, 1, 4, 14, 30),
                             T(2024, 1, 5, 9, 15), T(2024, 2, 21, 11, 0)],
            "answered": [False, False, True, True],
            "duration_s": [None, None, 372.0, 95.5],
            "agent_id": ["a1", "a1", "a2", None],
            "outcome": [None, None, "limit_set", "no_action"],
            "reception": [None, None, "positive", None],
        }),
        "sms": pd.DataFrame({
            "case_id": ["k1", "k1"],
            "sent_at": [T(2024, 1, 4, 14, 35), T(2024, 1, 20, 12, 0)],
            "kind": ["missed_call_followup", "other"],
        }),
        "rg_events": pd.DataFrame({
            "customer_id": ["c1", "c3"],
            "occurred_on": [D(2024, 1, 5), D(2024, 1, 4)],
            "event": ["limit_set", "self_test_other"],
            "via_call": [True, False],
        }),
    }


def write_dataset(root: Path, tables: dict[str, pd.DataFrame] | None = None, *,
                  fmt: str | dict[str, str] = "parquet",
                  config: str | None = OPERATOR_TOML) -> Path:
    """Write `tables` (default: the valid ones) to directory `root`.

    Parameters
    ----------
    fmt : {"parquet", "csv"} or dict
        Format for every table, or per table (missing tables: parquet).
    config : str or None
        Text of operator.toml; None writes no operator.toml.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tables = valid_tables() if tables is None else tables
    for name, df in tables.items():
        f = fmt if isinstance(fmt, str) else fmt.get(name, "parquet")
        if f == "parquet":
            df.to_parquet(root / f"{name}.parquet", index=False)
        else:
            df.to_csv(root / f"{name}.csv", index=False)
    if config is not None:
        (root / "operator.toml").write_text(config)
    return root


def broken(table: str, change: Callable[[pd.DataFrame], pd.DataFrame | None]
           ) -> dict[str, pd.DataFrame]:
    """Valid tables with `change` applied to a copy of `table`.

    `change` may modify the frame in place (return None) or return a new one.
    """
    tables = valid_tables()
    df = copy.deepcopy(tables[table])
    out = change(df)
    tables[table] = df if out is None else out
    return tables


def set_value(column: str, row: int, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A change that sets one cell (the column becomes object dtype if needed)."""
    def change(df: pd.DataFrame) -> pd.DataFrame:
        values = list(df[column])
        values[row] = value
        df = df.copy()
        df[column] = pd.Series(values, index=df.index,
                               dtype=object if not _same_kind(df[column], value) else None)
        return df
    return change


def _same_kind(series: pd.Series, value) -> bool:
    if value is None:
        return series.dtype == object or series.dtype.kind == "f"
    if isinstance(value, bool):
        return series.dtype == bool
    if isinstance(value, (int, float)):
        return series.dtype.kind in "if"
    return series.dtype == object


def add_row(row: dict) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A change that appends one row."""
    def change(df: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([df, pd.DataFrame([row])], ignore_index=True)
    return change
