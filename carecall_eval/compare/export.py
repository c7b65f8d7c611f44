"""Export an evaluation as an aggregate bundle that can leave the operator.

:func:`export_bundle` turns an :class:`~carecall_eval.evaluate.Evaluation`
(or a data directory, evaluated first) into the tables of
:mod:`carecall_eval.compare.bundle`: tidy metrics with standard errors for the
effects, Kaplan-Meier points on a coarse grid, a monthly reach series and the
cohort flow, every one passed through :mod:`carecall_eval.compare.suppress`.
No customer, case or agent id, no date of a single customer's event and no row
of customer-level data is written.
"""
from __future__ import annotations

import datetime as _dt
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from ..calendar import parse_quarter
from ..errors import CarecallWarning, InputError
from . import suppress as sup
from .bundle import BUNDLE_FORMAT, BUNDLE_VERSION, write_bundle
from .meta import SE_SCALES, se_from_ci

__all__ = ["export_bundle", "build_tables", "suppress_trial", "consort_counts", "METRIC_COLUMNS", "COUNT_COLUMNS"]

#: Columns of ``metrics.csv``, in order.
METRIC_COLUMNS = ["estimator", "metric", "group", "estimate", "ci_low", "ci_high", "se", "se_scale", "n",
                  "window", "outcome", "at_risk", "events", "n_effective", "attempt", "period", "method",
                  "suppressed", "note"]
#: Count columns of each table (what the small-cell rules apply to).
COUNT_COLUMNS = {"metrics": ["n", "at_risk", "events", "n_effective"], "km": ["at_risk"],
                 "reach_series": ["n", "reached"], "flow": ["contact", "comparison"]}

#: Definitional parameters of each estimator that travel in the manifest (never counts).
_DEFINITION_KEYS = {
    "spending": ("outcome", "window", "windows", "estimand", "index", "replace"),
    "retention": ("horizon", "definitions"),
    "reach": ("estimand", "sms_after_attempts", "arms", "interval", "period", "max_attempts", "policy_start"),
    "call_length": ("by", "include_agents", "population"),
    "actions": ("days", "weighting", "events", "via_call"),
    "reception": (),
    "randomized": ("outcome", "window", "windows", "estimand", "blocks", "interval", "covariates",
                   "retention_horizon", "action_days"),
}

# ----------------------------------------------------------------------------- metrics
def _metrics_table(ev, threshold: int, level: float) -> tuple[pd.DataFrame, dict]:
    s = ev.summary.copy()
    for col in METRIC_COLUMNS:
        if col not in s.columns:
            s[col] = np.nan
    s["suppressed"] = ""
    # standard errors on the analysis scale for every ratio / effect row with an interval
    s["se_scale"] = s["metric"].map(SE_SCALES)
    has_se = s["se"].notna()
    need = s["se_scale"].notna() & ~has_se & s["ci_low"].notna() & s["ci_high"].notna()
    for scale in ("log1p", "log", "identity"):
        m = need & (s["se_scale"] == scale)
        if m.any():
            s.loc[m, "se"] = se_from_ci(s.loc[m, "ci_low"], s.loc[m, "ci_high"], scale, level)
    s.loc[has_se & s["se_scale"].isna(), "se_scale"] = "identity"
    s["method"] = s["method"].map(lambda t: sup.sanitize_text(t, threshold))
    # a figure nobody could be observed for travels as missing, with the estimator's reason
    s["note"] = s["note"].map(lambda t: sup.sanitize_text(t, threshold) if isinstance(t, str) else "")
    s = s[METRIC_COLUMNS].reset_index(drop=True)
    cace = (s["metric"] == "spending.rct_cace_change").to_numpy() & s["se"].notna().to_numpy()
    s.loc[cace, "se_scale"] = "log1p"
    return sup.suppress_metrics(s, threshold)


#: The small-cell rules of a randomized study and of its CONSORT counts live with the others (one
#: implementation, :mod:`carecall_eval.compare.suppress`); kept here under their first names.
suppress_trial = sup.suppress_trial
consort_counts = sup.consort_counts


