"""What every dataset offers the pipeline, whatever holds the tables (files via DuckDB, or an ibis backend):
:class:`TablesBase`."""
from __future__ import annotations

from functools import cached_property

import pandas as pd

from .spec import LARGE_TABLES, TABLES


class TablesBase:
    """Access shared by :class:`~carecall_eval.contract.Dataset` and :class:`~carecall_eval.contract.IbisDataset`.

    Subclasses set ``path`` and ``tables`` and implement ``_fetch(name)`` (a
    small table as pandas), ``_count(name)`` and ``_span()`` (first and last
    activity date), plus :meth:`ibis_table`.
    """

    path: object
    tables: tuple
    #: How to aggregate a large table instead (completes the refusal message of :meth:`table`).
    _large_hint = "aggregate dataset.ibis_table({name!r})"

    @cached_property
    def _frames(self) -> dict:
        return {}          # small tables fetched so far

    @cached_property
    def _counts(self) -> dict:
        return {}          # row counts known so far (validation fills them too)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, tables={list(self.tables)})"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def upload(self, name: str, table):
        """A pyarrow Table as a temporary table `name` where the data live; returns its ibis table.

        The aggregation layer uploads its per-key tables this way so the
        backend knows their size (and joins them as the small side).  Falls
        back to an in-memory ibis table on backends without temporary tables.
        """
        import ibis

        try:
            return self.backend.create_table(name, obj=table, temp=True)
        except Exception:
            return ibis.memtable(table)

    def drop_upload(self, name: str) -> None:
        """Drop a table made by :meth:`upload` (nothing if it is gone or was in memory)."""
        try:
            self.backend.drop_table(name, force=True)
        except Exception:  # pragma: no cover - backend-specific
            pass

    def has(self, name: str) -> bool:
        """Whether table `name` is present (e.g. the optional ``deposits``)."""
        return name in self.tables

    def _check_present(self, name: str) -> None:
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; contract tables are {list(TABLES)}")
        if name not in self.tables:
            raise ValueError(f"table {name!r} is not in {self.path} (optional table); "
                             f"check dataset.has({name!r}) first")

    def table(self, name: str) -> pd.DataFrame:
        """A small table as a pandas DataFrame (a copy of a cached read).

        Date and timestamp columns are ``datetime64[ns]``, booleans ``bool``,
        strings ``object`` with None for missing values; extra columns are kept.

        Raises
        ------
        ValueError
            For the large tables (``activity``, ``deposits``), which must not be
            required to fit in memory: aggregate them where they are.
        """
        self._check_present(name)
        if name in LARGE_TABLES:
            raise ValueError(f"{name!r} is a large table and is never loaded whole into pandas; "
                             + self._large_hint.format(name=name))
        if name not in self._frames:
            self._frames[name] = self._fetch(name)
        return self._frames[name].copy()

    def n_rows(self, name: str) -> int:
        """Number of rows of table `name` (counted where the data are, cached)."""
        self._check_present(name)
        if name not in self._counts:
            self._counts[name] = int(self._count(name))
        return self._counts[name]

    def remember_n_rows(self, name: str, n: int) -> None:
        """Record the row count of table `name` when a scan has just counted it (validation does)."""
        self._check_present(name)
        self._counts.setdefault(name, int(n))

    @cached_property
    def _activity_span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        lo, hi = self._span()
        return pd.Timestamp(lo), pd.Timestamp(hi)

    @property
    def data_start(self) -> pd.Timestamp:
        """First date in ``activity`` (NaT if it is empty)."""
        return self._activity_span[0]

    @property
    def data_end(self) -> pd.Timestamp:
        """Last date in ``activity`` (NaT if it is empty)."""
        return self._activity_span[1]


__all__ = ["TablesBase"]
