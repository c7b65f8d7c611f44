"""Validation of the data and options handed to :func:`carecall_eval.matching.match`.

Everything that enters the matching code passes through here once.  Errors
are :class:`ValueError` with a message that names the argument, the column,
the offending rows and the fix.  Nothing here modifies the caller's
DataFrame.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

#: Allowed values of the string options, exactly as accepted (no prefix matching).
METHODS = ("nearest", "cem", "ipw")
DISTANCES = ("ps", "logit")
ORDERS = ("largest", "smallest", "random", "data")
DISCARDS = ("none", "treated", "control", "both")

_MAX_ROWS_SHOWN = 5


# ----------------------------------------------------------------------------
# small helpers producing uniform messages
# ----------------------------------------------------------------------------
def _rows(index: pd.Index, mask: np.ndarray) -> str:
    """Describe the rows of ``index`` selected by ``mask`` (first few labels and a count)."""
    labels = index[np.asarray(mask, dtype=bool)]
    shown = ", ".join(repr(x) for x in labels[:_MAX_ROWS_SHOWN])
    more = f" and {len(labels) - _MAX_ROWS_SHOWN} more" if len(labels) > _MAX_ROWS_SHOWN else ""
    return f"{len(labels)} row{'s' if len(labels) != 1 else ''} (index {shown}{more})"


def check_option(name: str, value: Any, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is exactly one of ``allowed``, else raise ValueError."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{name}={value!r} is not supported; choose one of {{{', '.join(map(repr, allowed))}}}."
        )
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_positive(name: str, value: Any, *, upper: float | None = None, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number{' or None' if allow_none else ''}, got {value!r}.")
    value = float(value)
    if not np.isfinite(value) or value <= 0 or (upper is not None and value >= upper):
        rng = f"in (0, {upper})" if upper is not None else "> 0 and finite"
        raise ValueError(f"{name} must be {rng}, got {value!r}.")
    return value


def check_columns(data: pd.DataFrame, name: str, columns: Iterable[str]) -> list[str]:
    """Check that every column exists in ``data``; suggest close names when not."""
    cols = list(columns)
    bad = [c for c in cols if not isinstance(c, str)]
    if bad:
        raise ValueError(f"{name} must name columns by string; got {bad!r}.")
    missing = [c for c in cols if c not in data.columns]
    if missing:
        hints = []
        for c in missing:
            close = get_close_matches(c, [str(x) for x in data.columns], n=1)
            hints.append(f"{c!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"{name}: column(s) not in data: {', '.join(hints)}.")
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise ValueError(f"{name} lists column(s) more than once: {dup}.")
    return cols


def as_column_list(name: str, value: Any) -> list[str] | None:
    """Normalise ``None`` / a column name / a list of names to a list (or None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, pd.Index)):
        if len(value) == 0:
            return None
        return list(value)
    raise ValueError(f"{name} must be a column name or a list of column names, got {type(value).__name__}.")


# ----------------------------------------------------------------------------
# treatment
# ----------------------------------------------------------------------------
def check_data(data: Any) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if len(data) == 0:
        raise ValueError("data has no rows.")
    if not data.index.is_unique:
        dup = data.index.duplicated(keep=False)
        raise ValueError(
            f"data's index has duplicated labels ({_rows(data.index, dup)}); matched rows are "
            "identified by their index, so make it unique first, e.g. data.reset_index(drop=True)."
        )
    return data


def check_treatment(data: pd.DataFrame, treatment: Any) -> np.ndarray:
    """Return the treatment as a boolean array (True = treated)."""
    if not isinstance(treatment, str):
        raise ValueError(f"treatment must be a column name (str), got {treatment!r}.")
    check_columns(data, "treatment", [treatment])
    col = data[treatment]
    if pd.api.types.is_bool_dtype(col.dtype):
        if col.isna().any():
            raise ValueError(
                f"treatment column {treatment!r} has missing values in {_rows(data.index, col.isna().to_numpy())}; "
                "drop those rows first."
            )
        t = col.to_numpy(dtype=bool)
    elif pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=float, na_value=np.nan)
        bad = ~np.isin(values, (0.0, 1.0))
        if bad.any():
            shown = pd.unique(values[bad])[:_MAX_ROWS_SHOWN]
            raise ValueError(
                f"treatment column {treatment!r} must be 0/1 or boolean; {_rows(data.index, bad)} "
                f"hold other values ({', '.join(map(repr, shown.tolist()))}). Recode it, e.g. "
                f"data[{treatment!r}] == 'contact'."
            )
        t = values == 1.0
    else:
        raise ValueError(
            f"treatment column {treatment!r} has dtype {col.dtype}; it must be 0/1 or boolean. "
            f"Recode it, e.g. (data[{treatment!r}] == 'treated')."
        )
    n1 = int(t.sum())
    if n1 == 0 or n1 == len(t):
        group = "treated" if n1 == 0 else "control"
        raise ValueError(f"treatment column {treatment!r} has no {group} units; both groups are needed.")
    return t


