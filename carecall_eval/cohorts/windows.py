"""Per-customer aggregates around index dates: the one set-based aggregation layer.

This module is the one implementation of "spending in days a..b around the
index".  Baseline covariates (pre windows), outcomes (post windows), the
event-study series and the retention inputs all call it.  The queries are
written once as `ibis <https://ibis-project.org>`_ expressions, so they run
unchanged on the embedded DuckDB backend (the default, over the Parquet or
CSV files) or on Spark or a warehouse (see :func:`carecall_eval.contract.connect`).
The activity, deposits and rg_events tables never come to pandas; only one
row per key (or per group and week) does.

Sums are exact.  Money is cast to fixed-point decimals before it is summed
(``DECIMAL(18,4)``; theoretical loss per row ``DECIMAL(18,6)``), so totals do
not depend on how many threads or executors added them up, or in what
order, and the same data give bit-identical estimates on every backend.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import os
import time
from typing import Mapping, Sequence

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from . import cache as _cache

#: Spending measures available for every window.
MEASURES = ("tl", "net_loss", "wagered", "active_days", "deposits")

#: Fixed-point types the sums are taken in (exact, order-independent).
MONEY = "decimal(18, 4)"
LOSS = "decimal(18, 6)"
#: Products of weights and weekly totals for the event study (rounded per row, then summed exactly).
MOMENT = "decimal(38, 8)"

#: Days per bitmask block (bits 0..62 of a signed 64-bit integer, so no shift reaches the sign bit).
_BLOCK = 63
#: Slots of the dense mask table of the product-split groups allowed beyond 4 per split group (else sorted).
_DENSE_SLOTS = 1_000_000
#: Rows per record batch when a pass's groups are streamed from the backend.
_BATCH_ROWS = 1_000_000


@ibis.udf.agg.builtin(name="bit_or")
def _bit_or(x: int) -> int:  # noqa: ARG001 - SQL's bit_or aggregate (ibis 12 has no PySpark rule for BitOr)
    """Bitwise OR of a group's values (the SQL aggregate ``bit_or``)."""


@ibis.udf.scalar.builtin(name="bit_count")
def _bit_count(x: int) -> int:  # noqa: ARG001 - DuckDB's and Spark SQL's bit_count
    """Number of set bits (the SQL function ``bit_count``)."""


_RG_FLAGS = {"prior_limit": ("limit_set", "limit_lowered"), "prior_pause": ("pause",),
             "prior_self_exclusion": ("self_exclusion",)}

_LOG: list | None = None


@contextlib.contextmanager
def query_log():
    """Record every aggregation query run inside the block: ``(function, table, keys, seconds)`` tuples.

    One entry per query (``window_aggregates`` runs one over ``activity`` and
    one over ``deposits``); ``seconds`` includes fetching the result.  Used by
    the benchmarks to compare each query with a bare ``GROUP BY`` over its table::

        with query_log() as log:
            evaluate(ds)
    """
    global _LOG
    outer, _LOG = _LOG, []
    try:
        yield _LOG
    finally:
        if outer is not None:
            outer.extend(_LOG)
        _LOG = outer


_CALLS: list = []          # (function, number of keys) of the aggregations running, innermost last


def _logged(fn):
    """Entry point of the layer: names its queries in the log, drops its temporary tables, caches its result.

    The result is looked up first in the on-disk cache of
    :mod:`carecall_eval.cohorts.cache` (keyed by the data's fingerprint, the
    function, its parameters and the content of the keys' columns it reads);
    on a hit no query runs (and none is logged).
    """
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(dataset, keys, *args, **kwargs):
        shared = _shared_answer(fn.__name__, dataset, keys, args, kwargs)
        if shared is not None:     # answered from a shared pass already in memory (or computed for it now)
            return shared
        entry = None
        if _cache.enabled():
            bound = sig.bind(dataset, keys, *args, **kwargs)
            bound.apply_defaults()
            params = {k: v for k, v in bound.arguments.items() if k not in ("dataset", "keys", "customers")}
            entry = _cache.key(dataset, fn.__name__, params, _key_columns(keys, params))
            hit = _cache.load(entry, fn.__name__)
            if hit is not None:
                return hit
        n_temp = len(_TEMP)
        _CALLS.append((fn.__name__, len(keys)))
        try:
            out = fn(dataset, keys, *args, **kwargs)
        finally:
            _CALLS.pop()
            _drop_temp(n_temp)
        _cache.store(entry, out)
        return out
    return wrapper


def _key_columns(keys, params: dict):
    """What of the keys a query reads (its cache key): the key columns and the extra columns it names."""
    if isinstance(keys, pd.Series):
        return keys.reset_index(drop=True)
    extra = [params[p] for p in ("by", "weight") if p in params]
    cols = [c for c in ("row_id", "customer_id", "index_date", *extra) if c in keys.columns]
    return keys[cols]


# ----------------------------------------------------------------------------- building blocks

def _check_keys(keys: pd.DataFrame, extra: Sequence[str] = ()) -> None:
    missing = {"row_id", "customer_id", "index_date", *extra} - set(keys.columns)
    if missing:
        raise ValueError(f"window keys lack columns {sorted(missing)}")
    if not keys["row_id"].is_unique:
        raise ValueError("window keys: row_id must be unique")


