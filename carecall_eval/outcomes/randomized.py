"""Randomized studies (call / letter / control): intention to treat, the effect of being reached, per protocol.

No matching: randomization balances the arms.  Every spending figure is a ratio
of covariate-standardized arm means (:mod:`carecall_eval.trials.estimators`):
pre-window spending enters a Poisson working model fitted within each arm only
to gain precision, and the model's predictions are averaged over everyone
randomized, so the estimand stays the marginal ratio of means whatever the
working model gets wrong.  Standard errors are clustered by the randomization
block or matched set when ``call_cases`` carries the optional ``block`` column
(or, for a few large blocks, block fixed effects with errors by customer), else by customer.

* **ITT** (``spending.rct_itt_change``): assigned arm vs control, everyone as
  randomized, reached or not.
* **Effect of being reached** (``spending.rct_cace_change``): the complier
  average causal effect, with assignment as the instrument for reach (Wald
  ratio on the ratio scale; Fieller interval).  It assumes that assignment acts
  only through being reached (a call arm member never reached spends as they
  would have in control) and that nobody in control is reached.
* **Per protocol** (``spending.rct_pp_change``): reached members of the call
  arm vs control.  NOT RANDOMIZED: who answers differs from who does not; kept
  because operators quote it, and labelled so everywhere it appears.

Each at every post window (28 days, 12 weeks, 12 months by default; the
``window`` column), with the share reached, retention and responsible-gambling
actions by arm, and the CONSORT flow (plot data ``"consort"``, drawn by
:func:`carecall_eval.plotting.consort_plot`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._validation import check_choice, check_horizon, check_level, horizon_id
from ..cohorts.build import build_cohort
from ..cohorts.design import StudyDesign
from ..cohorts.sample import as_sample
from ..contract.base import open_data
from ..errors import InputError, NotAvailableError
from ..narrative import randomized as narrative
from ..results import Result, not_available, tidy
from ..trials import estimators as est
from ._dates import as_datetime
from .intervals import wilson_interval
from .spending import OUTCOMES, add_outcomes

__all__ = ["randomized_effects", "PRECISION_COVARIATES", "BLOCK_MODES", "trial_table"]

#: Baseline covariates of the working model (pre-window theoretical loss in three windows, log scale).
PRECISION_COVARIATES = ("log_tl_28", "log_tl_84_29", "log_tl_365_85")
#: How blocks enter: "auto", "cluster" (errors clustered by block: matched sets, many small blocks), "fixed"
#: (block fixed effects in the working model, errors by customer: few large blocks, too few to cluster on),
#: "none" (ignored: errors by customer).
BLOCK_MODES = ("auto", "cluster", "fixed", "none")
#: Median block size from which "auto" adds block fixed effects (smaller blocks: matched sets, clustered only).
FIXED_EFFECTS_FROM = 10
#: Default horizon of retention by arm (its ids are the stable ``*_12m`` ones) and window of actions by arm.
RETENTION_HORIZON, ACTION_DAYS = 365, 28


def trial_table(ds, sample) -> pd.DataFrame:
    """The randomized rows (``sample.table``) with their case's ``block`` (None when the data have none)."""
    t = sample.table.copy()
    cases = ds.table("call_cases")
    if "block" in cases.columns and cases["block"].notna().any():
        blocks = cases.set_index("case_id")["block"]
        t["block"] = t["case_id"].map(blocks)
    else:
        t["block"] = None
    t["block"] = t["block"].astype(object).where(t["block"].notna(), None)
    return t


def _block_mode(t: pd.DataFrame, blocks: str) -> str:
    has = t["block"].notna().any()
    if blocks == "none" or not has:
        return "none"
    if blocks != "auto":
        return blocks
    size = t.loc[t["block"].notna()].groupby("block").size().median()
    return "fixed" if size >= FIXED_EFFECTS_FROM else "cluster"


def _clusters(t: pd.DataFrame, mode: str) -> np.ndarray:
    """Cluster of each row as an integer: the rank of its label (``customer:<id>``, ``block:<block>``) among
    the sorted labels, so grouping by it is grouping by the label in the same order (``np.unique`` of the
    labels), without sorting text once per standard error."""
    if mode in ("none", "fixed"):     # fixed effects: blocks are few and large, so errors by customer
        labels = t["customer_id"].astype(str).to_numpy()
    else:
        labels = np.where(t["block"].notna(), "block:" + t["block"].astype(str),
                          "customer:" + t["customer_id"].astype(str))
    return pd.factorize(labels, sort=True)[0]