# ----------------------------------------------------------------------------
# covariates
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Covariates:
    """Numeric design built from the covariates.

    Attributes
    ----------
    model : numpy.ndarray
        ``(n, 1 + p)`` matrix for the propensity model: intercept, numeric
        columns and treatment-coded dummies (first level dropped, as R does).
    model_names : tuple of str
        Column names of ``model`` (first is ``"Intercept"``).
    balance : numpy.ndarray
        ``(n, q)`` matrix for balance tables: numeric columns and one 0/1
        indicator per level of every categorical covariate (as MatchIt does).
    balance_names : tuple of str
    balance_source : tuple of str
        For each balance column, the variable it comes from.
    variables : tuple of str
        The raw variables used.
    formula : str or None
        The right-hand side when covariates were given as a formula.
    """

    model: np.ndarray
    model_names: tuple
    balance: np.ndarray
    balance_names: tuple
    balance_source: tuple
    variables: tuple
    formula: str | None = None


def _levels(col: pd.Series) -> list:
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(pd.unique(col.dropna()))
        return [c for c in col.cat.categories if c in present]
    return sorted(pd.unique(col.dropna()).tolist(), key=lambda v: (str(type(v)), v))


def column_kind(data: pd.DataFrame, c: str, argname: str) -> str:
    col = data[c]
    dt = col.dtype
    if pd.api.types.is_bool_dtype(dt):
        return "bool"
    if isinstance(dt, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dt):
        return "numeric"
    if pd.api.types.is_string_dtype(dt) or dt is np.dtype(object) or dt == np.dtype(object):
        # every non-missing value a str (checked in C: a lambda per row cost seconds per call at 1M rows)
        if dt == np.dtype(object) and pd.api.types.infer_dtype(col, skipna=True) not in ("string", "empty"):
            raise ValueError(
                f"{argname}: column {c!r} mixes strings with other types; convert it first, e.g. "
                f"data[{c!r}].astype(str) or pd.to_numeric(data[{c!r}])."
            )
        return "categorical"
    raise ValueError(
        f"{argname}: column {c!r} has dtype {dt}, which cannot be matched on; convert it to a number "
        "(e.g. days since a reference date) or to a category."
    )


def check_complete(data: pd.DataFrame, argname: str, columns: Sequence[str]) -> None:
    """Raise one ValueError naming every column with missing or non-finite values."""
    problems = []
    for c in columns:
        col = data[c]
        bad = col.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            vals = col.to_numpy(dtype=float, na_value=np.nan)
            bad = bad | ~np.isfinite(vals)
        if bad.any():
            problems.append(f"{c!r}: {_rows(data.index, bad)}")
    if problems:
        raise ValueError(
            f"{argname}: {'covariates' if argname == 'covariates' else 'columns'} with missing or "
            "non-finite values: " + "; ".join(problems)
            + ". Drop or impute those rows first (pd.isnull / np.isfinite find them), "
            "e.g. data.dropna(subset=[...])."
        )


def expand(data: pd.DataFrame, columns: Sequence[str], argname: str, *, drop_first: bool):
    """Numeric matrix from columns: numbers as is, bools as 0/1, categories as indicators.

    Returns ``(matrix, names, source)``.  With ``drop_first`` the first level of
    every categorical column is left out (treatment coding for a model with an
    intercept); otherwise every level gets an indicator.
    """
    blocks, names, source = [], [], []
    for c in columns:
        kind = column_kind(data, c, argname)
        col = data[c]
        if kind in ("numeric", "bool"):
            blocks.append(col.to_numpy(dtype=float)[:, None])
            names.append(c)
            source.append(c)
        else:
            levels = _levels(col)
            codes = pd.Categorical(col, categories=levels).codes
            start = 1 if drop_first else 0
            if len(levels) > start:
                ind = (codes[:, None] == np.arange(start, len(levels))[None, :]).astype(float)
                blocks.append(ind)
                names.extend(f"{c}[{lv}]" for lv in levels[start:])
                source.extend([c] * (len(levels) - start))
    if blocks:
        mat = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
    else:
        mat = np.empty((len(data), 0))
    return np.ascontiguousarray(mat, dtype=float), names, source