def keys_table(dataset, keys: pd.DataFrame, lo: int, hi: int, extra: Sequence[str] = ()):
    """The keys as an ibis table on the dataset's backend (uploaded as a temporary table).

    ``customer_id`` takes the type of ``activity.customer_id`` so the join
    needs no cast on the large side; ``_lo`` and ``_hi`` are the dates of days
    `lo` and `hi` around the index, so the date filter compares dates only.
    """
    _check_keys(keys, extra)
    k = keys[["row_id", "customer_id", "index_date", *extra]].copy()
    k["row_id"] = k["row_id"].astype("int64")
    # dates as numpy days, handed to Arrow as date32 (no datetime.date objects: seconds at 100k keys)
    idx = _days(k["index_date"])
    k["index_date"] = idx
    k["_lo"] = idx + np.timedelta64(int(lo), "D")
    k["_hi"] = idx + np.timedelta64(int(hi), "D")
    id_type = dataset.ibis_table("activity").schema()["customer_id"]
    schema = {"row_id": "int64", "customer_id": id_type, "index_date": "date", "_lo": "date", "_hi": "date"}
    schema.update({c: ibis.dtype(_ibis_type(k[c])) for c in extra})
    if id_type.is_string():
        k["customer_id"] = k["customer_id"].astype(str)
    sch = ibis.schema(schema)
    # Spark loads columns by position, hence the schema's order
    return _upload(dataset, pa.Table.from_pandas(k[list(schema)], schema=sch.to_pyarrow(), preserve_index=False))


_TEMP: list = []           # (dataset, name) of temporary tables uploaded by the running aggregation
_counter = itertools.count()


def _upload(dataset, table: pa.Table):
    """`table` as a temporary table where the data live, dropped when the aggregation returns.

    A real table, not an in-memory scan: with its row count known, the
    backend builds the join's hash table on the keys (thousands of rows), not
    on the activity (hundreds of millions); an in-memory scan made DuckDB's
    window query about twice as slow at 1M customers.
    """
    name = f"_carecall_keys_{os.getpid()}_{next(_counter)}"
    t = dataset.upload(name, table)
    _TEMP.append((dataset, name))
    return t


def _drop_temp(upto: int) -> None:
    while len(_TEMP) > upto:
        dataset, name = _TEMP.pop()
        dataset.drop_upload(name)


def _ibis_type(s: pd.Series) -> str:
    if s.dtype.kind == "f":
        return "float64"
    if s.dtype.kind in "iub":
        return "int64"
    return "string"


def _around(table, k):
    """Rows of `table` (with a ``date`` column) joined to the keys, dated between their ``_lo`` and ``_hi``.

    Adds ``off`` (days from the index) and keeps the keys' other columns.
    """
    j = table.join(k, "customer_id")
    j = j.filter(j.date >= j._lo, j.date <= j._hi)
    return j.mutate(off=j.date.delta(j.index_date, unit="day").cast("int32")).drop("_lo", "_hi")


def _play(dataset, k):
    """Activity rows around each key, with ``tl``, ``net_loss`` and ``wagered`` as exact decimals."""
    a = dataset.ibis_table("activity").select("customer_id", "date", "product", "wagered", "won")
    p = dataset.ibis_table("products").select("product", "payback")
    # a small integer per product, the position in _products' list (set on the products table, a few rows,
    # so it cannot disagree with the Python list whatever the backend's collation): per-product sums test
    # it instead of comparing strings on every play row
    codes = [(p["product"] == name, i) for i, name in enumerate(_products(dataset))]
    p = p.mutate(pcode=ibis.cases(*codes, else_=-1).cast("int32") if codes else ibis.literal(-1, "int32"))
    j = _around(a, k).join(p, "product")
    return j.mutate(tl=(j.wagered * (1 - j.payback)).cast(LOSS),
                    net_loss=(j.wagered - j.won).cast(MONEY),
                    wagered_d=j.wagered.cast(MONEY))


def _products(dataset) -> list[str]:
    return sorted(dataset.table("products")["product"].astype(str).tolist())


def _validate_windows(windows: Mapping[str, tuple[int, int]]) -> None:
    if not windows:
        raise ValueError("window_totals: give at least one window")
    for name, (a, b) in windows.items():
        if a > b:
            raise ValueError(f"window {name!r}: first day {a} is after last day {b}")


def _fetch_arrow(expr, table: str = "activity") -> pa.Table:
    """Execute an ibis expression into Arrow (logged in :func:`query_log`, with the time it took)."""
    t = time.perf_counter()
    tab = expr.to_pyarrow()
    _log_query(table, t)
    return tab


def _log_query(table: str, started: float) -> None:
    """Record in :func:`query_log` (when one is open) a query on `table` that started at `started`."""
    if _LOG is not None:
        fn, n = _CALLS[-1] if _CALLS else ("?", 0)
        _LOG.append((fn, table, n, time.perf_counter() - started))


