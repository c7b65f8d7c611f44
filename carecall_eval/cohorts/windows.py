"""Per-customer totals in windows relative to an index date, computed in DuckDB.

This is the one implementation of "spending in days a..b around the index":
baseline covariates (pre windows) and outcomes (post windows) both call
:func:`window_totals`.  Activity never leaves DuckDB; only one row per
(cohort row) comes back to pandas.
"""
from __future__ import annotations

import itertools
from typing import Mapping

import numpy as np
import pandas as pd

#: Spending measures available for every window.
MEASURES = ("tl", "net_loss", "wagered", "active_days", "deposits")

_counter = itertools.count()


def _register_keys(con, keys: pd.DataFrame) -> str:
    missing = {"row_id", "customer_id", "index_date"} - set(keys.columns)
    if missing:
        raise ValueError(f"window keys lack columns {sorted(missing)}")
    name = f"_keys_{next(_counter)}"
    k = keys[["row_id", "customer_id", "index_date"]].copy()
    k["index_date"] = pd.to_datetime(k["index_date"]).dt.date
    con.register(name, k)
    return name


def window_totals(dataset, keys: pd.DataFrame, windows: Mapping[str, tuple[int, int]]) -> pd.DataFrame:
    """Sum play in day windows around each key's index date.

    Parameters
    ----------
    dataset : carecall_eval.contract.Dataset
        Loaded data (its DuckDB connection has the ``activity``, ``products``
        and optional ``deposits`` views).
    keys : pandas.DataFrame
        Columns ``row_id`` (unique int), ``customer_id``, ``index_date``.
    windows : mapping of name -> (first_day, last_day)
        Day offsets relative to the index, inclusive (day 0 is the index day);
        e.g. ``{"pre": (-84, -1), "post84": (0, 83)}``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``row_id`` (same order as ``keys``), with columns
        ``{measure}_{window}`` for each measure in :data:`MEASURES`
        (``tl`` = theoretical loss); zeros where there was no play.
        ``deposits_*`` is NaN when the data have no deposits table.
    """
    if not windows:
        raise ValueError("window_totals: give at least one window")
    for name, (a, b) in windows.items():
        if a > b:
            raise ValueError(f"window {name!r}: first day {a} is after last day {b}")
    con = dataset.con
    kname = _register_keys(con, keys)
    lo = min(a for a, _ in windows.values())
    hi = max(b for _, b in windows.values())
    try:
        aggs = []
        for name, (a, b) in windows.items():
            f = f"FILTER (WHERE off BETWEEN {int(a)} AND {int(b)})"
            aggs += [f"COALESCE(SUM(tl) {f}, 0) AS tl_{name}",
                     f"COALESCE(SUM(net_loss) {f}, 0) AS net_loss_{name}",
                     f"COALESCE(SUM(wagered) {f}, 0) AS wagered_{name}",
                     f"COUNT(*) {f} AS active_days_{name}"]
        sql = f"""
        WITH k AS (SELECT row_id, customer_id, index_date FROM {kname}),
        d AS (
            SELECT a.customer_id, a.date,
                   SUM(a.wagered) AS wagered,
                   SUM(a.wagered - a.won) AS net_loss,
                   SUM(a.wagered * (1 - p.payback)) AS tl
            FROM activity a JOIN products p ON a.product = p.product
            WHERE a.customer_id IN (SELECT DISTINCT customer_id FROM k)
            GROUP BY a.customer_id, a.date),
        j AS (
            SELECT k.row_id, date_diff('day', k.index_date, d.date) AS off, d.tl, d.net_loss, d.wagered
            FROM k JOIN d ON d.customer_id = k.customer_id
            WHERE d.date BETWEEN k.index_date + {int(lo)} AND k.index_date + {int(hi)})
        SELECT row_id, {", ".join(aggs)} FROM j GROUP BY row_id
        """
        out = con.execute(sql).df().set_index("row_id")
        if dataset.has("deposits"):
            daggs = [f"COALESCE(SUM(amount) FILTER (WHERE off BETWEEN {int(a)} AND {int(b)}), 0) AS deposits_{n}"
                     for n, (a, b) in windows.items()]
            dsql = f"""
            WITH k AS (SELECT row_id, customer_id, index_date FROM {kname})
            SELECT k.row_id, {", ".join(daggs)} FROM (
                SELECT k.row_id, date_diff('day', k.index_date, x.date) AS off, x.amount
                FROM k JOIN deposits x ON x.customer_id = k.customer_id
                WHERE x.date BETWEEN k.index_date + {int(lo)} AND k.index_date + {int(hi)}) k
            GROUP BY k.row_id
            """
            dep = con.execute(dsql).df().set_index("row_id")
        else:
            dep = None
    finally:
        con.unregister(kname)
    cols = [f"{m}_{n}" for n in windows for m in ("tl", "net_loss", "wagered", "active_days")]
    res = out.reindex(keys["row_id"].to_numpy())[cols].fillna(0.0)
    for n in windows:
        res[f"active_days_{n}"] = res[f"active_days_{n}"].astype("int64")
        if dep is not None:
            res[f"deposits_{n}"] = dep.reindex(res.index)[f"deposits_{n}"].fillna(0.0).to_numpy()
        else:
            res[f"deposits_{n}"] = np.nan
    res.index.name = "row_id"
    # DuckDB sums floats in parallel, so the last bits can differ run to run; amounts are currency with
    # two decimals, so rounding to 1e-6 makes the totals (and every estimate downstream) reproducible
    num = [c for c in res.columns if not c.startswith("active_days_")]
    res[num] = res[num].round(6)
    return res