def _codes_levels(col: pd.Series) -> tuple[np.ndarray, list]:
    """Level codes (in :func:`_levels` order) and the levels of a complete categorical column.

    The codes of ``pd.Categorical(col, categories=_levels(col))``; for a column that is not a pandas
    Categorical one hash pass finds both (the levels sorted as :func:`_levels` sorts them).
    """
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = _levels(col)
        return np.asarray(pd.Categorical(col, categories=levels).codes), levels
    codes0, uniques = pd.factorize(col, use_na_sentinel=True)
    seen = list(uniques.tolist() if hasattr(uniques, "tolist") else list(uniques))
    levels = sorted(seen, key=lambda v: (str(type(v)), v))
    rank = {v: i for i, v in enumerate(levels)}
    remap = np.array([rank[v] for v in seen], dtype=np.int64)
    return (remap[codes0] if len(remap) else np.full(len(col), -1, dtype=np.int64)), levels


def _complete_values(data: pd.DataFrame, argname: str, columns: Sequence[str], kinds: Sequence[str]) -> list:
    """:func:`check_complete` that hands back each numeric column as floats (None for the others)."""
    problems = []
    values: list = []
    for c, kind in zip(columns, kinds):
        col = data[c]
        if kind == "numeric":
            vals = col.to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isfinite(vals)                     # missing values are NaN here
            values.append(vals)
        else:
            bad = col.isna().to_numpy()
            values.append(None)
        if bad.any():
            problems.append(f"{c!r}: {_rows(data.index, bad)}")
    if problems:
        check_complete(data, argname, columns)          # the one message
    return values