@contextlib.contextmanager
def _fetch_batches(expr, table: str = "activity"):
    """Execute an ibis expression into a stream of Arrow record batches (a ``RecordBatchReader``, closed on
    exit; logged in :func:`query_log` with the time until the stream was read)."""
    t = time.perf_counter()
    backend = ibis.get_backend(expr)
    if backend.name == "duckdb":
        # ibis 12's to_pyarrow_batches calls fetch_record_batch, which DuckDB 2.0 renamed; a relation's reader
        # streams the rows without the extra copy a DB-API cursor's Arrow output makes
        backend._run_pre_execute_hooks(expr)       # registers the expression's in-memory tables, as ibis does
        rel = backend.con.sql(backend.compile(expr.as_table()))
        fetch = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader   # DuckDB 2 / DuckDB 1
        reader = fetch(_BATCH_ROWS)
    else:
        reader = expr.to_pyarrow_batches(chunk_size=_BATCH_ROWS)
    try:
        yield reader
    finally:
        reader.close()
        _log_query(table, t)


def _fetch(expr, table: str = "activity") -> pd.DataFrame:
    """Execute an ibis expression and return pandas (numbers as numpy dtypes, dates as datetime.date).

    Through Arrow: ibis's own ``to_pandas`` took twice as long as the query on
    a 185k-row result (DuckDB 2.0, ibis 12).
    """
    tab = _fetch_arrow(expr, table)
    df = tab.to_pandas()
    for c, typ in zip(tab.column_names, tab.schema.types):
        if pa.types.is_decimal(typ):
            df[c] = df[c].astype("float64")
        elif pa.types.is_integer(typ) and df[c].dtype == object:   # pragma: no cover - nulls
            df[c] = pd.to_numeric(df[c])
    return df


# ----------------------------------------------------------------------------- window totals

@_logged
def window_aggregates(dataset, keys: pd.DataFrame, windows: Mapping[str, tuple[int, int]],
                      share_window: tuple[int, int] | None = None) -> pd.DataFrame:
    """Window totals of every measure and (optionally) product shares, in one pass over activity.

    See :func:`window_totals` (columns ``{measure}_{window}``) and
    :func:`product_shares` (columns ``share_{product}``, for `share_window`).  Inside a
    :func:`shared_pass` block that covers the keys and windows, the figures are taken from its one pass
    (the same numbers: every sum is exact and per key).
    """
    _validate_windows(windows)
    return _aggregate(dataset, keys, windows, [tuple(share_window)] if share_window else [])


def _aggregate(dataset, keys: pd.DataFrame, windows: Mapping[str, tuple[int, int]],
               share_windows: list[tuple[int, int]]) -> pd.DataFrame:
    """The pass of :func:`window_aggregates`, with product shares for each of `share_windows`
    (columns ``share_{product}`` for one, ``share{i}_{product}`` for the i-th of several)."""
    bounds = list(windows.values()) + share_windows
    lo, hi = min(a for a, _ in bounds), max(b for _, b in bounds)
    k = keys_table(dataset, keys, lo, hi)
    j = _play(dataset, k)
    products = _products(dataset) if share_windows else []
    named = dict(windows)
    for i, sw in enumerate(share_windows):
        named[f"_share{i}"] = tuple(sw)
    # The backend groups rows by key, elementary segment and 63-day block; the few groups per key are then
    # added up per window here, in exact integers.  Segments are the pieces the window bounds cut the day
    # axis into, so every window is a union of segments.  Active days are distinct days, not rows (a day can
    # have several products): each group keeps a bitmask of its days (bit = day within the block), and a
    # window's active days are the set bits of its groups.  Grouping by block instead of by day keeps the
    # groups to a few per key.  In the share windows' segments the groups are also split by product (the
    # per-product sums are those groups' sums; their bitmasks are OR-ed back together before counting).
    cuts = sorted({int(a) for a, _ in named.values()} | {int(b) + 1 for _, b in named.values()})
    seg = _segment(j.off, cuts)
    pos = j.off + _BLOCK * 10_000                          # non-negative day number
    in_blk = pos % _BLOCK
    j = j.mutate(seg=seg, blk=(pos - in_blk).cast("int32"),            # a multiple of _BLOCK
                 bit=ibis.literal(1).cast("int64") << in_blk.cast("int64"))
    share_segs = sorted({x for sw in share_windows for x in _segments_in(cuts, *sw)})
    if share_segs:
        j = j.mutate(pc=ibis.cases((j.seg.isin(share_segs), j.pcode), else_=-1).cast("int32"))
    else:
        j = j.mutate(pc=ibis.literal(-1, "int32"))
    groups = j.group_by(["row_id", "seg", "blk", "pc"]).aggregate(
        tl=j.tl.sum(), net_loss=j.net_loss.sum(), wagered=j.wagered_d.sum(), days=_bit_or(j.bit))
    order = keys["row_id"].to_numpy()
    n, nseg = len(order), len(cuts) + 1
    share_in = [np.asarray(_segments_in(cuts, *sw), dtype=np.int64) for sw in share_windows]
    # the groups are added up batch by batch as the backend returns them: never held whole (at operator
    # scale they are tens of millions of rows, gigabytes as Arrow, beside the backend's own hash table)
    with _fetch_batches(groups) as reader:
        acc = _GroupSums(order, nseg, reader.schema, len(products), share_in)
        for batch in reader:
            acc.add(batch)
    member = _membership(cuts, windows)                    # segments x windows, 0/1
    sums = {m: _unscale(_per_window(acc.sums[m].out, n, nseg, member), acc.types[m])
            for m in ("tl", "net_loss", "wagered")}
    days = acc.active_days(member)
    cols = {}
    for i, n_ in enumerate(windows):
        for m in ("tl", "net_loss", "wagered"):
            cols[f"{m}_{n_}"] = sums[m][:, i]
        cols[f"active_days_{n_}"] = days[:, i]
    dep = _deposit_totals(dataset, k, windows, cuts, order)
    for i, n_ in enumerate(windows):
        cols[f"deposits_{n_}"] = dep[:, i] if dep is not None else np.full(n, np.nan)
    for i, share in enumerate(acc.shares):
        wide = _unscale(share.out, acc.types["wagered"]).reshape(n, len(products))
        tot = wide.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.where(tot > 0, wide / np.where(tot > 0, tot, 1.0), 0.0)
        stem = "share" if len(share_windows) == 1 else f"share{i}"
        for p, prod in enumerate(products):
            cols[f"{stem}_{prod}"] = shares[:, p]
    # the columns as they are (no copy into consolidated blocks: seconds at operator scale)
    return pd.DataFrame(cols, index=pd.Index(order, name="row_id"), copy=False)


