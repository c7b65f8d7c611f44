"""The case table of reach: one row per phone case (reached? after how many attempts? after the SMS?).

:func:`case_reach` is what every reach figure counts (the SMS estimator, the
answer rates, the quarterly report's KPIs); :func:`phone_tables` gives the
phone cases of the chosen arms and their attempts, numbered up to the first
answered one.  The operator's SMS rule (window, policy start) comes from
``operator.toml`` unless an argument overrides it.
"""
from __future__ import annotations

import datetime as _dt
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ...calendar import quarter_of
from ...contract.base import open_data
from ...errors import InputError
from .._dates import as_datetime, as_datetime_ns

__all__ = ["PHONE_ARMS", "case_reach", "reach_tables", "phone_tables", "resolve_policy", "sms_rule"]

#: Arms whose phone cases count for reach by default: ordinary cases (arm null)
#: and the call arm of a randomized study.
PHONE_ARMS: tuple = (None, "call")


def sms_rule(ds, sms_after_attempts=None, sms_window_hours=None) -> tuple[int, float]:
    """The operator's SMS rule: arguments given win, else ``ds.config`` (operator.toml), else the defaults."""
    from ...contract.config import DEFAULT_SMS_AFTER_ATTEMPTS, DEFAULT_SMS_WINDOW_HOURS

    cfg = getattr(ds, "config", None)
    if sms_after_attempts is None:
        sms_after_attempts = getattr(cfg, "sms_after_attempts", DEFAULT_SMS_AFTER_ATTEMPTS)
    if sms_window_hours is None:
        sms_window_hours = getattr(cfg, "sms_window_hours", DEFAULT_SMS_WINDOW_HOURS)
    return sms_after_attempts, sms_window_hours


