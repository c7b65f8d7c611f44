"""Coarsened exact matching (CEM), as MatchIt's ``method = "cem"``.

Every numeric covariate is cut into bins (Sturges' rule by default: equal
width bins between the minimum and the maximum, ``ceil(log2(n) + 1)`` of
them, the outer edges opened to infinity); categorical covariates are kept
as they are.  Units sharing every coarsened value form a stratum; strata
holding both treated and control units are kept, the others' units are
unmatched.  Strata are numbered in the order their first control unit
appears in the data, as MatchIt numbers them.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["coarsen", "cem_subclass"]


def _n_sturges(n: int) -> int:
    return int(np.ceil(np.log2(n) + 1))


def coarsen(x: np.ndarray, spec: Any = "sturges") -> np.ndarray:
    """Bin numbers for one numeric covariate.

    Parameters
    ----------
    x : numpy.ndarray
        Numeric values (finite).
    spec : {"sturges"} or int or str or sequence of float, default "sturges"
        ``"sturges"``: Sturges' number of equal-width bins.  An ``int`` k >= 1:
        k equal-width bins (``0`` leaves the variable uncoarsened, i.e. exact
        matching on it).  ``"qK"`` (e.g. ``"q4"``): K bins cut at the sample
        quantiles.  A sequence: the cut points themselves.

    Returns
    -------
    numpy.ndarray
        Integer bin number per value (``findInterval`` in R).

    Examples
    --------
    >>> coarsen(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [1, 1, 2, 2, 2]
    """
    x = np.asarray(x, dtype=float)
    if isinstance(spec, str):
        if spec == "sturges":
            bins: Any = _n_sturges(len(x))
        elif spec.startswith("q") and spec[1:].isdigit() and int(spec[1:]) >= 1:
            q = int(spec[1:])
            probs = np.arange(1, q) / q
            bins = np.quantile(x, probs) if len(probs) else np.array([])
        else:
            raise ValueError(
                f"cutpoints: {spec!r} is not supported; use 'sturges', 'qK' (K quantile bins), "
                "a number of bins, or a list of cut points."
            )
    elif isinstance(spec, (bool, np.bool_)):
        raise ValueError(f"cutpoints: {spec!r} is not a number of bins.")
    elif isinstance(spec, (int, np.integer)):
        if spec < 0:
            raise ValueError(f"cutpoints: the number of bins must be >= 0, got {spec}.")
        if spec == 0:
            return pd.factorize(x, sort=True)[0].astype(np.int64)
        bins = int(spec)
    else:
        try:
            bins = np.asarray(spec, dtype=float).ravel()
        except (TypeError, ValueError):
            raise ValueError(f"cutpoints: {spec!r} is not a list of numbers.") from None
        if len(bins) == 0 or not np.isfinite(bins).all():
            raise ValueError(f"cutpoints: cut points must be finite numbers, got {spec!r}.")
    if np.ndim(bins) == 0:
        k = int(bins)
        breaks = np.linspace(x.min(), x.max(), k + 1)
        breaks[0], breaks[-1] = -np.inf, np.inf
    else:
        breaks = np.concatenate([[-np.inf], np.unique(bins), [np.inf]])
    return np.searchsorted(breaks, x, side="right").astype(np.int64)


def cem_subclass(
    data: pd.DataFrame,
    variables: Sequence[str],
    treat: np.ndarray,
    cutpoints: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Stratum (subclass) of every unit under coarsened exact matching.

    Parameters
    ----------
    data : pandas.DataFrame
        The data (not modified).
    variables : sequence of str
        Covariate columns.  Numeric columns are coarsened; boolean,
        categorical and string columns are matched exactly.
    treat : numpy.ndarray
        Boolean treatment indicator.
    cutpoints : mapping, optional
        Per numeric column, how to coarsen it (see :func:`coarsen`); columns
        not named use Sturges' rule.

    Returns
    -------
    numpy.ndarray
        Subclass number per unit: ``1, 2, ...`` for units in strata with
        both groups (numbered by the first control unit of each stratum in
        data order), ``-1`` for units left unmatched.
    """
    cutpoints = dict(cutpoints or {})
    numeric = {
        c for c in variables
        if pd.api.types.is_numeric_dtype(data[c].dtype) and not pd.api.types.is_bool_dtype(data[c].dtype)
    }
    unknown = [c for c in cutpoints if c not in variables]
    if unknown:
        raise ValueError(f"cutpoints names column(s) that are not covariates: {unknown}.")
    not_numeric = [c for c in cutpoints if c not in numeric]
    if not_numeric:
        raise ValueError(f"cutpoints: column(s) {not_numeric} are not numeric; they are matched exactly.")
    codes = {}
    for c in variables:
        if c in numeric:
            codes[c] = coarsen(data[c].to_numpy(dtype=float), cutpoints.get(c, "sturges"))
        else:
            codes[c] = pd.factorize(data[c], sort=True)[0]
    frame = pd.DataFrame(codes)
    stratum = frame.groupby(list(frame.columns), sort=False).ngroup().to_numpy()
    k = stratum.max() + 1
    has_t = np.bincount(stratum[treat], minlength=k) > 0
    has_c = np.bincount(stratum[~treat], minlength=k) > 0
    both = has_t & has_c
    # number kept strata by the first appearance of a control unit (MatchIt)
    first_c = np.full(k, np.iinfo(np.int64).max)
    rows_c = np.flatnonzero(~treat)
    np.minimum.at(first_c, stratum[rows_c], rows_c)
    kept = np.flatnonzero(both)
    label = np.full(k, -1, dtype=np.int64)
    label[kept[np.argsort(first_c[kept], kind="stable")]] = np.arange(1, len(kept) + 1)
    return label[stratum]