# ----------------------------------------------------------------------------- one pass for many callers

class _SharedPass:
    """The aggregates of one set of keys and windows, computed on first need (see :func:`shared_pass`)."""

    def __init__(self, dataset, keys: pd.DataFrame, windows, share_windows):
        k = keys[["customer_id", "index_date"]].copy()
        k["index_date"] = _days(k["index_date"])
        k = k.drop_duplicates(ignore_index=True)
        k.insert(0, "row_id", np.arange(len(k), dtype=np.int64))
        self.dataset, self.keys = dataset, k
        self.windows = {f"w{a}_{b}": (int(a), int(b)) for a, b in sorted({(int(a), int(b)) for a, b in windows})}
        self.share_windows = sorted({(int(a), int(b)) for a, b in share_windows})
        self.lookup = pd.MultiIndex.from_frame(k[["customer_id", "index_date"]])
        self.table: pd.DataFrame | None = None
        self.served = 0

    def _same_data(self, dataset) -> bool:
        """The pass's dataset, or a view of it on the same files (the same fingerprint: e.g. a subset of the
        cases over the same activity)."""
        if dataset is self.dataset:
            return True
        fp = [getattr(d, "fingerprint", None) for d in (dataset, self.dataset)]
        try:
            return fp[0] is not None and fp[1] is not None and fp[0]() == fp[1]()
        except Exception:  # pragma: no cover - a dataset whose fingerprint cannot be computed
            return False

    def _positions(self, keys: pd.DataFrame) -> np.ndarray | None:
        """Each key's row in the pass (by customer and index day), or None when some key is not in it."""
        try:
            probe = pd.MultiIndex.from_arrays([keys["customer_id"].to_numpy(), _days(keys["index_date"])])
            at = self.lookup.get_indexer(probe)
        except (TypeError, ValueError):     # ids of another type than the pass's: not covered
            return None
        return None if (at < 0).any() else at

    def covers(self, dataset, keys: pd.DataFrame, windows, share_windows) -> bool:
        """Whether every key, window and share window of another pass is in this one."""
        return (self._same_data(dataset)
                and all(f"w{int(a)}_{int(b)}" in self.windows for a, b in windows)
                and all((int(a), int(b)) in self.share_windows for a, b in share_windows)
                and (len(keys) == 0 or self._positions(keys) is not None))

    def answer(self, dataset, keys: pd.DataFrame, windows, share_window) -> pd.DataFrame | None:
        """The aggregates of a :func:`window_aggregates` call, or None when this pass does not cover it."""
        if not self._same_data(dataset) or len(keys) == 0:
            return None
        if share_window is not None and tuple(int(x) for x in share_window) not in self.share_windows:
            return None
        names = {n: f"w{int(a)}_{int(b)}" for n, (a, b) in windows.items()}
        if any(v not in self.windows for v in names.values()):
            return None
        at = self._positions(keys)
        if at is None:
            return None
        if self.table is None:
            self.table = shared_aggregates(self.dataset, self.keys, self.windows, self.share_windows)
        t = self.table
        cols = {}
        for n, w in names.items():
            for m in ("tl", "net_loss", "wagered", "active_days"):
                cols[f"{m}_{n}"] = t[f"{m}_{w}"].to_numpy()[at]
        for n, w in names.items():
            cols[f"deposits_{n}"] = t[f"deposits_{w}"].to_numpy()[at]
        if share_window is not None:
            i = self.share_windows.index(tuple(int(x) for x in share_window))
            stem = "share" if len(self.share_windows) == 1 else f"share{i}"
            for prod in _products(self.dataset):
                cols[f"share_{prod}"] = t[f"{stem}_{prod}"].to_numpy()[at]
        self.served += 1
        return pd.DataFrame(cols, index=pd.Index(keys["row_id"].to_numpy(), name="row_id"), copy=False)


_SHARED: list[_SharedPass] = []


@_logged
def shared_aggregates(dataset, keys: pd.DataFrame, windows: Mapping[str, tuple[int, int]],
                      share_windows: Sequence[tuple[int, int]] = ()) -> pd.DataFrame:
    """The one pass of a :func:`shared_pass`: :func:`window_aggregates` with the product shares of each
    of `share_windows` (columns ``share{i}_{product}``, or ``share_{product}`` for a single one)."""
    _validate_windows(windows)
    return _aggregate(dataset, keys, windows, [tuple(int(x) for x in sw) for sw in share_windows])