def resolve_policy(ds, policy_start) -> pd.Timestamp | None:
    """The SMS policy's start date: the argument, else ``ds.config.sms_policy_start``; None when there is none."""
    if policy_start is None:
        cfg = getattr(ds, "config", None)
        policy_start = getattr(cfg, "sms_policy_start", None) if cfg is not None else None
    if policy_start is None:
        return None
    if isinstance(policy_start, (str, _dt.date, pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(policy_start)
        if pd.isna(ts):
            raise InputError("policy_start is missing (NaT); pass a date, or None to read operator.toml")
        return ts.normalize()
    raise InputError(f"policy_start must be a date (or None to read operator.toml), got {policy_start!r}")


def _arm_mask(arm: pd.Series, arms: Iterable) -> pd.Series:
    arms = tuple(arms)
    named = [a for a in arms if a is not None]
    mask = arm.isin(named)
    if any(a is None for a in arms):
        mask |= arm.isna()
    return mask


def _week_start(s: pd.Series) -> pd.Series:
    s = as_datetime(s).dt.normalize()
    return s - pd.to_timedelta(s.dt.weekday, unit="D")


#: Tables the case table is read from (a memo entry is valid while the dataset holds the same reads of them).
_SOURCES = ("call_cases", "call_attempts", "sms")


def _memoized(ds, key: tuple, compute) -> tuple:
    """``compute()`` once per dataset and ``key``; copies of its frames are returned.

    A dataset's small tables are read once and handed out as copies (:meth:`TablesBase.table`), so what is
    computed from them stays valid while the dataset holds the same reads: an entry remembers them and is
    dropped when they change (``close()``).  The SMS estimator, the case-speed and timing analyses and the
    quarterly report all start from the same case table; at a million customers it takes seconds.
    """
    from ...contract.tables import TablesBase

    if not isinstance(ds, TablesBase) or type(ds).table is not TablesBase.table:
        return compute()           # only datasets whose tables are one cached read each
    frames, store = ds._frames, ds.__dict__
    try:
        hash(key)
    except TypeError:              # arms that are not hashable: computed each time
        return compute()
    memo = store.setdefault("_reach_memo", {})
    current = tuple(frames.get(n) for n in _SOURCES)
    hit = memo.get(key)
    if hit is None or not all(a is b for a, b in zip(hit[0], current)):
        out = compute()
        memo[key] = hit = (tuple(frames.get(n) for n in _SOURCES), out)
    return tuple(f.copy() for f in hit[1])


def _renumbered(df: pd.DataFrame) -> pd.DataFrame:
    """``df.reset_index(drop=True)`` of a frame just made by a selection (its index relabelled in place, no copy)."""
    df.index = pd.RangeIndex(len(df))
    return df


def phone_tables(ds, arms) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Phone cases (of the chosen arms) with at least one attempt, and their attempts.

    Attempts are numbered 1, 2, ... by time within the case (``attempt_no``);
    attempts after the first answered one are dropped (a case is reached once).
    Computed once per dataset and ``arms`` (copies are returned).
    """
    return _memoized(ds, ("phone_tables", tuple(arms)), lambda: _phone_tables(ds, arms))


def _phone_tables(ds, arms) -> tuple[pd.DataFrame, pd.DataFrame]:
    cases = ds.table("call_cases")
    att = ds.table("call_attempts")
    for name, df, cols in (("call_cases", cases, ("case_id", "customer_id", "opened_on", "channel", "arm")),
                           ("call_attempts", att, ("case_id", "attempted_at", "answered"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(f"table {name} lacks columns {missing}; see carecall_eval.contract for the contract")
    if att["answered"].isna().any():
        bad = att.loc[att["answered"].isna(), "case_id"].head(5).tolist()
        raise InputError(f"call_attempts.answered has {int(att['answered'].isna().sum())} missing values "
                         f"(cases {bad} ...); every attempt must be recorded as answered or not")
    if att["attempted_at"].isna().any():
        raise InputError("call_attempts.attempted_at has missing values; every attempt needs its time")
    sel = cases[(cases["channel"] == "phone") & _arm_mask(cases["arm"], arms)]
    att = att[att["case_id"].isin(sel["case_id"])]
    # sorted by case and time (a stable sort: ties keep their order), as sort_values(kind="mergesort") sorts
    code, _ = pd.factorize(att["case_id"], sort=True)
    order = np.lexsort((att["attempted_at"].to_numpy("datetime64[ns]").view("int64"), code))
    att = _renumbered(att.iloc[order])
    att["answered"] = att["answered"].astype(bool)
    code = code[order]
    start = np.r_[True, code[1:] != code[:-1]] if len(code) else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(start, np.arange(len(code)), 0))     # each row's first row of its case
    att["attempt_no"] = np.arange(len(code)) - first + 1
    # keep attempts up to the first answered one: no answered attempt before them in the case
    ans = att["answered"].to_numpy(int)
    run = np.cumsum(ans)
    before = run - ans - (run - ans)[first]
    att = _renumbered(att[before == 0])
    sel = _renumbered(sel[sel["case_id"].isin(att["case_id"]).to_numpy()])
    return sel, att


def case_reach(data, /, *, arms: Sequence = PHONE_ARMS, policy_start=None, sms_window_hours: float | None = None,
               sms_kind: str = "missed_call_followup") -> pd.DataFrame:
    """One row per phone case: was the customer reached, after how many attempts, after an SMS?

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        Loaded data (tables ``call_cases``, ``call_attempts``, ``sms``).
    arms : sequence
        Arms whose phone cases count; ``None`` stands for ordinary (non-study)
        cases.  Default ``(None, "call")``.  Control-arm and letter cases have no
        attempts and are never included.
    policy_start : date, optional
        Start of the missed-call SMS policy; default ``config.sms_policy_start``.
    sms_window_hours : float, optional
        A case counts as ``reached_after_sms`` when it was answered within this
        many hours after its first follow-up SMS; default
        ``config.sms_window_hours`` (operator.toml, 48 when absent).
    sms_kind : str
        The ``sms.kind`` of the missed-call follow-up (other kinds are ignored).

    Returns
    -------
    pandas.DataFrame
        Columns ``case_id, customer_id, opened_on, trigger, arm, quarter``
        (of opening, e.g. ``"2025Q1"``), ``week`` (Monday of the opening
        week), ``post_policy`` (nullable boolean, NA without a policy date),
        ``n_attempts`` (up to the answered one), ``reached``,
        ``attempts_to_reach`` (nullable integer), ``first_attempt_at``,
        ``reached_at``, ``sms_at``, ``sms_sent``, ``reached_after_sms``.

    Notes
    -----
    A case belongs to the policy period when it was *opened* on or after the
    policy start.  Only phone cases with at least one attempt are rows.
    """
    return reach_tables(data, arms=arms, policy_start=policy_start, sms_window_hours=sms_window_hours,
                        sms_kind=sms_kind)[0]


def reach_tables(data, /, *, arms: Sequence = PHONE_ARMS, policy_start=None, sms_window_hours: float | None = None,
                 sms_kind: str = "missed_call_followup") -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`case_reach` and the attempts it counts (:func:`phone_tables`), from one reading of the tables.

    Computed once per dataset and options (copies are returned): every estimator that starts from the case
    table shares it.
    """
    ds = open_data(data, "case_reach")
    _, sms_window_hours = sms_rule(ds, None, sms_window_hours)
    if isinstance(sms_window_hours, bool) or not isinstance(sms_window_hours, (int, float, np.number)) \
            or not 0 < float(sms_window_hours) < np.inf:
        raise InputError(f"sms_window_hours must be a number of hours > 0, got {sms_window_hours!r}")
    policy = resolve_policy(ds, policy_start)
    key = ("reach_tables", tuple(arms), policy, float(sms_window_hours), sms_kind)
    cr, att = _memoized(ds, key, lambda: _reach_tables(ds, arms, policy, sms_window_hours, sms_kind))
    return cr, att


def _reach_tables(ds, arms, policy, sms_window_hours, sms_kind) -> tuple[pd.DataFrame, pd.DataFrame]:
    sel, att = phone_tables(ds, arms)
    # per case, from the runs of phone_tables' attempts (sorted by case, then time; a case's answered attempt,
    # if any, is its last): attempts made, the first, and the answered one
    ids = att["case_id"].to_numpy()
    start = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    last = np.r_[start[1:], len(ids)] - 1
    at = att["attempted_at"].to_numpy()
    hit = att["answered"].to_numpy(bool)[last]
    to_reach = pd.array(att["attempt_no"].to_numpy()[last], dtype="Int64")
    to_reach[~hit] = pd.NA
    per = pd.DataFrame({"n_attempts": last - start + 1, "first_attempt_at": at[start],
                        "reached_at": np.where(hit, at[last], np.datetime64("NaT")).astype(at.dtype),
                        "attempts_to_reach": to_reach})
    out = sel[["case_id", "customer_id", "opened_on"]
              + [c for c in ("trigger", "arm") if c in sel.columns]].copy()
    out["opened_on"] = as_datetime_ns(out["opened_on"])
    out["quarter"] = quarter_of(out["opened_on"])
    out["week"] = _week_start(out["opened_on"])
    if policy is None:
        out["post_policy"] = pd.array([pd.NA] * len(out), dtype="boolean")
    else:
        out["post_policy"] = pd.array(out["opened_on"] >= policy, dtype="boolean")
    out = pd.concat([out, per.take(pd.Index(ids[start]).get_indexer(out["case_id"])).set_axis(out.index)], axis=1)
    out["reached"] = out["reached_at"].notna()
    sms = ds.table("sms") if (not hasattr(ds, "has") or ds.has("sms")) else \
        pd.DataFrame(columns=["case_id", "sent_at", "kind"])
    sms = sms[sms["kind"] == sms_kind]
    first_sms = sms.groupby("case_id")["sent_at"].min()
    out["sms_at"] = as_datetime_ns(out["case_id"].map(first_sms))
    out["sms_sent"] = out["sms_at"].notna()
    lag = out["reached_at"] - out["sms_at"]
    out["reached_after_sms"] = (lag > pd.Timedelta(0)) & (lag <= pd.Timedelta(hours=float(sms_window_hours)))
    cols = ["case_id", "customer_id", "opened_on", "trigger", "arm", "quarter", "week", "post_policy",
            "n_attempts", "reached", "attempts_to_reach", "first_attempt_at", "reached_at", "sms_at",
            "sms_sent", "reached_after_sms"]
    return _renumbered(out[[c for c in cols if c in out.columns]]), att