def _design_matrix(t: pd.DataFrame, covariates, mode: str) -> np.ndarray:
    cols = [c for c in covariates if c in t.columns]
    X = t[cols].to_numpy(float) if cols else np.zeros((len(t), 0))
    if mode == "fixed":
        d = pd.get_dummies(t["block"].fillna("none").astype(str), drop_first=True, dtype=float)
        X = np.column_stack([X, d.to_numpy()])
    return X


def _method(kind: str, mode: str, interval: str) -> str:
    cl = {"none": "cluster-robust by customer", "cluster": "cluster-robust by matched set / block",
          "fixed": "block fixed effects, cluster-robust by customer"}[mode]
    return {
        "itt": "ITT: assigned arm vs control, ratio of covariate-standardized means (Poisson working model on "
               f"pre-window spending), {cl}, log scale (delta)",
        "cace": "effect of being reached (complier average causal effect): assignment as the instrument for "
                "reach, Wald ratio of standardized means; "
                + ("Fieller interval" if interval == "fieller" else "delta-method interval on the log scale")
                + f", se of the log ratio (delta), {cl}",
        "pp": "per protocol (not randomized): reached members of the call arm vs control, ratio of "
              f"standardized means, {cl}, log scale (delta)",
    }[kind]


def _spending_rows(t, y, X, clusters, w, outcome, level, interval, mode, arms, fieller_parts: dict) -> list[dict]:
    base = {"window": w, "outcome": outcome}
    control = (t["group"] == "control").to_numpy()
    rows = []
    for arm in arms:
        m = (t["group"] == arm).to_numpy()
        n = int(m.sum() + control.sum())
        r = est.itt_ratio(y, X, m, control, clusters, level)
        row = {**base, "metric": "spending.rct_itt_change", "group": arm, "n": n,
               "method": _method("itt", mode, interval), **r}
        rows.append(row if np.isfinite(r["estimate"])
                    else not_available(row, f"no spending in the {arm} or control arm"))
    for arm in arms + ["control"]:
        m = (t["group"] == arm).to_numpy()
        rows.append({**base, "metric": "spending.rct_mean", "group": arm, "estimate": float(y[m].mean()) if m.any()
                     else np.nan, "n": int(m.sum()),
                     "method": "mean post-window outcome per customer (currency), unadjusted"})
    if "call" in arms:
        call = (t["group"] == "call").to_numpy()
        reached = call & t["reached"].to_numpy(bool)
        n = int(call.sum() + control.sum())
        row = {**base, "metric": "spending.rct_cace_change", "group": "call", "n": n,
               "method": _method("cace", mode, interval)}
        if not reached.any():
            rows.append(not_available(row, "nobody in the call arm was reached"))
        else:
            r = est.complier_ratio(y, X, call, control, reached, clusters, level, interval)
            r.pop("reach", None)
            fieller_parts[w] = r.pop("fieller", None)
            ok = np.isfinite(r["estimate"])
            if ok and not np.isfinite(r["ci_low"]):
                row = {**row, **r, "ci_low": np.nan, "ci_high": np.nan,
                       "note": "not available: the interval is unbounded (reach too uncertain for a Fieller interval)"}
                rows.append(row)
            else:
                rows.append({**row, **r} if ok else not_available(row, "no spending among the compliers"))
        pp = est.log_ratio(est.standardized_mean(y, X, reached), est.standardized_mean(y, X, control), clusters, level)
        row = {**base, "metric": "spending.rct_pp_change", "group": "call", "n": int(reached.sum() + control.sum()),
               "method": _method("pp", mode, interval), "note": "not randomized"}
        rows.append({**row, **pp} if np.isfinite(pp["estimate"]) else
                    not_available(row, "nobody in the call arm was reached"))
    return rows