def _days(dates) -> np.ndarray:
    """Dates (any time of day) as numpy days."""
    return pd.to_datetime(pd.Series(dates)).dt.normalize().to_numpy("datetime64[D]")


@contextlib.contextmanager
def shared_pass(dataset, keys: pd.DataFrame, windows, share_windows=()):
    """Answer :func:`window_aggregates` calls inside the block from one pass over activity.

    Parameters
    ----------
    dataset : Dataset or IbisDataset
    keys : pandas.DataFrame
        Columns ``customer_id`` and ``index_date``: every (customer, index day) the calls inside the block
        may ask for (duplicates are dropped).
    windows : iterable of (first_day, last_day)
        Every window (day offsets from the index) they may ask for.
    share_windows : iterable of (first_day, last_day)
        Every product-share window they may ask for.

    A call whose keys are all among `keys` (by customer and index day) and whose windows and share window
    are among these is answered from the one pass, computed when the first such call comes (never, if
    none does); any other call runs its own query as usual.  The answers are the figures the call's own
    pass would give, exactly: each key's sums are exact integers of its own rows, whatever other keys
    and windows the pass holds.  Yields the pass (``served`` counts the calls it answered).
    """
    windows, share_windows = list(windows), list(share_windows)
    for outer in reversed(_SHARED):        # a pass of an enclosing block that covers this one: use it
        if outer.covers(dataset, keys, windows, share_windows):
            yield outer
            return
    sp = _SharedPass(dataset, keys, windows, share_windows)
    _SHARED.append(sp)
    try:
        yield sp
    finally:
        _SHARED.remove(sp)
        sp.table = None


def in_shared_pass() -> bool:
    """Whether a :func:`shared_pass` block is open: a batch run (a report, :func:`carecall_eval.evaluate`)
    rather than an interactive session, so a cohort's matched set is not going to be matched again."""
    return bool(_SHARED)


def _shared_answer(fn_name: str, dataset, keys, args, kwargs):
    if fn_name != "window_aggregates" or not _SHARED:
        return None
    bound = inspect.signature(window_aggregates.__wrapped__).bind(dataset, keys, *args, **kwargs)
    bound.apply_defaults()
    windows, share = bound.arguments["windows"], bound.arguments["share_window"]
    _validate_windows(windows)
    for sp in reversed(_SHARED):
        got = sp.answer(dataset, keys, windows, share)
        if got is not None:
            return got
    return None


# the groups' sums, added up per window in exact integers (the fixed-point sums' unscaled values), so the
# totals are the same whatever order the backend returned the groups in, and on every backend

def _positions(order: np.ndarray, row_id: pa.ChunkedArray) -> np.ndarray:
    """Position in the keys' order of each group's ``row_id``."""
    rid = row_id.to_numpy().astype(np.int64)
    n = len(order)
    if n and order.dtype.kind in "iu" and order[0] == 0 and np.array_equal(order, np.arange(n)):
        return rid
    return pd.Index(order).get_indexer(rid).astype(np.int64)


def _scaled(col: pa.ChunkedArray) -> np.ndarray:
    """A decimal column's unscaled integers (value x 10**scale) as int64, exactly; nulls as 0.

    Read from the 128-bit two's-complement words Arrow stores decimals in; when a value is beyond int64
    (a group summing to more than about 9e12 at six decimals) the column is Python integers instead.
    """
    typ = col.type
    if pa.types.is_integer(typ):              # a backend that summed the decimals as integers already
        return col.to_numpy(zero_copy_only=False).astype(np.int64)
    if not pa.types.is_decimal(typ):          # a float here would not be exact: refuse rather than round
        raise TypeError(f"window sums: the backend returned {typ} for a fixed-point sum; expected a decimal")
    if col.null_count:
        col = pa.compute.fill_null(col, pa.scalar(0, typ))
    if pa.types.is_decimal256(typ):           # pragma: no cover - not produced by DuckDB or Spark sums
        return np.array([int(v.scaleb(typ.scale)) for v in col.to_pylist()], dtype=object)
    parts = []
    for arr in col.chunks:                     # each chunk's words in place (no combined copy)
        words = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=2 * (len(arr) + arr.offset))
        parts.append(words[2 * arr.offset:].reshape(-1, 2))
    words = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    low, high = words[:, 0], words[:, 1]
    if not np.array_equal(high, low >> 63):      # some beyond int64: Python integers, exact
        return high.astype(object) * 2 ** 64 + low.view(np.uint64).astype(object)
    return np.ascontiguousarray(low)


def _unscale(x: np.ndarray, typ) -> np.ndarray:
    """Exact unscaled integers back to float64 (as the backend casts a decimal to DOUBLE)."""
    scale = typ.scale if pa.types.is_decimal(typ) else 0
    return x.astype(np.float64) / 10.0 ** scale if scale else x.astype(np.float64)