# ----------------------------------------------------------------------------- other tables
def _reach_series(ev, threshold: int) -> pd.DataFrame:
    cols = ["month", "post_policy", "n", "reached", "reach", "suppressed"]
    r = ev.results.get("reach")
    weekly = r.plot_data.get("weekly") if r is not None else None
    if weekly is None or len(weekly) == 0:
        return pd.DataFrame(columns=cols)
    w = weekly.copy()
    w["month"] = pd.to_datetime(w["week"]).dt.strftime("%Y-%m")
    m = w.groupby(["month", "post_policy"], as_index=False)[["n", "reached"]].sum()
    m["reach"] = m["reached"] / m["n"]
    m["suppressed"] = ""
    n0, k0 = m["n"].to_numpy(float), m["reached"].to_numpy(float)
    small_n = sup.is_small(n0, threshold)
    small_k = ~small_n & (sup.is_small(k0, threshold) | sup.is_small(n0 - k0, threshold))
    mask_n = sup.protect_partition(n0, small_n, threshold)
    mask_k = sup.protect_partition(k0, small_k | mask_n, threshold) & ~mask_n
    m.loc[mask_n, ["n", "reached", "reach"]] = np.nan
    m.loc[mask_n, "suppressed"] = f"n<{threshold} or secondary"
    m.loc[mask_k, ["reached", "reach"]] = np.nan
    m.loc[mask_k, "suppressed"] = f"reached or unreached<{threshold} or secondary"
    for c in ("n", "reached"):
        m[c] = pd.to_numeric(m[c]).round().astype("Int64")
    return m[cols]


def _flow(ev, threshold: int) -> pd.DataFrame:
    """Cohort flow: candidates (total), customers excluded at each step, eligible (remaining)."""
    return sup.suppress_flow(ev.cohort.flow, threshold)


def _km(ev, threshold: int, step: int, level: float) -> pd.DataFrame:
    r = ev.results.get("retention")
    if r is None or "table" not in r.details:
        return pd.DataFrame(columns=["group", "day", "survival", "ci_low", "ci_high", "at_risk"])
    return sup.km_points(r.details["table"], threshold, horizon=int(r.settings.get("horizon", 365)), step=step,
                         level=level)


def _definitions(ev) -> dict:
    defs = {"design": ev.design.to_dict(), "index_rule": ev.settings.get("index_rule", ev.design.index_rule),
            "level": ev.settings.get("level"), "window": ev.settings.get("window")}
    est = {}
    for name, r in ev.results.items():
        keys = _DEFINITION_KEYS.get(name, ())
        est[name] = {k: _json(r.settings[k]) for k in keys if k in r.settings}
    defs["estimators"] = est
    return defs


def _json(v):
    if isinstance(v, (pd.Timestamp, _dt.date)):
        return str(pd.Timestamp(v).date())
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def build_tables(ev, *, threshold: int, quarter: str | None = None, km_step: int = 14) -> tuple[dict, dict]:
    """The manifest (without its table index) and the suppressed tables of a bundle.

    Parameters
    ----------
    ev : Evaluation
    threshold : int
        Small-cell threshold.
    quarter : str, optional
        Label of the index-date quarter the evaluation was restricted to.
    km_step : int
        Grid spacing of the Kaplan-Meier points (days).
    """
    threshold = sup.check_threshold(threshold)
    level = float(ev.settings.get("level", 0.95))
    metrics, log = _metrics_table(ev, threshold, level)
    tables = {"metrics": metrics, "km": _km(ev, threshold, km_step, level),
              "reach_series": _reach_series(ev, threshold), "flow": _flow(ev, threshold)}
    d = ev.design
    manifest = {
        "format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "carecall_eval_version": __version__,
        "operator": ev.settings.get("operator"), "currency": ev.settings.get("currency"), "quarter": quarter,
        "period": {"index_from": d.study_start.isoformat() if d.study_start else ev.settings.get("data_start"),
                   "index_to": d.study_end.isoformat() if d.study_end else ev.settings.get("data_end"),
                   "data_start": ev.settings.get("data_start"), "data_end": ev.settings.get("data_end"),
                   "note": "cohort metrics (spending, retention, actions) use index dates in index_from..index_to; "
                           "reach, call length and reception use every case in the data"},
        "sms_policy_start": ev.settings.get("sms_policy_start"),
        "data_fingerprint": ev.settings.get("data_fingerprint"),
        "small_cell_threshold": threshold,
        "definitions": _definitions(ev),
        "suppression": {
            "rules": [f"counts 0 < count < {threshold} withheld, with the statistics they are the denominator of",
                      "shares withheld when the implied numerator or its complement is 0 < k < threshold",
                      "secondary suppression where withheld cells could be recovered from a published total",
                      f"Kaplan-Meier points every {km_step} days, dropped when fewer than {threshold} are at risk "
                      "or when 1..threshold-1 customers left since the previous published point",
                      "quantiles only where n >= threshold"],
            "metrics": log,
            "km_points": int(len(tables["km"])),
            "reach_series_withheld": int((tables["reach_series"]["suppressed"] != "").sum()),
            "flow_withheld": int((tables["flow"]["suppressed"] != "").sum()),
        },
    }
    return manifest, tables


