"""``match()``: one entry point for nearest-neighbour matching, CEM and ATT weighting.

:func:`match` validates its inputs once, estimates the propensity score when
the method needs one, dispatches to :mod:`.nearest`, :mod:`.cem` or
:mod:`.weighting`, and returns a :class:`MatchResult` that records how it
was made.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .._version import __version__
from ..results import Reporting, Result, tidy
from . import _inputs as inp
from .balance import balance_table, sample_sizes
from .cem import cem_subclass
from .nearest import greedy_nearest, mahalanobis_transform
from .propensity import PropensityFit, fit_propensity
from .weighting import (
    att_ipw_weights,
    subclass_from_matches,
    weights_from_matches,
    weights_from_subclass,
)

__all__ = ["match", "MatchResult", "SMD_THRESHOLD"]

#: |SMD| at or above which a covariate is called imbalanced.
SMD_THRESHOLD = 0.1

TIE_RULE = (
    "units are sorted by (exact stratum, distance, row position); exactly equal distances are "
    "ordered by row position, among treated units (matching order) and controls alike, and a "
    "treated unit equally near to a control below and above it takes the one below (MatchIt 4.5)"
)

_DEFAULTS = dict(distance="ps", ratio=1, replace=False, caliper=None, std_caliper=True,
                 order="largest", exact=None, mahalanobis=None, discard="none", trim=None,
                 cutpoints=None)
_USED_BY = {
    "nearest": {"distance", "ratio", "replace", "caliper", "std_caliper", "order", "exact",
                "mahalanobis", "discard"},
    "cem": {"cutpoints"},
    "ipw": {"distance", "discard", "trim"},
}


def _is_default(name: str, value: Any) -> bool:
    default = _DEFAULTS[name]
    if default is None:
        return value is None
    return isinstance(value, type(default)) and value == default


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def match(
    data: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str] | str,
    *,
    method: str = "nearest",
    distance: str = "ps",
    ratio: int = 1,
    replace: bool = False,
    caliper: float | None = None,
    std_caliper: bool = True,
    order: str = "largest",
    exact: str | Sequence[str] | None = None,
    mahalanobis: str | Sequence[str] | None = None,
    discard: str = "none",
    seed: int | np.random.Generator | None = None,
    trim: float | None = None,
    cutpoints: Mapping[str, Any] | None = None,
) -> "MatchResult":
    """Match (or weight) control units to treated units for the ATT.

    Defaults mirror R's ``MatchIt::matchit(method = "nearest", distance =
    "glm")``: 1:1 greedy nearest-neighbour matching without replacement on a
    logistic-regression propensity score, largest score first, no caliper.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit; any index (it is kept in the matched data).  Never
        modified.
    treatment : str
        Name of a 0/1 or boolean column; 1/True marks the treated (focal)
        units.
    covariates : list of str or str
        Columns to balance.  Numeric and boolean columns are used as they
        are; string and categorical columns become one indicator per level
        (the propensity model drops the first level, the balance table shows
        all levels, as MatchIt).  A string is read as a patsy formula, e.g.
        ``"age + np.log(income) + C(region)"`` (an optional left-hand side
        must be the treatment).
    method : {"nearest", "cem", "ipw"}, default "nearest"
        ``"nearest"``: greedy nearest-neighbour matching on the distance.
        ``"cem"``: coarsened exact matching (covariates must be a list).
        ``"ipw"``: inverse-probability weights for the ATT (treated 1,
        controls ``ps / (1 - ps)``) instead of matching.
    distance : {"ps", "logit"}, default "ps"
        Distance to match on: the propensity score (MatchIt's default) or
        its logit, the linear predictor (MatchIt's ``link =
        "linear.logit"``; Austin's 0.2 SD caliper refers to this scale).
    ratio : int, default 1
        Number of controls per treated unit.  Without replacement they are
        assigned in rounds: every treated unit gets its first control before
        any gets its second.
    replace : bool, default False
        Allow a control to be matched to several treated units.  Then
        ``subclass`` is not defined (a control may sit in several sets): use
        ``matched_data(form="sets")`` and cluster standard errors by unit
        (the index), not by set.
    caliper : float, optional
        Largest allowed distance difference in a pair; treated units with no
        control that near stay unmatched.
    std_caliper : bool, default True
        Whether ``caliper`` is in standard deviations of the distance (the
        ``n - 1`` SD over all non-discarded units, treated and control, as
        MatchIt computes it) or in distance units.
    order : {"largest", "smallest", "random", "data"}, default "largest"
        Order in which treated units choose: by decreasing or increasing
        distance, at random (see ``seed``), or in row order.
    exact : str or list of str, optional
        Columns on which pairs must agree exactly (e.g. trigger type,
        operator); matches never cross these strata.
    mahalanobis : str or list of str, optional
        Columns whose Mahalanobis distance (pooled within-group covariance)
        chooses among the controls within the caliper on ``distance``; as
        MatchIt's ``mahvars``.  Without a caliper every control is a
        candidate, which is slow on large data.
    discard : {"none", "treated", "control", "both"}, default "none"
        Drop units outside the common support of the distance before
        matching: treated units beyond the controls' range, controls beyond
        the treated range, or both.
    seed : int or numpy.random.Generator, optional
        Random state for ``order="random"``.
    trim : float, optional
        ``method="ipw"`` only: quantile in (0, 1) at which control weights
        are capped (e.g. 0.99).
    cutpoints : dict, optional
        ``method="cem"`` only: per numeric column, ``"sturges"`` (default),
        a number of equal-width bins (0 = no coarsening), ``"qK"`` for K
        quantile bins, or a list of cut points.

    Returns
    -------
    MatchResult
        Matched data, weights, balance table, counts and a record of the
        settings.

    Raises
    ------
    ValueError
        For an unknown option, an option the method does not use, a
        treatment that is not 0/1, covariates with missing or non-finite
        values (the message names columns and rows), or when no treated unit
        could be matched.

    Warns
    -----
    UserWarning
        When there are fewer controls than treated units x ratio (without
        replacement), when the propensity model has collinear columns or
        separates the groups, or when ``order="random"`` has no seed.

    See Also
    --------
    MatchResult.balance : the balance table.
    carecall_eval.plotting.love_plot : SMD before vs after.

    Notes
    -----
    Greedy matching costs O((n_t + n_c) log n_c): one sort and a union-find
    "next free control" structure, never a treated x control comparison
    (see :mod:`carecall_eval.matching.nearest`).  Weights follow MatchIt:
    matched treated units weigh 1; a control weighs ``1/k`` for every set of
    ``k`` controls it belongs to, rescaled so matched controls' weights sum
    to their number.  Tie rule: exactly equal distances are ordered by row
    position; otherwise results do not depend on the row order.

    Pairs, weights, subclasses, counts and balance statistics equal
    MatchIt's on its reference cases (``tests/results/``).  Known
    differences: subclass numbers follow the row order of the treated units
    (MatchIt numbers the same sets in the lexical order of row names);
    ``order="random"`` uses numpy's generator, not R's.  MatchIt 4.5.1-4.5.3
    have bugs in their fast 1-D matcher that this implementation does not
    copy: on some platforms the caliper is ignored and the lower neighbour
    is always taken (MatchIt issue #163), and with ``replace=TRUE`` and
    ``ratio > 1`` a treated unit can get the same control twice (#159).

    References
    ----------
    Ho, Imai, King & Stuart (2011). MatchIt: Nonparametric preprocessing for
    parametric causal inference. *Journal of Statistical Software* 42(8).
    Austin (2011). Optimal caliper widths for propensity-score matching.
    *Pharmaceutical Statistics* 10(2), 150-161.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from carecall_eval.matching import match
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"age": rng.normal(40, 10, 400), "loss": rng.gamma(2, 50, 400)})
    >>> df["reached"] = rng.random(400) < 1 / (1 + np.exp(-(-2 + 0.03 * (df.age - 40))))
    >>> res = match(df, "reached", ["age", "loss"], caliper=0.2)
    >>> int(res.counts.loc["matched", "treated"]) <= int(df.reached.sum())
    True
    >>> sorted(res.matched_data().columns)[-3:]
    ['reached', 'subclass', 'weights']
    """
    # ---- options (cheap checks first) --------------------------------------
    inp.check_option("method", method, inp.METHODS)
    given = dict(distance=distance, ratio=ratio, replace=replace, caliper=caliper,
                 std_caliper=std_caliper, order=order, exact=exact, mahalanobis=mahalanobis,
                 discard=discard, trim=trim, cutpoints=cutpoints)
    unused = [k for k, v in given.items() if k not in _USED_BY[method] and not _is_default(k, v)]
    if unused:
        raise ValueError(
            f"method={method!r} does not use {', '.join(f'{k}={given[k]!r}' for k in unused)}; "
            "leave them at their defaults."
        )
    inp.check_option("distance", distance, inp.DISTANCES)
    ratio = inp.check_int("ratio", ratio, 1)
    replace = inp.check_bool("replace", replace)
    caliper = inp.check_positive("caliper", caliper)
    std_caliper = inp.check_bool("std_caliper", std_caliper)
    inp.check_option("order", order, inp.ORDERS)
    inp.check_option("discard", discard, inp.DISCARDS)
    trim = inp.check_positive("trim", trim, upper=1.0)
    exact_cols = inp.as_column_list("exact", exact)
    mahal_cols = inp.as_column_list("mahalanobis", mahalanobis)
    if cutpoints is not None and not isinstance(cutpoints, Mapping):
        raise ValueError("cutpoints must be a dict {column: spec}.")
    if isinstance(seed, bool) or (seed is not None and not isinstance(seed, (int, np.integer, np.random.Generator))):
        raise ValueError(f"seed must be an int, a numpy Generator or None, got {seed!r}.")
    if method == "nearest" and order == "random" and seed is None and not replace:
        warnings.warn("order='random' without a seed: the matches cannot be reproduced; pass seed=.",
                      UserWarning, stacklevel=2)

    # ---- data ----------------------------------------------------------------
    data = inp.check_data(data)
    treat = inp.check_treatment(data, treatment)
    n = len(data)
    for name, cols in (("exact", exact_cols), ("mahalanobis", mahal_cols)):
        if cols and treatment in cols:
            raise ValueError(f"{name} must not include the treatment column {treatment!r}.")

    if method == "cem":
        if isinstance(covariates, str):
            raise ValueError("method='cem' needs covariates as a list of columns, not a formula.")
        cols = inp.as_column_list("covariates", covariates)
        if not cols:
            raise ValueError("covariates must list at least one column.")
        inp.check_columns(data, "covariates", cols)
        if treatment in cols:
            raise ValueError(f"covariates must not include the treatment column {treatment!r}.")
        for c in cols:
            inp.column_kind(data, c, "covariates")
        inp.check_complete(data, "covariates", cols)
        X, terms, sources = inp.expand(data, cols, "covariates", drop_first=False)
        variables = tuple(cols)
        formula = None
        fit = None
        dist = None
    else:
        design = inp.build_covariates(data, treatment, covariates)
        X, terms, sources = design.balance, list(design.balance_names), list(design.balance_source)
        variables, formula = design.variables, design.formula
        fit = fit_propensity(design.model, treat, design.model_names)
        del design
        dist = fit.ps if distance == "ps" else fit.linear_predictor

    discarded = np.zeros(n, dtype=bool)
    if dist is not None and discard != "none":
        dt, dc = dist[treat], dist[~treat]
        if discard == "both":
            discarded = (dist < max(dc.min(), dt.min())) | (dist > min(dc.max(), dt.max()))
        elif discard == "control":
            discarded = (dist < dt.min()) | (dist > dt.max())
        else:  # treated
            discarded = (dist < dc.min()) | (dist > dc.max())

    caliper_abs = None
    matches = None
    trim_cap = None
    subclass = None
    if method == "nearest":
        if caliper is not None:
            caliper_abs = caliper * float(np.std(dist[~discarded], ddof=1)) if std_caliper else caliper
        codes = inp.exact_codes(data, exact_cols)[0] if exact_cols else None
        Z = None
        if mahal_cols:
            inp.check_columns(data, "mahalanobis", mahal_cols)
            inp.check_complete(data, "mahalanobis", mahal_cols)
            Xm, _, _ = inp.expand(data, mahal_cols, "mahalanobis", drop_first=False)
            Z = mahalanobis_transform(Xm, treat, discarded)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        matches = greedy_nearest(dist, treat, ratio=ratio, replace=replace, caliper=caliper_abs,
                                 order=order, discarded=discarded, exact=codes, mahalanobis=Z, rng=rng)
        if not (matches[:, 0] >= 0).any():
            raise ValueError(
                "No treated unit could be matched"
                + (f" within the caliper ({caliper_abs:.4g} in distance units)" if caliper_abs else "")
                + (" inside the exact strata" if exact_cols else "")
                + "; widen the caliper, relax exact matching or check the data."
            )
        weights = weights_from_matches(matches, treat)
        if not replace:
            subclass = subclass_from_matches(matches, treat)
    elif method == "cem":
        subclass = cem_subclass(data, variables, treat, cutpoints)
        if not (subclass >= 0).any():
            raise ValueError(
                "No stratum holds both treated and control units; coarsen further (fewer bins via "
                "cutpoints) or match on fewer covariates."
            )
        weights = weights_from_subclass(subclass, treat)
    else:  # ipw
        weights, trim_cap = att_ipw_weights(fit.ps, treat, discarded=discarded, trim=trim)

    counts, ess = sample_sizes(treat, weights, discarded)
    params = {
        "method": method,
        "estimand": "ATT",
        "treatment": treatment,
        "covariates": formula if formula is not None else list(variables),
        "terms": list(terms),
        "distance": None if method == "cem" else distance,
        "distance_model": None if method == "cem" else "logistic regression (statsmodels Logit)",
        "ratio": ratio if method == "nearest" else None,
        "replace": replace if method == "nearest" else None,
        "caliper": caliper,
        "std_caliper": std_caliper if caliper is not None else None,
        "caliper_distance_units": caliper_abs,
        "order": (order if not replace else "irrelevant (replace=True)") if method == "nearest" else None,
        "exact": exact_cols,
        "mahalanobis": mahal_cols,
        "discard": discard,
        "seed": int(seed) if isinstance(seed, (int, np.integer)) else (None if seed is None else "Generator"),
        "trim": trim,
        "trim_cap": trim_cap,
        "cutpoints": _jsonable(dict(cutpoints)) if cutpoints else None,
        "tie_rule": TIE_RULE if method == "nearest" else None,
        "n": n,
        "n_treated": int(treat.sum()),
        "n_control": int((~treat).sum()),
        "package_version": __version__,
    }
    return MatchResult(
        settings=params,
        counts=counts,
        ess=ess,
        propensity=fit,
        match_matrix=matches,
        _data=data,
        _treat=treat,
        _weights=weights,
        _subclass=subclass,
        _distance=dist,
        _discarded=discarded,
        _X=X,
        _terms=tuple(terms),
        _sources=tuple(sources),
    )


@dataclass(frozen=True, eq=False, repr=False)
class MatchResult(Reporting):
    """Outcome of :func:`match`.

    Attributes
    ----------
    settings : dict
        How the result was made (JSON-serialisable): method, estimand
        ``"ATT"``, treatment, covariates and expanded terms, distance,
        ratio, replace, caliper (as given and in distance units), order,
        exact, mahalanobis, discard, seed, trim, tie rule, sizes and package
        version.
    counts : pandas.DataFrame
        Units by group (columns ``control``, ``treated``): ``all``,
        ``matched``, ``unmatched``, ``discarded``.
    ess : pandas.DataFrame
        Kish effective sample sizes by group, before (``all``) and after
        (``matched``) weighting.
    propensity : PropensityFit or None
        The fitted propensity model (``None`` for CEM): ``propensity.coef``,
        ``propensity.results`` (statsmodels), ``propensity.ps``.
    match_matrix : numpy.ndarray or None
        Nearest-neighbour matching only: ``(n_treated, ratio)`` row
        positions of the controls matched to each treated unit (treated in
        row order), ``-1`` for none.  :meth:`pairs` gives it with labels.
    """

    settings: dict
    counts: pd.DataFrame
    name = "matching"
    ess: pd.DataFrame
    propensity: PropensityFit | None
    match_matrix: np.ndarray | None = field(repr=False)
    _data: pd.DataFrame = field(repr=False)
    _treat: np.ndarray = field(repr=False)
    _weights: np.ndarray = field(repr=False)
    _subclass: np.ndarray | None = field(repr=False)
    _distance: np.ndarray | None = field(repr=False)
    _discarded: np.ndarray = field(repr=False)
    _X: np.ndarray = field(repr=False)
    _terms: tuple = field(repr=False)
    _sources: tuple = field(repr=False)

    # ---- simple views --------------------------------------------------------
    @property
    def method(self) -> str:
        """``"nearest"``, ``"cem"`` or ``"ipw"``."""
        return self.settings["method"]

    @property
    def estimand(self) -> str:
        """Always ``"ATT"``."""
        return self.settings["estimand"]

    @property
    def coef(self) -> pd.Series | None:
        """Propensity-model coefficients (``None`` for CEM)."""
        return None if self.propensity is None else self.propensity.coef

    @property
    def weights(self) -> pd.Series:
        """Weight of every unit of the input data (0 = not in the matched sample)."""
        return pd.Series(self._weights, index=self._data.index, name="weights")

    @property
    def distance(self) -> pd.Series | None:
        """The distance matched on (propensity score or its logit); ``None`` for CEM."""
        if self._distance is None:
            return None
        return pd.Series(self._distance, index=self._data.index, name="distance")

    @property
    def subclass(self) -> pd.Series:
        """Pair/set (nearest) or stratum (CEM) of every unit; ``<NA>`` if none or undefined."""
        if self._subclass is None:
            return pd.Series(pd.array([pd.NA] * len(self._weights), dtype="Int64"),
                             index=self._data.index, name="subclass")
        s = pd.array(self._subclass, dtype="Int64")
        s[self._subclass < 0] = pd.NA
        return pd.Series(s, index=self._data.index, name="subclass")

    @property
    def discarded(self) -> pd.Series:
        """Units dropped for lying outside the common support."""
        return pd.Series(self._discarded, index=self._data.index, name="discarded")

    # ---- data out --------------------------------------------------------------
    def matched_data(
        self,
        form: str = "units",
        *,
        weights: str = "weights",
        subclass: str = "subclass",
        distance: str = "distance",
    ) -> pd.DataFrame:
        """The matched sample: the input rows (index kept) plus weights, subclass and distance.

        Parameters
        ----------
        form : {"units", "sets"}, default "units"
            ``"units"``: each unit with a positive weight once, in input
            order (MatchIt's ``match.data()``); with ``replace=True`` the
            subclass is ``<NA>`` because a control may belong to several
            sets.  ``"sets"`` (nearest-neighbour only): one row per unit and
            matched set (MatchIt's ``get_matches()``), so a control reused
            by several treated units appears several times; there the
            weight is 1 for treated units and ``1/k`` for each of the ``k``
            controls of a set.  With replacement, cluster standard errors by
            unit (the index), not by subclass.
        weights, subclass, distance : str
            Names of the added columns; change them if the data already
            has columns of these names.

        Returns
        -------
        pandas.DataFrame
            A new frame; the input data are not modified.
        """
        inp.check_option("form", form, ("units", "sets"))
        clash = [c for c in (weights, subclass, distance) if c in self._data.columns]
        if clash:
            raise ValueError(
                f"the data already have column(s) {clash}; pass other names, e.g. "
                "matched_data(weights='match_weight', subclass='match_set', distance='match_distance')."
            )
        if form == "units":
            pos = np.flatnonzero(self._weights > 0)
            out = self._data.iloc[pos].copy()
            out[distance] = np.nan if self._distance is None else self._distance[pos]
            out[weights] = self._weights[pos]
            out[subclass] = self.subclass.to_numpy()[pos]
            return out
        if self.match_matrix is None:
            raise ValueError(f"form='sets' needs nearest-neighbour matching; method={self.method!r} "
                             "has no sets beyond its subclasses: use form='units'.")
        mm = self.match_matrix
        t_rows = np.flatnonzero(self._treat)
        has = mm[:, 0] >= 0
        k = (mm >= 0).sum(axis=1)
        set_id = np.cumsum(has)            # sets numbered in treated row order
        rows, sets, w = [t_rows[has]], [set_id[has]], [np.ones(int(has.sum()))]
        for s in range(mm.shape[1]):
            ok = mm[:, s] >= 0
            rows.append(mm[ok, s])
            sets.append(set_id[ok])
            w.append(1.0 / k[ok])
        rows_a, sets_a, w_a = np.concatenate(rows), np.concatenate(sets), np.concatenate(w)
        is_t = np.concatenate([np.ones(int(has.sum()), dtype=bool)] + [np.zeros(len(r), dtype=bool) for r in rows[1:]])
        o = np.lexsort((~is_t, sets_a))  # by set, treated first
        rows_a, sets_a, w_a = rows_a[o], sets_a[o], w_a[o]
        out = self._data.iloc[rows_a].copy()
        out[distance] = self._distance[rows_a]
        out[weights] = w_a
        out[subclass] = pd.array(sets_a, dtype="Int64")
        return out

    def pairs(self) -> pd.DataFrame:
        """Matched pairs (nearest-neighbour only), labelled by the data's index.

        Returns
        -------
        pandas.DataFrame
            One row per (treated, control) pair: ``subclass`` (set id in
            treated row order), ``round`` (1 = first control of the treated
            unit), ``treated`` and ``control`` (index labels), and their
            distances ``distance_treated``, ``distance_control``.
        """
        if self.match_matrix is None:
            raise ValueError(f"pairs() needs nearest-neighbour matching; method={self.method!r}.")
        mm = self.match_matrix
        t_rows = np.flatnonzero(self._treat)
        set_id = np.cumsum(mm[:, 0] >= 0)
        parts = []
        for s in range(mm.shape[1]):
            ok = mm[:, s] >= 0
            parts.append(pd.DataFrame({"subclass": set_id[ok], "round": s + 1,
                                       "treated_pos": t_rows[ok], "control_pos": mm[ok, s]}))
        p = pd.concat(parts, ignore_index=True).sort_values(["subclass", "round"], kind="stable")
        idx = self._data.index
        return pd.DataFrame({
            "subclass": p["subclass"].to_numpy(),
            "round": p["round"].to_numpy(),
            "treated": idx[p["treated_pos"].to_numpy()],
            "control": idx[p["control_pos"].to_numpy()],
            "distance_treated": self._distance[p["treated_pos"].to_numpy()],
            "distance_control": self._distance[p["control_pos"].to_numpy()],
        })

    # ---- diagnostics -----------------------------------------------------------
    def balance(self) -> pd.DataFrame:
        """Balance table before and after matching (MatchIt's ``summary()`` for the ATT).

        Returns
        -------
        pandas.DataFrame
            One row per covariate term (every level of a categorical
            covariate), preceded by ``distance`` when there is one; columns
            ``variable``, ``binary`` and ``mean_treated``, ``mean_control``,
            ``smd``, ``var_ratio``, ``ecdf_mean``, ``ecdf_max`` each with
            suffix ``_before`` and ``_after``.  See
            :mod:`carecall_eval.matching.balance` for the definitions.
        """
        return self._balance.copy()

    @cached_property
    def _balance(self) -> pd.DataFrame:
        return balance_table(self._X, self._terms, self._treat, self._weights,
                             variables=self._sources, distance=self._distance)

    def imbalanced(self, threshold: float = SMD_THRESHOLD) -> pd.Series:
        """Covariate terms whose |SMD| after matching is at least ``threshold``.

        Returns
        -------
        pandas.Series
            SMD after matching of the imbalanced terms (the distance row
            excluded), largest |SMD| first.
        """
        b = self._balance.drop(index="distance", errors="ignore")["smd_after"]
        bad = b[b.abs() >= threshold]
        return bad.reindex(bad.abs().sort_values(ascending=False, kind="stable").index)

    @property
    def summary(self) -> pd.DataFrame:
        """Tidy summary (columns :data:`carecall_eval.SUMMARY_COLUMNS`).

        Rows: units, matched, unmatched and discarded units and effective
        sample size by group; the largest |SMD| before and after; the number
        of covariate terms with |SMD| >= 0.1 after.
        """
        label = self._label()
        rows = []
        for g in ("treated", "control"):
            for m in ("all", "matched", "unmatched", "discarded"):
                v = int(self.counts.loc[m, g])
                rows.append({"metric": f"n_{m}", "group": g, "estimate": v, "n": v, "method": label})
            rows.append({"metric": "ess_matched", "group": g, "estimate": float(self.ess.loc["matched", g]),
                         "n": int(self.counts.loc["matched", g]), "method": label})
        b = self._balance.drop(index="distance", errors="ignore")
        n_all = int(self.counts.loc["all"].sum())
        n_m = int(self.counts.loc["matched"].sum())
        rows.append({"metric": "max_abs_smd_before", "group": "all",
                     "estimate": float(b["smd_before"].abs().max()), "n": n_all, "method": label})
        rows.append({"metric": "max_abs_smd_after", "group": "all",
                     "estimate": float(b["smd_after"].abs().max()), "n": n_m, "method": label})
        rows.append({"metric": "n_imbalanced_after", "group": "all",
                     "estimate": float(len(self.imbalanced())), "n": n_m, "method": label})
        return tidy(rows)

    def _label(self) -> str:
        p = self.settings
        dist = {"ps": "propensity score", "logit": "logit of the propensity score"}.get(p["distance"] or "")
        if p["method"] == "nearest":
            s = f"nearest-neighbour {p['ratio']}:1 {'with' if p['replace'] else 'without'} replacement on the {dist}"
            if p["caliper"] is not None:
                s += (f", caliper {p['caliper']:g} SD ({p['caliper_distance_units']:.4g})" if p["std_caliper"]
                      else f", caliper {p['caliper']:g}")
            if p["exact"]:
                s += f", exact on {', '.join(p['exact'])}"
            if p["mahalanobis"]:
                s += f", Mahalanobis on {', '.join(p['mahalanobis'])}"
            return s
        if p["method"] == "cem":
            return "coarsened exact matching"
        return "inverse-probability (ATT odds) weighting" + (f", trimmed at q{p['trim']:g}" if p["trim"] else "")

    @cached_property
    def text(self) -> str:
        """Plain-language account: who was matched, and which covariates remain imbalanced."""
        c = self.counts
        nt, nc = int(c.loc["all", "treated"]), int(c.loc["all", "control"])
        mt, mc = int(c.loc["matched", "treated"]), int(c.loc["matched", "control"])
        p = self.settings
        parts = []
        if p["method"] == "ipw":
            cap = f" (control weights capped at {p['trim_cap']:.3g}, their {p['trim']:g} quantile)" if p["trim"] else ""
            parts.append(
                f"Inverse-probability weighting for the ATT reweights {mc:,} control units to resemble "
                f"{mt:,} treated units{cap}; the controls' effective sample size is "
                f"{self.ess.loc['matched', 'control']:,.1f} of {mc:,}."
            )
        else:
            what = ("Coarsened exact matching" if p["method"] == "cem"
                    else f"Matching ({self._label()})")
            parts.append(
                f"{what} kept {mt:,} of {nt:,} treated units ({100 * mt / nt:.1f}%) and {mc:,} of "
                f"{nc:,} control units."
            )
            lost = nt - mt
            if lost:
                why = []
                if int(c.loc["discarded", "treated"]):
                    why.append(f"{int(c.loc['discarded', 'treated']):,} outside the common support")
                if int(c.loc["unmatched", "treated"]):
                    if p["method"] == "cem":
                        reason = "in strata with no control unit"
                    elif p["caliper"] is not None:
                        reason = "with no control within the caliper" + (" in their exact stratum" if p["exact"] else "")
                    elif p["exact"]:
                        reason = "with no control left in their exact stratum"
                    else:
                        reason = "with no control left to match"
                    why.append(f"{int(c.loc['unmatched', 'treated']):,} {reason}")
                parts.append(
                    f"{lost:,} treated units were dropped ({'; '.join(why)}), so estimates describe "
                    "the matched treated units, not all of them."
                )
            if p["method"] == "nearest" and p["replace"]:
                reused = int((self._weights[~self._treat] > 0).sum())
                parts.append(f"With replacement, {reused:,} distinct controls were used; "
                             f"their effective sample size is {self.ess.loc['matched', 'control']:,.1f}.")
        bad = self.imbalanced()
        n_terms = len(self._terms)
        b = self._balance.drop(index="distance", errors="ignore")
        before_bad = int((b["smd_before"].abs() >= SMD_THRESHOLD).sum())
        if len(bad) == 0:
            worst = b["smd_after"].abs().idxmax() if b["smd_after"].notna().any() else None
            tail = f" (largest: {worst}, {b.loc[worst, 'smd_after']:+.3f})" if worst is not None else ""
            parts.append(
                f"Balance: {before_bad} of {n_terms} covariate terms had |SMD| >= {SMD_THRESHOLD} before; "
                f"after, all have |SMD| < {SMD_THRESHOLD}{tail}."
            )
        else:
            listed = ", ".join(f"{k} ({v:+.2f})" for k, v in bad.items())
            parts.append(
                f"Balance: {before_bad} of {n_terms} covariate terms had |SMD| >= {SMD_THRESHOLD} before; "
                f"after, {len(bad)} {'remains' if len(bad) == 1 else 'remain'} imbalanced: {listed}. "
                "Adjust for them in the outcome model or tighten the matching."
            )
        return " ".join(parts)

    def get_plot_data(self, key: str | None = None):
        """Data behind the plots: ``"balance"`` (term, smd_before, smd_after) for :func:`love_plot`."""
        bal = self._balance.reset_index()[["term", "variable", "smd_before", "smd_after"]]
        data = {"balance": bal}
        if key is None:
            return data
        try:
            return data[key]
        except KeyError:
            raise KeyError(f"matching result has no plot data {key!r}; available: {sorted(data)}") from None

    def to_result(self) -> Result:
        """The shared :class:`carecall_eval.Result` form (for reports)."""
        return Result(
            name="matching",
            summary=self.summary,
            text=self.text,
            settings=dict(self.settings),
            plot_data=self.get_plot_data(),
            details={"balance": self.balance(), "counts": self.counts.copy(), "ess": self.ess.copy(),
                     "propensity": self.propensity},
        )

    def print_summary(self, digits: int = 3) -> None:
        """Print the text, the sample sizes and the balance table."""
        print(self.text)
        print()
        print(self.counts.to_string())
        print()
        cols = [f"{s}_{w}" for w in ("before", "after") for s in ("mean_treated", "mean_control", "smd")]
        print(self._balance[cols].round(digits).to_string())

    def __repr__(self) -> str:
        return f"<MatchResult {self._label()}: {int(self.counts.loc['matched', 'treated'])} treated matched>"