def _share_rows(metric: str, y: np.ndarray, t: pd.DataFrame, clusters, arms, level, method: str, **extra) -> list[dict]:
    rows = []
    control = (t["group"] == "control").to_numpy()
    ok = np.isfinite(y)
    for arm in arms + ["control"]:
        m = (t["group"] == arm).to_numpy() & ok
        row = {"metric": metric, "group": arm, "n": int(m.sum()), "method": f"share by arm, Wilson; {method}", **extra}
        if not m.any():
            rows.append(not_available(row, f"no one in the {arm} arm was followed long enough"))
            continue
        k = float(y[m].sum())
        lo, hi = wilson_interval(k, m.sum(), level)
        rows.append({**row, "estimate": k / m.sum(), "ci_low": lo, "ci_high": hi})
    for arm in arms:
        m = (t["group"] == arm).to_numpy() & ok
        c = control & ok
        row = {"metric": metric, "group": f"{arm}-control", "n": int(m.sum() + c.sum()),
               "method": f"difference of shares {arm} - control, Wald, cluster-robust; {method}", **extra}
        if not m.any() or not c.any():
            rows.append(not_available(row, "an arm has no one followed long enough"))
            continue
        r = est.share_difference(np.where(ok, y, 0.0), m, c, clusters, level)
        rows.append({**row, **r})
    return rows


def _retention_rows(ds, t, clusters, arms, horizon, level) -> list[dict]:
    from .retention import active_at_horizon, exit_times

    end = pd.Timestamp(ds.data_end)
    complete = (as_datetime(t["index_date"]) + pd.Timedelta(days=horizon - 1) <= end).to_numpy()
    ex = exit_times(ds, t)
    stayed = ~((ex["event"].to_numpy() == 1) & (ex["duration"].to_numpy() < horizon))
    account = np.where(complete, stayed.astype(float), np.nan)
    active = active_at_horizon(ds, t, horizon).to_numpy(float)
    hid = horizon_id(horizon, RETENTION_HORIZON, "12m")
    extra = {"horizon": horizon}
    return (_share_rows(f"retention.rct_account_{hid}", account, t, clusters, arms, level,
                        "still a customer (account open, no lasting self-exclusion)", **extra)
            + _share_rows(f"retention.rct_active_{hid}", active, t, clusters, arms, level,
                          "played in the last 90 days of the horizon", **extra))


def _action_rows(ds, t, clusters, arms, days, level) -> list[dict]:
    from .actions import ACTION_EVENTS

    end = pd.Timestamp(ds.data_end)
    idx = as_datetime(t["index_date"]).to_numpy()
    complete = (as_datetime(t["index_date"]) + pd.Timedelta(days=days - 1) <= end).to_numpy()
    rg = ds.table("rg_events")[["customer_id", "occurred_on", "event"]]
    keys = pd.DataFrame({"pos": np.arange(len(t)), "customer_id": t["customer_id"].to_numpy(), "index_date": idx})
    ev = keys.merge(rg, on="customer_id", how="inner")
    lag = (as_datetime(ev["occurred_on"]) - as_datetime(ev["index_date"])).dt.days
    ev = ev[(lag >= 0) & (lag < days)]
    rows = []
    took_any = np.zeros(len(t))
    for action, events in list(ACTION_EVENTS.items()) + [("any", None)]:
        if events is None:
            took = took_any
        else:
            took = np.zeros(len(t))
            took[ev.loc[ev["event"].isin(events), "pos"].to_numpy()] = 1.0
            took_any = np.maximum(took_any, took)
        y = np.where(complete, took, np.nan)
        rows += _share_rows(f"actions.rct_{action}_{days}d", y, t, clusters, arms, level,
                            f"took the action within {days} days of the index (self-service or on a call)",
                            days=days)
    return rows


def _consort(cohort, t: pd.DataFrame, windows, data_end) -> pd.DataFrame:
    """CONSORT counts by arm: allocated, received the allocated contact, excluded by the cohort rules, analysed."""
    flow = cohort.flow
    rows = []
    arms = [a for a in ("call", "letter", "control") if f"remaining_{a}" in flow.columns]
    for arm in arms:
        allocated = int(flow[f"remaining_{arm}"].iloc[0])
        excluded = int(flow[f"excluded_{arm}"].iloc[1:].sum())
        a = t[t["group"] == arm]
        rows.append({"arm": arm, "stage": "allocated", "n": allocated})
        if arm == "call":
            rows.append({"arm": arm, "stage": "reached", "n": int(a["reached"].sum())})
            rows.append({"arm": arm, "stage": "not reached", "n": int((~a["reached"].astype(bool)).sum())})
        elif arm == "letter":
            rows.append({"arm": arm, "stage": "letter sent", "n": int(len(a))})
        else:
            rows.append({"arm": arm, "stage": "no contact", "n": int(len(a))})
        rows.append({"arm": arm, "stage": "excluded", "n": excluded,
                     "detail": "; ".join(f"{r['step']}: {int(r[f'excluded_{arm}'])}"
                                         for _, r in flow.iloc[1:].iterrows() if r[f"excluded_{arm}"] > 0)})
        for w in windows:
            done = (as_datetime(a["index_date"]) + pd.Timedelta(days=w - 1) <= data_end).sum()
            rows.append({"arm": arm, "stage": "analysed", "window": w, "n": int(done)})
    out = pd.DataFrame(rows)
    for c in ("detail", "window"):
        if c not in out.columns:
            out[c] = np.nan
    return out[["arm", "stage", "window", "n", "detail"]]