def export_bundle(data_or_evaluation, out, quarter: str | None = None, *, design=None, threshold: int | None = None,
                  km_step: int = 14, placebo: bool = True, window: int = 84, level: float = 0.95,
                  quiet: bool = True, selfcheck_replicates: int = 20) -> Path:
    """Write an operator's aggregate bundle for cross-operator comparison.

    Parameters
    ----------
    data_or_evaluation : path, Dataset, IbisDataset or Evaluation
        A data directory or loaded dataset (evaluated here; an IbisDataset
        from :func:`carecall_eval.contract.connect` is evaluated where the
        data live), or an existing :class:`~carecall_eval.evaluate.Evaluation`.
    out : path
        Bundle directory (created, or replaced atomically if it holds a bundle).
    quarter : str, optional
        ``"2025Q2"``: restrict index dates (cohort metrics) to that quarter.
        With an Evaluation, its design must already cover exactly that quarter.
    design : StudyDesign, optional
        Default design if None.
    threshold : int, optional
        Small-cell threshold; default ``small_cell_threshold`` from
        ``operator.toml``.  It may be raised but not lowered below the
        operator's setting.  Required when an Evaluation is passed and its
        params do not record it.
    km_step : int
        Grid spacing of the exported Kaplan-Meier points (days).
    placebo, window, level, quiet
        Passed to :func:`carecall_eval.evaluate` when data are given.
    selfcheck_replicates : int
        When data are given, replicates of the plasmode self-check (:func:`carecall_eval.selfcheck`) whose
        figures travel with the bundle (``estimator`` "selfcheck"), so operators see how trustworthy each
        other's estimates are; 0 skips it.  An Evaluation carries them when it holds a "selfcheck" result
        (the quarterly report's metrics do).

    Returns
    -------
    Path
        The bundle directory.

    Examples
    --------
    >>> export_bundle("data/sample", "bundles/sample", quarter="2025Q1")   # doctest: +SKIP
    """
    from ..cohorts import StudyDesign
    from ..contract import load
    from ..evaluate import Evaluation, evaluate

    label = start = end = None
    if quarter is not None:
        q = parse_quarter(quarter)
        label, start, end = q.label, q.start, q.end
    if isinstance(data_or_evaluation, Evaluation):
        ev = data_or_evaluation
        if design is not None:
            raise InputError("export_bundle: design= is only used when data are given; the Evaluation has its own")
        if quarter is not None and (ev.design.study_start != start or ev.design.study_end != end):
            raise InputError(f"export_bundle: the Evaluation's index period is {ev.design.study_start}..{ev.design.study_end}, "
                             f"not quarter {label} ({start}..{end}); evaluate with "
                             f"design.replace(study_start=date({start.year}, {start.month}, 1), study_end=...) "
                             "or pass the data directory instead")
        configured = ev.settings.get("small_cell_threshold")
        if threshold is None:
            threshold = configured
        if threshold is None:
            raise InputError("export_bundle: pass threshold= (the operator.toml small_cell_threshold) when "
                             "exporting an Evaluation; it does not record the operator's threshold")
    else:
        ds = load(data_or_evaluation) if isinstance(data_or_evaluation, (str, os.PathLike)) else data_or_evaluation
        configured = ds.config.small_cell_threshold
        if threshold is None:
            threshold = configured
        threshold = sup.check_threshold(threshold)
        if threshold < configured:
            raise InputError(f"export_bundle: threshold {threshold} is below the operator's small_cell_threshold "
                             f"{configured} in operator.toml; it can only be raised")
        design = design or StudyDesign()
        if quarter is not None:
            design = design.replace(study_start=start, study_end=end)
        with warnings.catch_warnings():
            if quiet:  # the caveats of the evaluation are not printed; third-party warnings still are
                warnings.simplefilter("ignore", CarecallWarning)
            ev = evaluate(ds, design, level=level, quiet=quiet, window=window, placebo=placebo)
            if selfcheck_replicates:
                import dataclasses

                from ..trust.plasmode import selfcheck

                sc = selfcheck(ds, ev.sample, level=level, window=window, replicates=int(selfcheck_replicates),
                               sms_replicates=min(int(selfcheck_replicates), 5), seed=0,
                               n_jobs=os.cpu_count() or 1)   # the figures do not depend on it
                ev = dataclasses.replace(ev, results={**ev.results, "selfcheck": sc})
    threshold = sup.check_threshold(threshold)
    if configured is not None and threshold < configured:
        raise InputError(f"export_bundle: threshold {threshold} is below the operator's small_cell_threshold "
                         f"{configured} in operator.toml; it can only be raised")
    manifest, tables = build_tables(ev, threshold=threshold, quarter=label, km_step=km_step)
    return write_bundle(out, manifest, tables)
