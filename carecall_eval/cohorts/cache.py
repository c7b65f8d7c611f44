"""On-disk cache of the aggregation layer's results, so a re-run on unchanged data skips the scans.

Every query of :mod:`carecall_eval.cohorts.windows` (the cohort's one pass
over activity above all) is looked up here before it runs.  An entry holds
exactly what the query returned (one row per key, or per group and week) as
a Parquet file, and nothing else.  Its name is a SHA-256 of

* the data's fingerprint (:meth:`Dataset.fingerprint
  <carecall_eval.contract.Dataset.fingerprint>`: every byte of the input files,
  ``operator.toml`` and ``mapping.toml``; on a warehouse the weaker summary of
  :meth:`IbisDataset.fingerprint <carecall_eval.contract.IbisDataset.fingerprint>`),
* the query: its function, its parameters (windows, days, weeks, columns) and
  the content of the keys it was asked about (row ids, customer ids, index
  dates and any extra column), which is where the study design enters: another
  design gives other keys or other windows, hence another entry,
* the package version and :data:`LAYOUT` (the layout of an entry).

So a changed file, another design or another release misses and recomputes;
nothing has to be invalidated by hand.

Where and whether
-----------------
The cache lives in ``$CARECALL_CACHE_DIR``, else ``~/.cache/carecall_eval``
(``$XDG_CACHE_HOME/carecall_eval`` when that is set).  ``CARECALL_CACHE=0``
turns it off for a process; ``build_cohort(..., cache=False)`` or
``with caching(False):`` for a block of code.  :func:`clear` empties it.

Data protection
---------------
An entry holds customer ids (as row ids of the keys, and ``customer_id`` in
``last_play``) next to their spending: **it is as sensitive as the data
themselves**.  Files are written through the toolkit's one atomic writer
(:mod:`carecall_eval.writer`), so their permissions follow the user's umask
like any other output; point ``CARECALL_CACHE_DIR`` at a folder only the
analysts may read (or set ``CARECALL_CACHE=0``) on a shared machine.  The
cache is never written into a report's, evaluation's or bundle's output
folder, so nothing of it is shipped with a report.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Iterator, Mapping

import pandas as pd

#: Version of an entry's layout; part of every key, so changing it retires old entries.
LAYOUT = 1

ENV_DIR = "CARECALL_CACHE_DIR"
ENV_SWITCH = "CARECALL_CACHE"

_SWITCH: contextvars.ContextVar[bool | None] = contextvars.ContextVar("carecall_cache", default=None)

#: ``(function, "hit" | "miss" | "stored")`` of every lookup while :func:`lookups` records.
_LOOKUPS: list | None = None


def cache_dir() -> Path:
    """The cache folder: ``$CARECALL_CACHE_DIR``, else ``$XDG_CACHE_HOME/carecall_eval`` or ``~/.cache/carecall_eval``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "carecall_eval"


def enabled() -> bool:
    """Whether aggregates are cached here: the innermost :func:`caching` block, else ``CARECALL_CACHE`` (default on)."""
    on = _SWITCH.get()
    if on is not None:
        return on
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off", "")


@contextlib.contextmanager
def caching(on: bool | None = True) -> Iterator[None]:
    """Turn the cache on (``True``) or off (``False``) inside the block; ``None`` keeps the current setting."""
    if on is None:
        yield
        return
    token = _SWITCH.set(bool(on))
    try:
        yield
    finally:
        _SWITCH.reset(token)


@contextlib.contextmanager
def lookups() -> Iterator[list]:
    """Record ``(function, outcome)`` of every cache lookup inside the block (outcome ``hit`` or ``miss``)."""
    global _LOOKUPS
    outer, _LOOKUPS = _LOOKUPS, []
    try:
        yield _LOOKUPS
    finally:
        if outer is not None:
            outer.extend(_LOOKUPS)
        _LOOKUPS = outer


def _note(function: str, outcome: str) -> None:
    if _LOOKUPS is not None:
        _LOOKUPS.append((function, outcome))


def _frame_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names, dtypes and values (row order counts)."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(frame[c].dtype)] for c in frame.columns]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False, categorize=False).to_numpy().tobytes())
    h.update(str(len(frame)).encode())
    return h.hexdigest()


def _canon(value):
    """`value` as JSON-able lists, mappings as ``[key, value]`` pairs in their order (a window's order is
    the order of the result's columns, so it is part of the key)."""
    if isinstance(value, Mapping):
        return [["__map__"]] + [[str(k), _canon(v)] for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):      # numpy scalars
        return value.item()
    return str(value)


def key(dataset, function: str, params: dict, frame: pd.DataFrame | pd.Series | None = None) -> str | None:
    """The entry name of a query, or None when the dataset has no fingerprint (nothing is cached then)."""
    from .._version import __version__

    fp = getattr(dataset, "fingerprint", None)
    if fp is None:
        return None
    try:
        fingerprint = fp()
    except Exception:   # pragma: no cover - a dataset whose fingerprint cannot be computed is not cached
        return None
    if not isinstance(fingerprint, str) or not fingerprint:
        return None
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    body = json.dumps({"layout": LAYOUT, "version": __version__, "data": fingerprint, "function": function,
                       "params": _canon(params), "keys": _frame_digest(frame) if frame is not None else None},
                      default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _path(name: str) -> Path:
    return cache_dir() / name[:2] / f"{name}.parquet"


def load(name: str | None, function: str = "?") -> pd.DataFrame | None:
    """The cached frame of entry `name`, or None (absent, unreadable, or the cache is off)."""
    if name is None or not enabled():
        return None
    p = _path(name)
    try:
        import pyarrow.parquet as pq

        df = pq.read_table(p).to_pandas()
    except Exception:   # absent or damaged: recompute (a damaged entry is overwritten by the store)
        _note(function, "miss")
        return None
    _note(function, "hit")
    return df


def store(name: str | None, frame: pd.DataFrame) -> None:
    """Write `frame` as entry `name` (atomically; a failure to write only costs the next run its time)."""
    if name is None or not enabled():
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..writer import write_bytes

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=True), buf)
    with contextlib.suppress(Exception):
        write_bytes(_path(name), buf.getvalue(), what="aggregate cache entry")


def clear() -> int:
    """Remove every cache entry (aggregates and memoised results); returns how many files were removed."""
    root = cache_dir()
    n = 0
    if not root.is_dir():
        return 0
    for p in [*root.glob("*/*.parquet"), *root.glob("results/*/*.pickle")]:   # aggregates, estimator results
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n