def _sums_by(index: np.ndarray, values: np.ndarray, size: int, exact_float: bool = False) -> np.ndarray:
    """Exact integer sums of `values` by `index` (0..size-1): int64, or Python integers beyond it.

    With ``exact_float`` the sums are returned as float64 when every partial sum is below 2**53 (the same
    integers, exactly), so that they can be added up further with float arithmetic, still exactly.
    """
    as_float = values.astype(np.float64)
    bound = float(np.abs(as_float).sum()) if values.size else 0.0
    if bound < 2.0 ** 53:
        # every partial sum is an integer below 2**53: float64 adds them exactly, in any order
        out = np.bincount(index, weights=as_float, minlength=size).astype(np.float64, copy=False)   # int if empty
        return out if exact_float else out.astype(np.int64)
    big = bound >= 2.0 ** 61 or values.dtype == object
    out = np.zeros(size, dtype=object) if big else np.zeros(size, dtype=np.int64)
    if big:
        out[:] = 0
    np.add.at(out, index, values.astype(object) if big else values)
    return out


def _per_window(cells: np.ndarray, n: int, nseg: int, member: np.ndarray) -> np.ndarray:
    """Per (key, segment) sums -> per (key, window) sums.  Float cells (exact integers below 2**53, see
    :func:`_sums_by`) are added by a float matrix product: its sums are integers below 2**53 too, so
    exact whatever the order; integer cells by an integer product."""
    cells = cells.reshape(n, nseg)
    if cells.dtype == np.float64:
        return cells @ member.astype(np.float64)
    return cells @ member


def _window_sums(values: np.ndarray, typ, cell: np.ndarray, n: int, nseg: int, member: np.ndarray) -> np.ndarray:
    """Totals per key (rows) and window (columns) of a decimal column's groups (`values`: its
    :func:`_scaled` integers, of Arrow type `typ`), summed per (key, segment) cell first."""
    return _unscale(_per_window(_sums_by(cell, values, n * nseg, exact_float=True), n, nseg, member), typ)


class _Sums:
    """Exact integer sums by index, added to batch by batch: int64 while a running bound on the totals
    (the sum of every value's magnitude so far) is below 2**61, so an int64 total never wraps; Python
    integers from then on, or as soon as a batch's values are Python integers (beyond int64)."""

    def __init__(self, size: int):
        self.out: np.ndarray = np.zeros(size, dtype=np.int64)
        self.bound = 0.0

    def add(self, index: np.ndarray, values: np.ndarray) -> None:
        if not values.size:
            return
        self.bound += float(np.abs(values.astype(np.float64)).sum())
        if self.bound >= 2.0 ** 61 or values.dtype == object:
            if self.out.dtype != object:
                self.out = self.out.astype(object)
            np.add.at(self.out, index, values.astype(object))
        else:
            np.add.at(self.out, index, values)


