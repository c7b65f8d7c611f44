"""How callers differ: reach, outcome mix, call length, reception and the spending effect by pseudonymous caller.

Every figure is partially pooled, so that a caller with a dozen calls is not
ranked by noise:

* answering (attempt level), calls ending in an action, positive reception
  (answered calls): random-intercept logistic models with the case mix as fixed
  effects (:func:`~.pooling.glmm_logit`); each caller's standardised rate is the
  mean predicted chance over every row of the model with that caller's effect;
* call length: a random-intercept linear model of log seconds (:func:`~.pooling.lmm`),
  shown as the ratio of the caller's typical call to the average caller's;
* spending effect: the spending module's matched PPML among each caller's reached
  customers (comparisons following their matched sets), shrunk towards the average
  by empirical Bayes (DerSimonian-Laird between-caller variance).

Callers appear only under pseudonyms (``agent_01`` ... in the sorted order of
``agent_id``, as in :func:`carecall_eval.call_length`); the mapping stays in
``details``.  The result belongs in the operator's own report: it is not run by
:func:`carecall_eval.evaluate` and never enters an export bundle.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..._validation import check_choice, check_horizon, check_level, z_quantile
from ...cohorts.build import build_cohort
from ...cohorts.sample import as_sample
from ...contract.base import open_data
from ...errors import NotAvailableError
from ...narrative import programme as narrative
from ...results import Result, not_available, tidy
from ..calls import _pseudonyms
from ..reach.answer_model import independent_of_gram
from ..spending import OUTCOMES, _followup, _subgroups, add_outcomes, analysis_columns, analysis_sets
from .pooling import CellDesign, glmm_logit, lmm, normal_pooling, one_blas_thread, random_effects
from .timing import design_matrix, shared_attempt_table

__all__ = ["caller_profiles", "ACTION_OUTCOMES"]

#: Call outcomes that count as an action agreed on the call.
ACTION_OUTCOMES = ("limit_set", "pause", "self_exclusion")
#: Fewest reached (and comparison) rows for a caller's spending estimate (the spending module's rule).
MIN_N = 20


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


def _glmm(y: np.ndarray, X: np.ndarray, g: np.ndarray, J: int, level: float):
    """:func:`~.pooling.glmm_logit` on ``X``'s linearly independent columns (the constant kept), and that ``X``.

    The columns are chosen as :func:`~..reach.answer_model.independent_columns` chooses them, from the Gram
    matrix ``X'X`` taken over the model's cells (:class:`~.pooling.CellDesign`, which the fit then uses) rather
    than by another product over the rows.
    """
    cells = CellDesign(y, X, g, J)
    p = X.shape[1]
    keep = independent_of_gram(cells.hessian(np.ones(len(y)))[0][:p, :p], len(y), protect=1)
    if len(keep) < p:
        X = X[:, keep]
        return glmm_logit(y, X, g, n_groups=J, level=level), X
    return glmm_logit(y, X, g, n_groups=J, level=level, cells=cells), X


def _logit_rows(measure: str, metric_rate: str, metric_lo: str, fit, X, codes, labels, raw, n, level, what):
    z = z_quantile(level)
    eta = X @ fit.beta
    rows, cat = [], []
    method = (f"{fit.method}, case mix as fixed effects; the caller's effect against the average caller "
              "(se: its posterior sd on the log-odds scale)")
    for j, lab in enumerate(labels):
        u, sd = float(fit.effect[j]), float(fit.sd[j])
        rate = float(_expit(eta + u).mean())
        lo, hi = float(_expit(eta + u - z * sd).mean()), float(_expit(eta + u + z * sd).mean())
        base = {"group": lab, "n": int(n[j]), "raw": float(raw[j]) if n[j] else np.nan}
        rows.append({**base, "metric": metric_lo, "estimate": u, "se": sd, "ci_low": u - z * sd,
                     "ci_high": u + z * sd, "method": method})
        rows.append({**base, "metric": metric_rate, "estimate": rate, "ci_low": lo, "ci_high": hi,
                     "method": f"{what} had the caller made every modelled call (standardised), partially pooled; "
                               "interval from the caller's posterior sd"})
        cat.append({"measure": measure, "caller": lab, "estimate": rate, "ci_low": lo, "ci_high": hi,
                    "raw": base["raw"], "n": int(n[j])})
    rows.append({"metric": f"callers.{measure}_sd", "group": "between_callers", "estimate": fit.tau,
                 "ci_low": fit.tau_ci[0], "ci_high": fit.tau_ci[1], "n": int(np.sum(n)),
                 "method": "standard deviation of the callers' random intercepts (log-odds): posterior mean and "
                           "credible interval (uniform prior)"})
    return rows, cat


@one_blas_thread
def caller_profiles(data, sample=None, /, *, level: float = 0.95, window: int = 84, outcome: str = "tl") -> Result:
    """Reach, outcome mix, call length, reception and spending effect by pseudonymous caller, partially pooled.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The data (``call_attempts.agent_id`` names the caller).
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` for the spending effect (default: the default cohort, matched).
    level : float
        Confidence level of every interval.
    window : int
        Post window of the spending effect (days; one of the design's post windows).
    outcome : str
        Spending measure (as :func:`carecall_eval.spending_effect`).

    Returns
    -------
    Result
        Per caller (``group`` = pseudonym ``agent_01`` ...; column ``raw`` = the unadjusted figure):
        ``callers.answer_rate`` and ``callers.answer_log_odds`` (attempts answered),
        ``callers.action_share`` and ``callers.action_log_odds`` (answered calls ending in a limit, pause
        or self-exclusion), ``callers.positive_reception`` and ``callers.reception_log_odds`` (among
        answered calls with a recorded reception), ``callers.call_length_ratio`` (typical call length
        against the average caller's; ``se`` of the log ratio), ``callers.spending_change`` (shrunk
        matched effect; ``se`` of the log ratio) and ``callers.spending_change_own`` (the caller's own
        matched estimate, unpooled); ``callers.<measure>_sd`` / ``between_callers``: the between-caller
        standard deviation.  Plot data ``"caterpillar"`` (one row per measure and caller, with the raw
        figure and n).  ``details["pseudonyms"]`` maps agent ids to pseudonyms; never export it.

    Notes
    -----
    Callers work different cases and shifts.  The models adjust for what the data record about the
    case (attempt number, hour, weekday, month, SMS, trigger, spending, product mix and age at
    opening); anything else that differs between the cases callers get is still in their figures.
    Attempts without a recorded caller are left out: where a caller is recorded less often for unanswered
    attempts, every caller's answer rate is a little too high, while their comparison is not affected as
    long as the gaps are spread evenly over callers.
    """
    ds = open_data(data, "caller_profiles")
    level = check_level(level)
    window = check_horizon("window", window)
    check_choice("outcome", outcome, OUTCOMES)
    sample = as_sample(sample if sample is not None else build_cohort(ds), "caller_profiles", randomized=False)
    z = z_quantile(level)
    a = shared_attempt_table(ds)
    covariates = a.attrs["covariates"]
    recorded = a["agent_id"].notna().to_numpy()
    if not recorded.all():                     # (every attempt's caller recorded: no selection, no copy of rows)
        a = a[recorded].copy(deep=False)       # new rows: the cached table is not touched
    if a["agent_id"].nunique() < 2:
        raise NotAvailableError("caller_profiles: fewer than two callers are recorded in call_attempts.agent_id")
    a["caller"], mapping = _pseudonyms(a["agent_id"])
    labels = sorted(set(mapping.values()))
    J = len(labels)

    def code(callers: pd.Series) -> np.ndarray:
        """The callers' positions in ``labels`` (every caller of ``a`` has one)."""
        return pd.Categorical(callers, categories=labels).codes.astype(int)

    rows, cat = [], []

    # answering (attempt level)
    X, names, _ = design_matrix(a, ["attempt_cat", "hour_cat", "weekday", "month_cat", "trigger"],
                                ["late_after"] + covariates)
    g = code(a["caller"])
    fit, X = _glmm(a["answered"].to_numpy(float), X, g, J, level)
    n = np.bincount(g, minlength=J)
    raw = np.bincount(g, weights=a["answered"].to_numpy(float), minlength=J) / np.maximum(n, 1)
    r, c = _logit_rows("answer", "callers.answer_rate", "callers.answer_log_odds", fit, X, g, labels, raw, n, level,
                       "share of attempts answered")
    rows += r
    cat += c

    # answered calls: outcome mix, reception, length
    ans = a[a["answered"].astype(bool).to_numpy()]                    # read only
    Xa, _, _ = design_matrix(ans, ["trigger"], covariates)
    ga = code(ans["caller"])
    na = np.bincount(ga, minlength=J)
    y_act = ans["outcome"].isin(ACTION_OUTCOMES).to_numpy(float)
    fit, Xa = _glmm(y_act, Xa, ga, J, level)
    r, c = _logit_rows("action", "callers.action_share", "callers.action_log_odds", fit, Xa, ga, labels,
                       np.bincount(ga, weights=y_act, minlength=J) / np.maximum(na, 1), na, level,
                       "share of answered calls ending in a limit, pause or self-exclusion")
    rows += r
    cat += c
    rec = ans["reception"].notna().to_numpy()
    if rec.sum() > 0 and ans.loc[rec, "reception"].nunique() > 1:
        Xr, gr = Xa[rec], ga[rec]
        y_pos = (ans.loc[rec, "reception"] == "positive").to_numpy(float)
        nr = np.bincount(gr, minlength=J)
        fit, Xr = _glmm(y_pos, Xr, gr, J, level)
        r, c = _logit_rows("reception", "callers.positive_reception", "callers.reception_log_odds", fit, Xr, gr,
                           labels,
                           np.bincount(gr, weights=y_pos, minlength=J) / np.maximum(nr, 1), nr, level,
                           "share of answered calls received positively (where recorded)")
        rows += r
        cat += c
    dur = ans["duration_s"].to_numpy(float)
    okd = np.isfinite(dur) & (dur > 0)
    fitl = lmm(np.log(dur[okd]), Xa[okd], ga[okd], n_groups=J, level=level)
    nd = np.bincount(ga[okd], minlength=J)
    med = ans[okd].groupby("caller")["duration_s"].median().reindex(labels).to_numpy()
    for j, lab in enumerate(labels):
        u, sd = float(fitl.effect[j]), float(fitl.sd[j])
        if not nd[j]:
            rows.append(not_available({"metric": "callers.call_length_ratio", "group": lab, "n": 0,
                                       "method": fitl.method}, "no answered call with a duration"))
            continue
        rows.append({"metric": "callers.call_length_ratio", "group": lab, "estimate": float(np.exp(u)), "se": sd,
                     "ci_low": float(np.exp(u - z * sd)), "ci_high": float(np.exp(u + z * sd)), "n": int(nd[j]),
                     "raw": float(med[j]) if nd[j] else np.nan,
                     "method": f"{fitl.method}, log call length with the case mix; typical call length against "
                               "the average caller's (se: posterior sd of the log ratio)"})
        cat.append({"measure": "call_length", "caller": lab, "estimate": float(np.exp(u)),
                    "ci_low": float(np.exp(u - z * sd)), "ci_high": float(np.exp(u + z * sd)),
                    "raw": float(med[j]) if nd[j] else np.nan, "n": int(nd[j])})
    rows.append({"metric": "callers.call_length_sd", "group": "between_callers", "estimate": fitl.tau,
                 "ci_low": fitl.tau_ci[0], "ci_high": fitl.tau_ci[1], "n": int(okd.sum()),
                 "method": "standard deviation of the callers' effects on log call length: posterior mean and "
                           "credible interval (uniform prior)"})

    # the spending effect among each caller's reached customers
    design = sample.design
    who = ans.drop_duplicates("case_id").set_index("case_id")["caller"]
    covs = list(sample.cohort.covariates)
    # only the columns the fits read (the table of sets is never built whole)
    sets = analysis_sets(sample, (window,), covs)
    frame = sets if sets is not None else analysis_columns(sample.table, (window,), covs)
    m = add_outcomes(ds, frame, (window,), design.pre_window)
    m = m[_followup(m, window, ds.data_end)].copy()
    m["caller"] = m["case_id"].map(who).where(m["contact"] == 1)
    if sets is not None:
        lead = m[m["contact"] == 1].drop_duplicates("subclass").set_index("subclass")["caller"]
        m["caller"] = m["subclass"].map(lead).to_numpy()
    m = m[m["caller"].notna()]
    cl = "matched set" if sample.cluster == "subclass" else "customer"
    sub = _subgroups(m, outcome, window, covs, level, sample.cluster_ids,
                     m if sets is not None else None, by=("caller",)) if len(m) else pd.DataFrame()
    own = sub.set_index("level") if len(sub) else pd.DataFrame(columns=["estimate", "se", "ci_low", "ci_high", "n"])
    sd_method = ("between-caller sd of the log spending ratio: posterior mean and credible interval (uniform "
                 "prior); Cochran's Q p-value in q_p")
    if len(own) >= 2:
        yb, sb = np.log1p(own["estimate"].to_numpy(float)), own["se"].to_numpy(float)
        pooled = normal_pooling(yb, sb, level=level)
        shrunk = pd.DataFrame({"b": pooled.effect, "sd": pooled.sd}, index=own.index)
        rows.append({"metric": "callers.spending_sd", "group": "between_callers", "estimate": pooled.tau,
                     "ci_low": pooled.tau_ci[0], "ci_high": pooled.tau_ci[1], "n": int(own["n"].sum()),
                     "q_p": random_effects(yb, sb).q_p, "method": sd_method})
    else:
        shrunk = None
        rows.append(not_available({"metric": "callers.spending_sd", "group": "between_callers", "n": int(len(m)),
                                   "method": sd_method}, "fewer than two callers have enough reached customers"))
    for lab in labels:
        g_ = m[m["caller"] == lab]
        nc, nk = int((g_["contact"] == 1).sum()), int((g_["contact"] == 0).sum())
        base = {"group": lab, "window": window, "outcome": outcome, "n": int(g_["customer_id"].nunique())}
        own_row = {**base, "metric": "callers.spending_change_own",
                   "method": f"matched PPML among the caller's reached customers, cluster-robust by {cl} (se of the "
                             "log ratio); not pooled"}
        sh_row = {**base, "metric": "callers.spending_change",
                  "method": "the caller's matched PPML pooled towards the average caller (normal random effects, "
                            "uniform prior on their sd; se: posterior sd of the log ratio)"}
        if lab in own.index:
            o = own.loc[lab]
            rows.append({**own_row, "estimate": o["estimate"], "se": o["se"], "ci_low": o["ci_low"],
                         "ci_high": o["ci_high"]})
            if shrunk is not None:
                b, sd = float(shrunk.loc[lab, "b"]), float(shrunk.loc[lab, "sd"])
                rows.append({**sh_row, "estimate": float(np.expm1(b)), "se": sd, "ci_low": float(np.expm1(b - z * sd)),
                             "ci_high": float(np.expm1(b + z * sd)), "raw": o["estimate"]})
                cat.append({"measure": "spending", "caller": lab, "estimate": float(np.expm1(b)),
                            "ci_low": float(np.expm1(b - z * sd)), "ci_high": float(np.expm1(b + z * sd)),
                            "raw": float(o["estimate"]), "n": int(o["n"])})
                continue
        why = (f"{nc} reached and {nk} comparison rows; at least {MIN_N} of each are needed" if min(nc, nk) < MIN_N
               else "no finite estimate")
        if lab not in own.index:
            rows.append(not_available(own_row, why))
        rows.append(not_available(sh_row, why if lab not in own.index else "fewer than two callers have an estimate"))
    summary = tidy(rows)
    settings = {"level": level, "window": window, "outcome": outcome, "outcome_label": OUTCOMES[outcome],
                "n_callers": J, "cluster": sample.cluster, "action_outcomes": list(ACTION_OUTCOMES),
                "pseudonyms": "agent_01 ... in the sorted order of agent_id (mapping in details only)"}
    caterpillar = pd.DataFrame(cat)
    return Result("callers", summary, narrative.callers_text(summary, settings), settings,
                  {"caterpillar": caterpillar}, {"pseudonyms": mapping, "attempts": a})