def randomized_effects(data, sample=None, /, *, level: float = 0.95, window: int = 84, outcome: str = "tl",
                       windows=None, blocks: str = "auto", interval: str = "fieller",
                       covariates=PRECISION_COVARIATES, retention_horizon: int = RETENTION_HORIZON,
                       action_days: int = ACTION_DAYS, outcomes: bool = True) -> Result:
    """Effects of a randomized care-call study: ITT by arm, effect of being reached, per protocol (not randomized).

    Parameters
    ----------
    data : path, Dataset or IbisDataset
    sample : MatchedSample or Cohort, optional
        A randomized sample (``build_cohort(ds, StudyDesign(contact="randomized",
        comparison="arms")).sample()``); built with that design when None.
    level : float
        Confidence level of every interval.
    window : int
        Headline post window in days (the text's); every window in
        ``windows`` is estimated.
    outcome : {"tl", "net_loss", "wagered", "deposits", "active_days"}
        Spending measure (default theoretical loss).
    windows : tuple of int, optional
        Post windows estimated (default: the design's, 28, 84 and 365 days,
        plus ``window``).
    blocks : {"auto", "cluster", "fixed", "none"}
        How the ``block`` column (matched sets, randomization blocks) enters:
        standard errors clustered by block (``cluster``: matched sets, whose
        members are alike, so their outcomes are correlated), block fixed
        effects in the working model with errors by customer (``fixed``: a
        few large permuted blocks, too few clusters for clustered errors), or
        not at all (``none``: errors by customer).  ``auto``: ``fixed`` when
        the median block has at least :data:`FIXED_EFFECTS_FROM` members,
        else ``cluster``; without blocks, by customer.
    interval : {"fieller", "delta"}
        Interval of the effect of being reached.
    covariates : sequence of str
        Baseline columns of the working model (default pre-window spending).
    retention_horizon : int
        Horizon of retention by arm (days).
    action_days : int
        Window of responsible-gambling actions by arm (days).
    outcomes : bool
        Also estimate retention and actions by arm.

    Returns
    -------
    Result
        ``spending.rct_itt_change`` (groups ``call``, ``letter``),
        ``spending.rct_cace_change`` and ``spending.rct_pp_change`` (group
        ``call``; the latter's ``note`` and ``method`` say "not randomized"),
        ``spending.rct_mean`` (by arm), each with a ``window`` column;
        ``trial.reach`` (share of the call arm reached), ``trial.n_allocated``
        and ``trial.n_analysed`` (by arm); ``retention.rct_account_12m``,
        ``retention.rct_active_12m``, ``actions.rct_{action}_28d`` (groups the
        arms and ``<arm>-control`` differences).  Plot data ``consort`` (the
        CONSORT flow), ``estimates`` and ``arms``.

    Examples
    --------
    >>> ds = carecall_eval.load("data/trial")                                  # doctest: +SKIP
    >>> res = carecall_eval.randomized_effects(ds, level=0.9)                  # doctest: +SKIP
    >>> res.metric("spending.rct_cace_change", "call", window=365)             # doctest: +SKIP
    """
    ds = open_data(data, "randomized_effects")
    if sample is None:
        sample = build_cohort(ds, StudyDesign(contact="randomized", comparison="arms"))
    sample = as_sample(sample, "randomized_effects", randomized=True)
    level = check_level(level)
    window = check_horizon("window", window)
    outcome = str(check_choice("outcome", outcome, list(OUTCOMES)))
    blocks = str(check_choice("blocks", blocks, BLOCK_MODES))
    interval = str(check_choice("interval", interval, ["fieller", "delta"]))
    retention_horizon = check_horizon("retention_horizon", retention_horizon)
    action_days = check_horizon("action_days", action_days)
    if outcome == "deposits" and not ds.has("deposits"):
        raise NotAvailableError("randomized_effects: outcome='deposits' needs the optional deposits table")
    design = sample.design
    wins = tuple(sorted({check_horizon("windows", w) for w in (windows or design.post_windows)} | {window}))
    t = trial_table(ds, sample)
    present = set(t["group"])
    arms = [a for a in ("call", "letter") if a in present]
    if "control" not in present or not arms:
        raise NotAvailableError("randomized_effects: the data have no control arm and active arm "
                                f"(arms present: {sorted(present) or 'none'})")
    mode = _block_mode(t, blocks)
    if mode == "fixed":
        size = t.loc[t["block"].notna()].groupby("block").size().median()
        if size < 4 * (len(arms) + 1):
            raise InputError(f"randomized_effects: blocks='fixed' needs blocks of at least {4 * (len(arms) + 1)} "
                             f"members (the median block has {size:g}): matched sets are analysed with "
                             "blocks='cluster'")
    t = add_outcomes(ds, t, wins, design.pre_window)
    data_end = pd.Timestamp(ds.data_end)
    clusters_all = _clusters(t, mode)
    X_all = _design_matrix(t, covariates, mode)
    rows: list[dict] = []
    fieller_parts: dict = {}     # per window: the Wald ratio's numerator, denominator and their (co)variances
    for w in wins:
        f = (as_datetime(t["index_date"]) + pd.Timedelta(days=w - 1) <= data_end).to_numpy()
        tw = t[f]
        if not ((tw["group"] == "control").any() and tw["group"].isin(arms).any()):
            for metric, grp in [("spending.rct_itt_change", a) for a in arms] + [
                    ("spending.rct_cace_change", "call"), ("spending.rct_pp_change", "call")]:
                if grp in arms:
                    rows.append(not_available({"metric": metric, "group": grp, "window": w, "outcome": outcome,
                                               "n": 0, "method": "randomized arms"},
                                              f"no one has {w} days of follow-up in every arm"))
            continue
        y = tw[f"{outcome}_post{w}"].to_numpy(float)
        rows += _spending_rows(tw, y, X_all[f], clusters_all[f], w, outcome, level, interval, mode, arms,
                               fieller_parts)
        for arm in arms + ["control"]:
            rows.append({"metric": "trial.n_analysed", "group": arm, "window": w,
                         "estimate": float((tw["group"] == arm).sum()), "n": int((tw["group"] == arm).sum()),
                         "method": f"randomized members with complete {w}-day follow-up"})
    if "call" in arms:
        c = t[t["group"] == "call"]
        k, n = int(c["reached"].sum()), len(c)
        lo, hi = wilson_interval(k, n, level)
        rows.append({"metric": "trial.reach", "group": "call", "estimate": k / n if n else np.nan, "ci_low": lo,
                     "ci_high": hi, "n": n, "method": f"share of the call arm reached within "
                                                       f"{design.attempt_window} days, Wilson"})
    flow = sample.cohort.flow
    for arm in arms + ["control"]:
        col = f"remaining_{arm}"
        if col in flow.columns:
            a = int(flow[col].iloc[0])
            rows.append({"metric": "trial.n_allocated", "group": arm, "estimate": float(a), "n": a,
                         "method": "cases with this arm in call_cases"})
    if outcomes:
        rows += _retention_rows(ds, t, clusters_all, arms, retention_horizon, level)
        rows += _action_rows(ds, t, clusters_all, arms, action_days, level)
    summary = tidy(rows)
    settings = {"level": level, "window": window, "windows": list(wins), "outcome": outcome, "blocks": mode,
                "cluster": {"none": "customer_id", "cluster": "block", "fixed": "customer_id"}[mode],
                "interval": interval, "covariates": [c for c in covariates if c in t.columns],
                "retention_horizon": retention_horizon, "action_days": action_days,
                "arms": arms + ["control"], "arm_sizes": {k: int(v) for k, v in t["group"].value_counts().items()},
                "n_blocks": int(t["block"].nunique()) if mode != "none" else 0,
                "estimand": "ITT and complier average causal effect (ratio of means)", "design": design.to_dict()}
    consort = _consort(sample.cohort, t, wins, data_end)
    est_rows = summary[summary["metric"].isin(["spending.rct_itt_change", "spending.rct_cace_change",
                                               "spending.rct_pp_change"])]
    plot = {"consort": consort, "estimates": est_rows,
            "arms": summary[summary["metric"] == "spending.rct_mean"]}
    return Result("randomized", summary, narrative.text(summary, settings), settings, plot,
                  {"table": t, "fieller": fieller_parts})
