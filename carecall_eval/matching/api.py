"""``match()``: one entry point for nearest-neighbour matching, CEM and ATT weighting.

:func:`match` validates its inputs once, estimates the propensity score when
the method needs one, dispatches to :mod:`.nearest`, :mod:`.cem` or
:mod:`.weighting`, and returns a :class:`MatchResult` that records how it
was made.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .._version import __version__
from ..errors import CarecallWarning
from ..results import jsonable
from . import _inputs as inp
from .balance import sample_sizes
from .cem import cem_subclass
from .defaults import MATCHIT, TIE_RULE, USED_BY
from .nearest import greedy_nearest, mahalanobis_transform
from .propensity import aliased_columns, fit_propensity
from .result import MatchResult
from .weighting import (
    att_ipw_weights,
    subclass_from_matches,
    weights_from_matches,
    weights_from_subclass,
)

__all__ = ["match", "prepare_match", "match_prepared", "PreparedMatch"]


def match(
    data: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str] | str,
    *,
    method: str = MATCHIT.method,
    distance: str = MATCHIT.distance,
    ratio: int = MATCHIT.ratio,
    replace: bool = MATCHIT.replace,
    caliper: float | None = MATCHIT.caliper,
    std_caliper: bool = MATCHIT.std_caliper,
    order: str = MATCHIT.order,
    exact: str | Sequence[str] | None = MATCHIT.exact,
    mahalanobis: str | Sequence[str] | None = MATCHIT.mahalanobis,
    discard: str = MATCHIT.discard,
    seed: int | np.random.Generator | None = MATCHIT.seed,
    trim: float | None = MATCHIT.trim,
    cutpoints: Mapping[str, Any] | None = MATCHIT.cutpoints,
) -> MatchResult:
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
    carecall_eval.errors.SmallSampleWarning
        When there are fewer controls than treated units x ratio (without
        replacement).
    carecall_eval.errors.DataWarning
        When the propensity model has collinear columns (they are left out).
    carecall_eval.errors.ConvergenceWarning
        When the propensity model does not converge or separates the groups.
    carecall_eval.errors.CarecallWarning
        When ``order="random"`` has no seed.

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
    opts = _options(method=method, distance=distance, ratio=ratio, replace=replace, caliper=caliper,
                    std_caliper=std_caliper, order=order, exact=exact, mahalanobis=mahalanobis, discard=discard,
                    seed=seed, trim=trim, cutpoints=cutpoints)
    _warn_random_order(opts)

    # ---- data ----------------------------------------------------------------
    data = inp.check_data(data)
    treat = inp.check_treatment(data, treatment)
    _check_not_treatment(treatment, opts)

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
        return _match_built(data, treat, treatment, opts, X, terms, sources, tuple(cols), None, None)
    design = inp.build_covariates(data, treatment, covariates)
    return _match_built(data, treat, treatment, opts, design.balance, list(design.balance_names),
                        list(design.balance_source), design.variables, design.formula, design)


def _options(*, method, distance, ratio, replace, caliper, std_caliper, order, exact, mahalanobis, discard, seed,
             trim, cutpoints) -> dict:
    """Check :func:`match`'s options (cheap checks first); the normalised options."""
    inp.check_option("method", method, inp.METHODS)
    given = dict(distance=distance, ratio=ratio, replace=replace, caliper=caliper,
                 std_caliper=std_caliper, order=order, exact=exact, mahalanobis=mahalanobis,
                 discard=discard, trim=trim, cutpoints=cutpoints)
    unused = [k for k, v in given.items() if k not in USED_BY[method] and not MATCHIT.is_default(k, v)]
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
    opts = dict(method=method, distance=distance, ratio=ratio, replace=replace, caliper=caliper,
                std_caliper=std_caliper, order=order, exact_cols=exact_cols, mahal_cols=mahal_cols,
                discard=discard, seed=seed, trim=trim, cutpoints=cutpoints)
    return opts


def _warn_random_order(opts: dict) -> None:
    if opts["method"] == "nearest" and opts["order"] == "random" and opts["seed"] is None and not opts["replace"]:
        warnings.warn("order='random' without a seed: the matches cannot be reproduced; pass seed=.",
                      CarecallWarning, stacklevel=3)


def _check_not_treatment(treatment: str, opts: dict) -> None:
    for name, cols in (("exact", opts["exact_cols"]), ("mahalanobis", opts["mahal_cols"])):
        if cols and treatment in cols:
            raise ValueError(f"{name} must not include the treatment column {treatment!r}.")


