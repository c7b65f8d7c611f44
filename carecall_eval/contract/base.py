"""The dataset behind every estimator's ``data`` argument: :func:`open_data`.

A Dataset or IbisDataset is used as it is; a path is loaded (and validated)
with :func:`~carecall_eval.contract.load`.  This module sits on top of the
contract package (it needs :func:`load`); :class:`TablesBase` lives in
:mod:`.tables` and is re-exported here.
"""
from __future__ import annotations

import os

from .tables import TablesBase
from .validation import load

__all__ = ["open_data", "TablesBase"]


def open_data(data, who: str = "this estimator"):
    """The dataset behind an estimator's ``data`` argument: a Dataset or IbisDataset as is, a path loaded.

    Raises a TypeError naming what was expected and how to get it for anything else.
    """
    if isinstance(data, TablesBase):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load(data)
    raise TypeError(f"{who}: data must be a Dataset (carecall_eval.load(path)), an IbisDataset "
                    f"(carecall_eval.contract.connect(backend)) or a data directory path, got {type(data).__name__}")