class _GroupSums:
    """The (key, segment, block, product) groups of :func:`_aggregate`'s pass, added up as they arrive.

    Per (key, segment) cell: the exact sums of the three fixed-point measures and the days played of the
    groups not split by product; the product-split groups' day masks are kept (three integers each) to be
    OR-ed per (key, segment, block) at the end; per key and product, the wagers of each share window.
    """

    def __init__(self, order: np.ndarray, nseg: int, schema: pa.Schema, nprod: int, share_in: list):
        self.order, self.n, self.nseg, self.nprod, self.share_in = order, len(order), nseg, nprod, share_in
        self.types = {m: schema.field(m).type for m in ("tl", "net_loss", "wagered")}
        size = self.n * nseg
        self.sums = {m: _Sums(size) for m in self.types}
        self.days = _Sums(size)
        self.split: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.shares = [_Sums(self.n * nprod) for _ in share_in]

    def add(self, batch: pa.RecordBatch) -> None:
        g = pa.Table.from_batches([batch])                 # (no copy: columns as chunked arrays)
        at = _positions(self.order, g.column("row_id"))
        sg = g.column("seg").to_numpy().astype(np.int64)
        cell = at * self.nseg + sg                         # (key, segment)
        scaled = {}
        for m, typ in self.types.items():
            col = g.column(m)
            if col.type != typ:
                raise TypeError(f"window sums: the backend returned {col.type} for {m} in a batch of a stream "
                                f"whose schema says {typ}")
            scaled[m] = _scaled(col)
            self.sums[m].add(cell, scaled[m])
        mask = g.column("days").to_numpy().astype(np.int64)
        pcode = g.column("pc").to_numpy().astype(np.int64)
        split = pcode >= 0                                 # groups split by product: OR their masks first
        whole = ~split
        self.days.add(cell[whole], np.bitwise_count(mask[whole]).astype(np.int64))
        if split.any():
            blk = g.column("blk").to_numpy().astype(np.int64)[split] // _BLOCK
            self.split.append((cell[split], blk, mask[split]))
        for acc, segs in zip(self.shares, self.share_in):
            inside = split & np.isin(sg, segs)
            acc.add(at[inside] * max(self.nprod, 1) + pcode[inside], scaled["wagered"][inside])

    def active_days(self, member: np.ndarray) -> np.ndarray:
        """Distinct days played per key and window: the set bits of each (key, segment, block)'s day mask."""
        n, nseg = self.n, self.nseg
        cells = self.days.out
        if self.split:
            csplit, blk, mask = (np.concatenate(x) for x in zip(*self.split))
            self.split = []
            cells = cells.reshape(n, nseg).copy()
            b0, nb = int(blk.min()), int(blk.max() - blk.min()) + 1
            segs = np.unique(csplit % nseg)                  # the segments split by product (a few)
            if n * len(segs) * nb <= 4 * csplit.size + _DENSE_SLOTS:
                # a dense (key, split segment, block) table of masks: OR-ed in place, no sort
                local = np.zeros(nseg, dtype=np.int64)
                local[segs] = np.arange(len(segs))
                slot = ((csplit // nseg) * len(segs) + local[csplit % nseg]) * nb + (blk - b0)
                merged = np.zeros(n * len(segs) * nb, dtype=np.int64)
                np.bitwise_or.at(merged, slot, mask)
                cells[:, segs] += np.bitwise_count(merged).reshape(n, len(segs), nb).sum(axis=2, dtype=np.int64)
            else:
                code, inv = np.unique(csplit * nb + (blk - b0), return_inverse=True)
                merged = np.zeros(code.size, dtype=np.int64)
                np.bitwise_or.at(merged, inv, mask)
                np.add.at(cells.reshape(-1), code // nb, np.bitwise_count(merged).astype(np.int64))
            cells = cells.reshape(-1)
        return _per_window(cells, n, nseg, member).astype(np.int64)


def _membership(cuts: list[int], windows: Mapping[str, tuple[int, int]]) -> np.ndarray:
    """0/1 matrix: segment s lies in window w."""
    m = np.zeros((len(cuts) + 1, len(windows)), dtype=np.int64)
    for w, (a, b) in enumerate(windows.values()):
        m[_segments_in(cuts, int(a), int(b)), w] = 1
    return m


def _deposit_totals(dataset, k, windows, cuts, order: np.ndarray) -> np.ndarray | None:
    """Deposits per key (rows, in `order`) and window: summed per segment first, as play is."""
    if not dataset.has("deposits"):
        return None
    x = dataset.ibis_table("deposits").select("customer_id", "date", "amount")
    j = _around(x, k)
    j = j.mutate(amount=j.amount.cast(MONEY), seg=_segment(j.off, cuts))
    g = _fetch_arrow(j.group_by(["row_id", "seg"]).aggregate(amount=j.amount.sum()), "deposits")
    nseg = len(cuts) + 1
    cell = _positions(order, g.column("row_id")) * nseg + g.column("seg").to_numpy().astype(np.int64)
    amount = g.column("amount")
    return _window_sums(_scaled(amount), amount.type, cell, len(order), nseg, _membership(cuts, windows))


def _segment(off, cuts):
    """Index of the elementary segment a day offset falls in (segments are cut at `cuts`)."""
    return ibis.cases(*[(off < c, i) for i, c in enumerate(cuts)], else_=len(cuts))


def _segments_in(cuts, a: int, b: int) -> list[int]:
    """The segments lying in days a..b (every window is a union of segments)."""
    return [i for i in range(1, len(cuts)) if cuts[i - 1] >= a and cuts[i] - 1 <= b]


def window_totals(dataset, keys: pd.DataFrame, windows: Mapping[str, tuple[int, int]]) -> pd.DataFrame:
    """Sum play in day windows around each key's index date.

    Parameters
    ----------
    dataset : carecall_eval.contract.Dataset
        Loaded data (from :func:`~carecall_eval.contract.load`, or
        :func:`~carecall_eval.contract.connect` for Spark or a warehouse).
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
    return window_aggregates(dataset, keys, windows)


def product_shares(dataset, keys: pd.DataFrame, first_day: int, last_day: int) -> pd.DataFrame:
    """Share of amount wagered per product in a window (rows sum to 1, or 0 with no play).

    Returns a frame indexed by ``row_id`` with one ``share_{product}`` column per
    product in the products table (products in sorted order).
    """
    res = window_aggregates(dataset, keys, {"_share": (first_day, last_day)}, share_window=(first_day, last_day))
    return res[[c for c in res.columns if c.startswith("share_")]]


# ----------------------------------------------------------------------------- event-time weeks

@_logged
def weekly_moments(dataset, keys: pd.DataFrame, first_week: int = -26, last_week: int = 52,
                   by: str = "group", weight: str = "weight") -> pd.DataFrame:
    """Weighted sums of weekly theoretical loss by group and event-time week (week 0 = days 0..6).

    Parameters
    ----------
    keys : pandas.DataFrame
        ``row_id``, ``customer_id``, ``index_date``, the grouping column `by`
        and the weight column `weight`.

    Returns
    -------
    pandas.DataFrame
        One row per (`by`, ``week``) with any play: ``swy`` = sum of w * y and
        ``swy2`` = sum of w * y**2, y being a key's theoretical loss in the
        week.  Weeks without play contribute zero to both, so the caller adds
        the weight totals (which need no activity) to get means and variances.
    """
    lo, hi = 7 * int(first_week), 7 * (int(last_week) + 1) - 1
    k = keys_table(dataset, keys, lo, hi, extra=(by, weight))
    j = _play(dataset, k)
    j = j.mutate(week=(j.off + 7 * 1000).floordiv(7).cast("int32") - 1000)   # floor for negative offsets
    wk = j.group_by(["row_id", "week", by, weight]).aggregate(y=j.tl.sum().cast("float64"))
    wy = (wk[weight] * wk.y)
    out = wk.group_by([by, "week"]).aggregate(swy=wy.cast(MOMENT).sum().cast("float64"),
                                              swy2=(wy * wk.y).cast(MOMENT).sum().cast("float64"))
    return _fetch(out).sort_values([by, "week"]).reset_index(drop=True)


@_logged
def weekly_series(dataset, keys: pd.DataFrame, first_week: int = -26, last_week: int = 52) -> pd.DataFrame:
    """Theoretical loss per key and event-time week (week 0 = days 0..6), for the weeks with any play.

    One row per (``row_id``, ``week``) with ``y``, the key's theoretical loss in the week (the exact decimal
    sum, as float64: the ``y`` of :func:`weekly_moments`).  Computed once for a cohort's keys, it gives the
    event study of any matched set drawn from it (:func:`moments_from_series`) with no query over activity:
    a notebook that changes a matching option re-weights the same series.  Rows come in no set order.
    """
    lo, hi = 7 * int(first_week), 7 * (int(last_week) + 1) - 1
    k = keys_table(dataset, keys, lo, hi)
    j = _play(dataset, k)
    j = j.mutate(week=(j.off + 7 * 1000).floordiv(7).cast("int32") - 1000)   # floor for negative offsets
    g = j.group_by(["row_id", "week"]).aggregate(y=j.tl.sum().cast("float64"))
    out = _fetch(g)
    # millions of rows for a cohort at operator scale: the narrowest exact types the values fit
    rid = keys["row_id"]
    if len(rid) and -2**31 <= int(rid.min()) and int(rid.max()) < 2**31:
        out["row_id"] = out["row_id"].astype(np.int32)
    if -128 <= first_week and last_week <= 127:
        out["week"] = out["week"].astype(np.int8)
    return out


def moments_from_series(series: pd.DataFrame, keys: pd.DataFrame, by: str = "group",
                        weight: str = "weight") -> pd.DataFrame:
    """:func:`weekly_moments` of `keys` from the :func:`weekly_series` of a set of keys holding them.

    `keys` has ``series_row`` (the ``row_id`` of its key in `series`; several keys may share one), the
    grouping column `by` and the weight column `weight`.  The arithmetic is that of :func:`weekly_moments`:
    ``w * y`` and ``w * y * y`` in float64, each rounded to ``DECIMAL(38, 8)``, summed exactly, so the two
    give the same floats.  Runs in an in-process DuckDB over the two small frames, whatever the backend.
    """
    import duckdb

    k = pa.table({"series_row": keys["series_row"].to_numpy(np.int64), "by": keys[by].to_numpy(),
                  "w": keys[weight].to_numpy(np.float64)})
    s = pa.Table.from_pandas(series[["row_id", "week", "y"]], preserve_index=False)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")   # it writes to stdout
    try:
        con.register("__k", k)
        con.register("__s", s)
        out = con.sql("SELECT __k.by AS by, __s.week AS week, "
                      f"CAST(sum(CAST(__k.w * __s.y AS {MOMENT})) AS DOUBLE) AS swy, "
                      f"CAST(sum(CAST((__k.w * __s.y) * __s.y AS {MOMENT})) AS DOUBLE) AS swy2 "
                      "FROM __k JOIN __s ON __k.series_row = __s.row_id GROUP BY 1, 2").df()
    finally:
        con.close()
    out = out.rename(columns={"by": by})
    out["week"] = out["week"].astype("int32")
    return out.sort_values([by, "week"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- other per-key aggregates

@_logged
def prior_rg_flags(dataset, keys: pd.DataFrame, days: int = 365) -> pd.DataFrame:
    """Responsible-gambling events in the `days` days before each index (index day excluded).

    Returns 0/1 columns ``prior_limit`` (limit set or lowered), ``prior_pause``
    and ``prior_self_exclusion``, indexed by ``row_id`` in the keys' order.
    """
    k = keys_table(dataset, keys, -int(days), -1)
    rg = dataset.ibis_table("rg_events").select("customer_id", "event", "occurred_on")
    rg = rg.mutate(date=rg.occurred_on.cast("date"))
    j = _around(rg, k)
    aggs = {name: j.event.isin(list(events)).cast("int64").max() for name, events in _RG_FLAGS.items()}
    got = _fetch(j.group_by("row_id").aggregate(**aggs), "rg_events").set_index("row_id")
    res = got.reindex(keys["row_id"].to_numpy()).fillna(0).astype("int64")
    res.index.name = "row_id"
    return res


@_logged
def last_play(dataset, customers: pd.Series) -> pd.DataFrame:
    """Each listed customer's last day of play (``customer_id``, ``last_play``; absent if never played)."""
    ids = pd.Series(pd.unique(customers.dropna()))
    a = dataset.ibis_table("activity").select("customer_id", "date")
    id_type = a.schema()["customer_id"]
    c = ibis.memtable(pd.DataFrame({"customer_id": ids.astype(str) if id_type.is_string() else ids}),
                      schema=ibis.schema({"customer_id": id_type}))
    j = a.join(c, "customer_id")
    out = _fetch(j.group_by("customer_id").aggregate(last_play=j.date.max()))
    out["last_play"] = pd.to_datetime(out["last_play"]).astype("datetime64[ns]")
    return out.sort_values("customer_id").reset_index(drop=True)