@dataclass(frozen=True, eq=False)
class PreparedMatch:
    """What :func:`match` computes from the data alone, for matching many treatments on the same rows.

    Made by :func:`prepare_match`; :func:`match_prepared` then matches one treatment vector.  The result
    equals ``match(data.assign(**{treatment: treat}), treatment, covariates, **options)`` exactly: the
    covariate matrices, the collinear columns of the propensity model and the exact strata depend on the
    data only, and are found once.
    """

    data: pd.DataFrame
    treatment: str
    opts: dict
    design: inp.Covariates
    alias: np.ndarray
    codes: np.ndarray | None


def prepare_match(data: pd.DataFrame, treatment: str, covariates: Sequence[str] | str, **options) -> PreparedMatch:
    """The treatment-free part of :func:`match` (options as there; ``method="cem"`` is not supported).

    ``treatment`` names the column the treatment would have (it must not be among the covariates or the
    exact or Mahalanobis columns); its values in ``data`` are not read.
    """
    opts = _options(**{**_MATCHIT_OPTIONS, **options})
    if opts["method"] == "cem":
        raise ValueError("prepare_match: method='cem' is not supported; call match().")
    data = inp.check_data(data)
    if not isinstance(treatment, str):
        raise ValueError(f"treatment must be a column name (str), got {treatment!r}.")
    _check_not_treatment(treatment, opts)
    design = inp.build_covariates(data, treatment, covariates)
    alias = aliased_columns(design.model)
    codes = None
    if opts["method"] == "nearest" and opts["exact_cols"]:
        codes = inp.exact_codes(data, opts["exact_cols"])[0]
    return PreparedMatch(data, treatment, opts, design, alias, codes)


def match_prepared(prepared: PreparedMatch, treat: np.ndarray) -> MatchResult:
    """:func:`match` of the prepared data with the treatment ``treat`` (boolean, one per row)."""
    treat = np.asarray(treat)
    if treat.dtype != bool or treat.shape != (len(prepared.data),):
        raise ValueError("match_prepared: treat must be a boolean array with one value per row of the data.")
    n1 = int(treat.sum())
    if n1 == 0 or n1 == len(treat):
        group = "treated" if n1 == 0 else "control"
        raise ValueError(f"treatment column {prepared.treatment!r} has no {group} units; both groups are needed.")
    _warn_random_order(prepared.opts)
    d = prepared.design
    return _match_built(prepared.data, treat, prepared.treatment, prepared.opts, d.balance, list(d.balance_names),
                        list(d.balance_source), d.variables, d.formula, d, alias=prepared.alias,
                        codes=prepared.codes)


_MATCHIT_OPTIONS = {k: getattr(MATCHIT, k) for k in ("method", "distance", "ratio", "replace", "caliper",
                                                     "std_caliper", "order", "exact", "mahalanobis", "discard",
                                                     "seed", "trim", "cutpoints")}


def _match_built(data, treat, treatment, opts, X, terms, sources, variables, formula, design, *, alias=None,
                 codes=None) -> MatchResult:
    """The rest of :func:`match` once the data are checked and the covariate matrices built."""
    method, distance, ratio, replace = opts["method"], opts["distance"], opts["ratio"], opts["replace"]
    caliper, std_caliper, order, discard = opts["caliper"], opts["std_caliper"], opts["order"], opts["discard"]
    exact_cols, mahal_cols, seed, trim = opts["exact_cols"], opts["mahal_cols"], opts["seed"], opts["trim"]
    cutpoints = opts["cutpoints"]
    n = len(data)
    if design is None:
        fit = None
        dist = None
    else:
        fit = fit_propensity(design.model, treat, design.model_names, alias=alias)
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
        assert dist is not None  # every method but CEM has a distance
        if caliper is not None:
            caliper_abs = caliper * float(np.std(dist[~discarded], ddof=1)) if std_caliper else caliper
        if codes is None and exact_cols:
            codes = inp.exact_codes(data, exact_cols)[0]
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
        assert fit is not None
        weights, trim_cap = att_ipw_weights(fit.ps, treat, discarded=discarded, trim=trim)

    counts, ess = sample_sizes(treat, weights, discarded)
    settings = {
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
        "cutpoints": jsonable(dict(cutpoints)) if cutpoints else None,
        "tie_rule": TIE_RULE if method == "nearest" else None,
        "n": n,
        "n_treated": int(treat.sum()),
        "n_control": int((~treat).sum()),
        "package_version": __version__,
    }
    return MatchResult(
        settings=settings,
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