def build_covariates(data: pd.DataFrame, treatment: str, covariates: Any) -> Covariates:
    """Validate ``covariates`` (list of columns or formula) and build the design matrices."""
    if isinstance(covariates, str):
        return _from_formula(data, treatment, covariates)
    cols = as_column_list("covariates", covariates)
    if not cols:
        raise ValueError("covariates must list at least one column (or be a formula string).")
    check_columns(data, "covariates", cols)
    if treatment in cols:
        raise ValueError(f"covariates must not include the treatment column {treatment!r}.")
    kinds = [column_kind(data, c, "covariates") for c in cols]      # each column's kind once
    values = _complete_values(data, "covariates", cols, kinds)
    n = len(data)
    # One pass over the columns: numbers converted once (the completeness check's own conversion), each
    # categorical's levels and codes found once; the model matrix (intercept, numbers, indicators of every
    # level but the first) and the balance matrix (every level) are filled in place.  The same matrices as
    # ``expand(drop_first=True)`` and ``expand(drop_first=False)``.
    m_names: list[str] = []
    b_names: list[str] = []
    b_source: list[str] = []
    cats: dict[int, tuple[np.ndarray, list]] = {}
    for j, (c, kind) in enumerate(zip(cols, kinds)):
        if kind in ("numeric", "bool"):
            m_names.append(c)
            b_names.append(c)
            b_source.append(c)
            continue
        codes, levels = _codes_levels(data[c])
        cats[j] = (codes, levels)
        if len(levels) > 1:
            m_names.extend(f"{c}[{lv}]" for lv in levels[1:])
        if len(levels) > 0:
            b_names.extend(f"{c}[{lv}]" for lv in levels)
            b_source.extend([c] * len(levels))
    # filled column by column in Fortran order (contiguous writes), then laid out in rows as before
    model = np.empty((n, 1 + len(m_names)), order="F")
    model[:, 0] = 1.0
    balance = model[:, 1:] if not cats else np.empty((n, len(b_names)), order="F")
    jm, jb = 1, 0
    for j, c in enumerate(cols):
        if j not in cats:
            v = values[j] if values[j] is not None else data[c].to_numpy(dtype=float)
            model[:, jm] = v
            if cats:
                balance[:, jb] = v
            jm += 1
            jb += 1
            continue
        codes, levels = cats[j]
        for k in range(len(levels)):
            ind = codes == k
            if k > 0:
                model[:, jm] = ind
                jm += 1
            balance[:, jb] = ind
            jb += 1
    model = np.ascontiguousarray(model)
    balance = model[:, 1:] if not cats else np.ascontiguousarray(balance)
    return Covariates(model, ("Intercept", *m_names), balance, tuple(b_names), tuple(b_source), tuple(cols))


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _from_formula(data: pd.DataFrame, treatment: str, formula: str) -> Covariates:
    import patsy

    if "~" in formula:
        lhs, rhs = formula.split("~", 1)
        if lhs.strip() and lhs.strip() != treatment:
            raise ValueError(
                f"covariates formula has left-hand side {lhs.strip()!r} but treatment={treatment!r}; "
                "give only the right-hand side (e.g. 'age + C(region)') or use the same name."
            )
    else:
        rhs = formula
    rhs = rhs.strip()
    if not rhs:
        raise ValueError("covariates formula has no terms on its right-hand side.")
    tokens = set(_IDENT.findall(rhs))
    used = [c for c in data.columns if isinstance(c, str) and c in tokens]
    if treatment in used:
        raise ValueError(f"covariates formula must not use the treatment column {treatment!r}.")
    if used:
        check_complete(data, "covariates", used)
    try:
        dm = patsy.dmatrix(rhs, data, NA_action="raise", return_type="dataframe", eval_env=1)
    except patsy.PatsyError as exc:
        raise ValueError(f"covariates formula {rhs!r} could not be evaluated: {exc}") from None
    info = dm.design_info
    if "Intercept" not in dm.columns:
        raise ValueError(
            "covariates formula removes the intercept ('- 1' or '0 +'); the propensity model always "
            "has one, so leave it in."
        )
    values = dm.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = [dm.columns[j] for j in np.flatnonzero(bad.any(axis=0))]
        raise ValueError(
            f"covariates: formula terms {cols} have non-finite values in {_rows(data.index, bad.any(axis=1))}; "
            "fix the data (e.g. log of zero) or the formula."
        )
    model = np.ascontiguousarray(values)
    m_names = tuple(dm.columns)
    # Balance columns: every non-intercept column, with single-factor
    # treatment-coded categorical terms expanded to one indicator per level.
    b_cols, b_names, b_source = [], [], []
    for term in info.terms:
        sl = info.term_name_slices[term.name()]
        if sl.stop - sl.start == 0 or term.name() == "Intercept":
            continue
        block = values[:, sl]
        full = _full_indicators(info, term, block)
        if full is not None:
            arr, names = full
            b_cols.append(arr)
            b_names.extend(names)
            b_source.extend([term.name()] * len(names))
        else:
            b_cols.append(block)
            b_names.extend(info.column_names[sl])
            b_source.extend([term.name()] * (sl.stop - sl.start))
    if not b_cols:
        raise ValueError(f"covariates formula {rhs!r} has no terms besides the intercept.")
    balance = np.ascontiguousarray(np.hstack(b_cols))
    return Covariates(model, m_names, balance, tuple(b_names), tuple(b_source), tuple(used), formula=rhs)


def _full_indicators(info, term, block):
    """For a term made of one categorical factor coded by indicators, all levels' indicators."""
    if len(term.factors) != 1:
        return None
    factor = term.factors[0]
    finfo = info.factor_infos[factor]
    if finfo.type != "categorical":
        return None
    codings = info.term_codings[term]
    if len(codings) != 1:
        return None
    cm = codings[0].contrast_matrices.get(factor)
    if cm is None:
        return None
    mat = np.asarray(cm.matrix)
    is01 = np.isin(mat, (0.0, 1.0)).all()
    if not is01 or not (mat.sum(axis=0) == 1).all() or (mat.sum(axis=1) > 1).any():
        return None
    cats = list(finfo.categories)
    col_of_level = {int(np.argmax(mat[:, j])): j for j in range(mat.shape[1])}
    name = factor.name()
    out = np.zeros((block.shape[0], len(cats)))
    rowsum = block.sum(axis=1)
    for lv in range(len(cats)):
        if lv in col_of_level:
            out[:, lv] = block[:, col_of_level[lv]]
        else:  # the reference level: no indicator among the model columns
            out[:, lv] = 1.0 - rowsum
    keep = out.any(axis=0)
    return out[:, keep], [f"{name}[{c}]" for c, k in zip(cats, keep) if k]


def exact_codes(data: pd.DataFrame, exact: Sequence[str]) -> tuple[np.ndarray, list]:
    """Integer stratum code per row for the combination of ``exact`` columns."""
    check_columns(data, "exact", exact)
    check_complete(data, "exact", exact)
    codes = data.groupby(list(exact), sort=True, observed=True, dropna=False).ngroup().to_numpy()
    return codes.astype(np.int64), list(exact)