def product_shares(dataset, keys: pd.DataFrame, first_day: int, last_day: int) -> pd.DataFrame:
    """Share of amount wagered per product in a window (rows sum to 1, or 0 with no play).

    Returns a frame indexed by ``row_id`` with one ``share_{product}`` column per
    product in the products table.
    """
    con = dataset.con
    kname = _register_keys(con, keys)
    try:
        sql = f"""
        WITH k AS (SELECT row_id, customer_id, index_date FROM {kname})
        SELECT k.row_id, a.product, SUM(a.wagered) AS w
        FROM k JOIN activity a ON a.customer_id = k.customer_id
        WHERE a.date BETWEEN k.index_date + {int(first_day)} AND k.index_date + {int(last_day)}
        GROUP BY k.row_id, a.product
        """
        long = con.execute(sql).df()
        products = con.execute("SELECT product FROM products ORDER BY product").df()["product"].tolist()
    finally:
        con.unregister(kname)
    wide = long.pivot_table(index="row_id", columns="product", values="w", aggfunc="sum", fill_value=0.0)
    wide = wide.reindex(columns=products, fill_value=0.0)
    tot = wide.sum(axis=1)
    shares = wide.div(tot.where(tot > 0), axis=0).fillna(0.0)
    shares = shares.round(12)
    shares.columns = [f"share_{p}" for p in shares.columns]
    return shares.reindex(keys["row_id"].to_numpy(), fill_value=0.0).rename_axis("row_id")


def weekly_series(dataset, keys: pd.DataFrame, first_week: int = -26, last_week: int = 52) -> pd.DataFrame:
    """Theoretical loss per key and event-time week (week 0 = days 0..6).

    Returns long data: ``row_id``, ``week``, ``tl`` with zeros for weeks without
    play (so means over keys are means over customers).
    """
    con = dataset.con
    kname = _register_keys(con, keys)
    lo, hi = 7 * first_week, 7 * (last_week + 1) - 1
    try:
        sql = f"""
        WITH k AS (SELECT row_id, customer_id, index_date FROM {kname})
        SELECT k.row_id, CAST(floor(date_diff('day', k.index_date, a.date) / 7.0) AS INTEGER) AS week,
               SUM(a.wagered * (1 - p.payback)) AS tl
        FROM k JOIN activity a ON a.customer_id = k.customer_id JOIN products p ON a.product = p.product
        WHERE a.date BETWEEN k.index_date + {lo} AND k.index_date + {hi}
        GROUP BY k.row_id, week
        """
        long = con.execute(sql).df()
    finally:
        con.unregister(kname)
    full = pd.MultiIndex.from_product([keys["row_id"].to_numpy(), np.arange(first_week, last_week + 1)],
                                      names=["row_id", "week"])
    long["tl"] = long["tl"].round(6)
    return long.set_index(["row_id", "week"])["tl"].reindex(full, fill_value=0.0).reset_index()
